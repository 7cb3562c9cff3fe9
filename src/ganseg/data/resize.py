"""Bringing pairs to the configured square size.

``resize``: the image is resized with bilinear interpolation and antialiasing (PIL), the mask
with nearest neighbour so labels stay labels; the aspect ratio is not kept.
``pad_crop``: each side is centre-cropped when larger and padded when smaller (image by
reflection, mask with background), so pixels keep their scale.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def fit_pair(image: np.ndarray, mask: np.ndarray, size: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """image (H, W, C) uint8, mask (H, W) uint8 -> (size, size, C), (size, size)."""
    if mode == "resize":
        return resize_image(image, size), resize_mask(mask, size)
    return pad_crop(image, size, reflect=True), pad_crop(mask, size, reflect=False)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    channels = image.shape[2]
    source = Image.fromarray(image[:, :, 0] if channels == 1 else image)
    resized = np.asarray(source.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None))
    return resized[:, :, None] if channels == 1 else resized


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))


def pad_crop(array: np.ndarray, size: int, reflect: bool) -> np.ndarray:
    for axis in (0, 1):
        length = array.shape[axis]
        if length > size:
            start = (length - size) // 2
            array = np.take(array, range(start, start + size), axis=axis)
        elif length < size:
            before = (size - length) // 2
            widths = [(0, 0)] * array.ndim
            widths[axis] = (before, size - length - before)
            # reflect needs length > pad; fall back to edge for very small images
            mode = "reflect" if reflect and length > max(widths[axis]) else ("edge" if reflect else "constant")
            array = np.pad(array, widths, mode=mode)
    return array
