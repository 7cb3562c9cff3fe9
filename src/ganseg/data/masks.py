"""Mask rules: turning a user's mask file into a label map, binary or multi-class.

Binary (``num_classes == 1``), the documented rule, in order:
1. palette files: foreground = palette index not 0 and not ``ignore_value``;
2. otherwise alpha is dropped, colour masks take the max over channels, 16-bit or float masks
   are rescaled to 0..255; a mask whose largest value is 1 is read as 0/1;
3. foreground = value > ``threshold`` (127 by default: 0/255, 0/1 and anti-aliased masks work);
4. ``invert`` swaps foreground and background.
With ``binarize: false`` a mask must already hold only {0, 1} or {0, 255}.

Multi-class (``num_classes = K >= 2``): palette or grayscale values are class ids (VOC style);
``ignore_value`` (255, VOC's border) becomes background; RGB masks need ``class_colors``.
Any value outside 0..K-1 is an error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganseg.config.prepare import FolderSourceConfig
from ganseg.data.images import open_image, to_uint8
from ganseg.errors import DataError


def read_mask(path: Path, cfg: FolderSourceConfig, num_classes: int) -> np.ndarray:
    """(H, W) uint8 label map: {0, 1} when binary, 0..K-1 when multi-class."""
    img = open_image(path)
    if num_classes == 1:
        return binarize(img, path, cfg)
    return class_labels(img, path, cfg, num_classes)


def binarize(img, path: Path, cfg: FolderSourceConfig) -> np.ndarray:
    if img.mode == "P":
        index = np.asarray(img)
        foreground = index != 0
        if cfg.ignore_value is not None:
            foreground &= index != cfg.ignore_value
    else:
        values = _gray_values(img)
        top = int(values.max()) if values.size else 0
        if not cfg.binarize:
            present = set(np.unique(values).tolist())
            if not (present <= {0, 1} or present <= {0, 255}):
                shown = sorted(present)[:6]
                raise DataError(
                    f"{path}: mask is not binary (values {shown}...); set "
                    "prepare.folder.binarize: true to threshold it"
                )
        foreground = values >= 1 if top == 1 else values > cfg.threshold
    if cfg.invert:
        foreground = ~foreground
    return foreground.astype(np.uint8)


def class_labels(img, path: Path, cfg: FolderSourceConfig, num_classes: int) -> np.ndarray:
    if img.mode in ("RGB", "RGBA"):
        if not cfg.class_colors:
            raise DataError(
                f"{path}: colour mask needs prepare.folder.class_colors for {num_classes} classes"
            )
        rgb = np.asarray(img.convert("RGB")).astype(np.int32)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        labels = np.full(codes.shape, -1, dtype=np.int32)
        for class_id, (r, g, b) in enumerate(cfg.class_colors):
            labels[codes == ((r << 16) | (g << 8) | b)] = class_id
        if (labels < 0).any():
            y, x = np.argwhere(labels < 0)[0]
            raise DataError(f"{path}: colour {tuple(rgb[y, x])} is not in prepare.folder.class_colors")
        return labels.astype(np.uint8)
    labels = np.asarray(img) if img.mode == "P" else _gray_values(img)
    labels = labels.astype(np.int32)
    if cfg.ignore_value is not None:
        labels = np.where(labels == cfg.ignore_value, 0, labels)
    if labels.max(initial=0) >= num_classes:
        raise DataError(
            f"{path}: label {int(labels.max())} is outside 0..{num_classes - 1} "
            "(common.num_classes)"
        )
    return labels.astype(np.uint8)


def _gray_values(img) -> np.ndarray:
    if img.mode in ("1",):
        return np.asarray(img).astype(np.uint8)
    if img.mode in ("LA", "RGBA", "PA"):
        img = img.convert("RGB" if img.mode != "LA" else "L")
    raw = np.asarray(img)
    if raw.ndim == 3:
        raw = raw[:, :, :3].max(axis=2)
    if raw.dtype != np.uint8:
        top = float(raw.max()) if raw.size else 0.0
        if top <= 1:  # 0/1 stored as 16-bit or float: keep as is
            return raw.astype(np.uint8)
        return to_uint8(raw)
    return raw
