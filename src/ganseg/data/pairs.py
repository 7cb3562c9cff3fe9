"""A folder of image/mask pairs as written by prepare (and augment): layout, writing, loading.

Layout of one pair folder (``data/prepared/train``, ``data/synthetic``, ...)::

    images/<pair_id>.png   uint8, "L" (1 channel) or "RGB" (3), all the same square size
    masks/<pair_id>.png    binary: "L" with 0 / 255; multi-class: "P" whose indices are 0..K-1
    manifest.csv           one row per pair: pair_id, image, mask (relative paths), ...

Pairs are decoded once into tensors (:func:`load_pairs`); training never re-reads PNGs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ganseg.data.images import open_image
from ganseg.errors import DataError

MANIFEST = "manifest.csv"

# Pascal VOC's colour map: multi-class masks stay viewable while their indices are the labels.
def _voc_palette() -> list[int]:
    palette = []
    for index in range(256):
        r = g = b = 0
        cid = index
        for shift in range(8):
            r |= ((cid >> 0) & 1) << (7 - shift)
            g |= ((cid >> 1) & 1) << (7 - shift)
            b |= ((cid >> 2) & 1) << (7 - shift)
            cid >>= 3
        palette += [r, g, b]
    return palette


VOC_PALETTE = _voc_palette()


@dataclass(frozen=True)
class PairTensors:
    """Decoded pairs: ``images`` (N, C, H, W) uint8, ``masks`` (N, H, W) uint8 labels."""

    ids: list[str]
    images: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)


def save_image(path: Path, image: np.ndarray) -> None:
    """(H, W, C) or (H, W) uint8 -> PNG."""
    array = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    Image.fromarray(array).save(path, format="PNG", optimize=False, compress_level=1)


def save_mask(path: Path, labels: np.ndarray, num_classes: int) -> None:
    """(H, W) labels -> PNG: 0/255 grayscale when binary, VOC-palette indices otherwise."""
    if num_classes == 1:
        Image.fromarray((labels > 0).astype(np.uint8) * 255).save(path, format="PNG", compress_level=1)
        return
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(VOC_PALETTE)
    img.save(path, format="PNG", compress_level=1)


def read_mask_labels(path: Path, num_classes: int) -> np.ndarray:
    img = open_image(path)
    values = np.asarray(img)
    if num_classes == 1:
        return (values > 127).astype(np.uint8) if img.mode != "P" else (values > 0).astype(np.uint8)
    return values.astype(np.uint8)


def read_manifest(folder: Path) -> pd.DataFrame:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise DataError(f"{path}: manifest not found (run the stage that writes {folder} first)")
    return pd.read_csv(path, dtype={"pair_id": str})


def load_pairs(folder: Path, channels: int, num_classes: int) -> PairTensors:
    """Decode every pair listed in ``folder/manifest.csv`` once, into uint8 tensors."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.empty:
        raise DataError(f"{folder / MANIFEST}: no pairs listed")
    images, masks = [], []
    mode = "L" if channels == 1 else "RGB"
    for row in manifest.itertuples(index=False):
        image = np.asarray(open_image(folder / row.image).convert(mode))
        images.append(image[:, :, None] if image.ndim == 2 else image)
        masks.append(read_mask_labels(folder / row.mask, num_classes))
    image_tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    mask_tensor = torch.from_numpy(np.stack(masks))
    return PairTensors(ids=manifest["pair_id"].tolist(), images=image_tensor, masks=mask_tensor)


def load_split(folder: Path, channels: int, num_classes: int, image_size: int, required: bool = True
               ) -> PairTensors | None:
    """A prepared pair folder, checked against the run's image size and classes; None when it
    is absent and not ``required``. Every stage that trains loads its splits through this."""
    folder = Path(folder)
    if not required and not (folder / MANIFEST).exists():
        return None
    loaded = load_pairs(folder, channels, num_classes)
    height, width = loaded.images.shape[-2:]
    if (height, width) != (image_size, image_size):
        raise DataError(
            f"{folder}: images are {height}x{width} but common.image_size is {image_size} "
            "(re-run the stage that wrote them: dvc repro)"
        )
    top = int(loaded.masks.max())
    limit = 1 if num_classes == 1 else num_classes - 1
    if top > limit:
        raise DataError(f"{folder}: mask label {top} exceeds common.num_classes={num_classes}")
    return loaded


def pairs_digest(*parts: PairTensors | torch.Tensor | None) -> str:
    """A short hash of pair sets (ids, pixels, labels) or image tensors: what a checkpoint's
    fingerprint needs to know the data did not change."""
    digest = hashlib.sha256()
    for part in parts:
        if part is None:
            digest.update(b"none")
        elif isinstance(part, torch.Tensor):
            digest.update(part.numpy().tobytes())
        else:
            digest.update(json.dumps(part.ids).encode())
            digest.update(part.images.numpy().tobytes())
            digest.update(part.masks.numpy().tobytes())
    return digest.hexdigest()[:16]


def load_images(folder: Path, channels: int) -> tuple[list[str], torch.Tensor]:
    """Images only (an unlabeled folder): ids and (N, C, H, W) uint8."""
    manifest = read_manifest(folder)
    mode = "L" if channels == 1 else "RGB"
    images = []
    for row in manifest.itertuples(index=False):
        image = np.asarray(open_image(Path(folder) / row.image).convert(mode))
        images.append(image[:, :, None] if image.ndim == 2 else image)
    return manifest["pair_id"].tolist(), torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
