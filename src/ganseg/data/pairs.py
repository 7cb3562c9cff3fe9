"""A folder of image/mask pairs as written by prepare (and augment): layout, writing, loading.

Layout of one pair folder (``data/prepared/train``, ``data/synthetic``, ...)::

    images/<pair_id>.png   uint8, "L" (1 channel) or "RGB" (3), each at its own size
    masks/<pair_id>.png    binary: "L" with 0 / 255; multi-class: "P" whose indices are 0..K-1
    roi/<pair_id>.png      optional region of interest, "L": 0 = outside (no loss, no metric)
    manifest.csv           one row per pair: pair_id, image, mask, roi (relative paths), ...

Pairs are decoded once into tensors (:func:`load_pairs`); training never re-reads PNGs. Images
keep their own sizes (mixed and non-square sizes are normal), so a set of pairs is a list of
per-image tensors, not one stacked tensor. Pixels outside the region of interest carry the
label :data:`IGNORE` in the decoded masks: losses and metrics skip them, and so does the
padding of a patch that is larger than its image. One label map carries both, so every crop,
flip and warp moves the region with the mask.
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
FINGERPRINT = "fingerprint.json"  # beside prepare's split folders: the data fingerprint (ganseg.planning)
IGNORE = 255  # label of pixels outside the region of interest (and of padding): no loss, no metric

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
    """Decoded pairs: per image a uint8 ``(C, H, W)`` image and a uint8 ``(H, W)`` label map
    (:data:`IGNORE` outside the region of interest); sizes may differ between images."""

    ids: list[str]
    images: list[torch.Tensor]
    masks: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [tuple(image.shape[-2:]) for image in self.images]

    @property
    def uniform_size(self) -> tuple[int, int] | None:
        """The common (height, width) of every image, or None when sizes differ."""
        sizes = set(self.sizes)
        return sizes.pop() if len(sizes) == 1 else None


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


def save_roi(path: Path, inside: np.ndarray) -> None:
    """(H, W) bool region of interest -> PNG, 255 inside, 0 outside."""
    Image.fromarray(inside.astype(np.uint8) * 255).save(path, format="PNG", compress_level=1)


def read_roi(path: Path) -> np.ndarray:
    """A region-of-interest PNG -> (H, W) bool, True inside (any value > 127)."""
    return np.asarray(open_image(path).convert("L")) > 127


def read_image_tensor(path: Path, channels: int) -> torch.Tensor:
    """A prepared image PNG -> uint8 (C, H, W)."""
    image = np.array(open_image(path).convert("L" if channels == 1 else "RGB"))
    image = image[:, :, None] if image.ndim == 2 else image
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def load_pairs(folder: Path, channels: int, num_classes: int) -> PairTensors:
    """Decode every pair listed in ``folder/manifest.csv`` once, into uint8 tensors; a mask
    pixel outside the pair's region of interest (``roi`` column, when given) becomes IGNORE."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.empty:
        raise DataError(f"{folder / MANIFEST}: no pairs listed")
    images, masks = [], []
    for row in manifest.to_dict("records"):
        image = read_image_tensor(folder / row["image"], channels)
        labels = read_mask_labels(folder / row["mask"], num_classes)
        if labels.shape != tuple(image.shape[-2:]):
            raise DataError(f"{folder / row['mask']}: mask is {labels.shape[0]}x{labels.shape[1]} but its image is "
                            f"{image.shape[1]}x{image.shape[2]}")
        roi = row.get("roi")
        if isinstance(roi, str) and roi:
            inside = read_roi(folder / roi)
            if inside.shape != labels.shape:
                raise DataError(f"{folder / roi}: region of interest is {inside.shape[0]}x{inside.shape[1]} but its "
                                f"mask is {labels.shape[0]}x{labels.shape[1]}")
            labels = np.where(inside, labels, IGNORE).astype(np.uint8)
        images.append(image)
        masks.append(torch.from_numpy(np.array(labels)))
    return PairTensors(ids=manifest["pair_id"].tolist(), images=images, masks=masks)


def load_split(folder: Path, channels: int, num_classes: int, required: bool = True) -> PairTensors | None:
    """A prepared pair folder, its labels checked against the run's classes; None when it is
    absent and not ``required``. Every stage that trains loads its splits through this."""
    folder = Path(folder)
    if not required and not (folder / MANIFEST).exists():
        return None
    loaded = load_pairs(folder, channels, num_classes)
    limit = 1 if num_classes == 1 else num_classes - 1
    top = max(int(mask[mask != IGNORE].max()) if bool((mask != IGNORE).any()) else 0 for mask in loaded.masks)
    if top > limit:
        raise DataError(f"{folder}: mask label {top} exceeds common.num_classes={num_classes}")
    return loaded


def pairs_digest(*parts: PairTensors | torch.Tensor | list[torch.Tensor] | None) -> str:
    """A short hash of pair sets (ids, pixels, labels) or image tensors: what a checkpoint's
    fingerprint needs to know the data did not change."""
    digest = hashlib.sha256()
    for part in parts:
        if part is None:
            digest.update(b"none")
        elif isinstance(part, torch.Tensor):
            digest.update(part.numpy().tobytes())
        elif isinstance(part, list):
            for tensor in part:
                digest.update(str(tuple(tensor.shape)).encode())
                digest.update(tensor.numpy().tobytes())
        else:
            digest.update(json.dumps(part.ids).encode())
            for image, mask in zip(part.images, part.masks):
                digest.update(str(tuple(image.shape)).encode())
                digest.update(image.numpy().tobytes())
                digest.update(mask.numpy().tobytes())
    return digest.hexdigest()[:16]


def load_images(folder: Path, channels: int) -> tuple[list[str], list[torch.Tensor]]:
    """Images only (an unlabeled folder): ids and uint8 (C, H, W) per image, each at its size."""
    manifest = read_manifest(folder)
    images = [read_image_tensor(Path(folder) / row["image"], channels) for row in manifest.to_dict("records")]
    return manifest["pair_id"].tolist(), images
