"""Bringing pairs to their working size.

``native``: each image keeps its own size, times one ``scale`` for all images (aspect ratio
kept; image bilinear with antialiasing, mask and region of interest nearest neighbour).
``resize``: the image is resized with bilinear interpolation and antialiasing (PIL), the mask
with nearest neighbour so labels stay labels; the aspect ratio is not kept.
``pad_crop``: each side is centre-cropped when larger and padded when smaller (image by
reflection, mask with background), so pixels keep their scale.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def target_size(shape: tuple[int, int], size: int, mode: str, scale: float) -> tuple[int, int]:
    """(height, width) an image of ``shape`` is resized to (pad_crop: its own, cropped later)."""
    if mode == "resize":
        return size, size
    if mode == "native":
        return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))
    return shape


def fit_pair(image: np.ndarray, mask: np.ndarray, size: int, mode: str, scale: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray]:
    """image (H, W, C) uint8, mask (H, W) uint8 -> their working size (see the module doc)."""
    if mode == "pad_crop":
        return pad_crop(image, size, reflect=True), pad_crop(mask, size, reflect=False)
    hw = target_size(image.shape[:2], size, mode, scale)
    return resize_image(image, hw), resize_mask(mask, hw)


def fit_roi(inside: np.ndarray, size: int, mode: str, scale: float = 1.0) -> np.ndarray:
    """A bool (H, W) region of interest -> its pair's working size; padding lies outside it."""
    if mode == "pad_crop":
        return pad_crop(inside.astype(np.uint8), size, reflect=False) > 0
    return resize_mask(inside.astype(np.uint8), target_size(inside.shape, size, mode, scale)) > 0


def fit_unlabeled(image: np.ndarray, size: int, mode: str, scale: float = 1.0) -> np.ndarray:
    """An image without mask -> its working size, as :func:`fit_pair` brings a paired image."""
    if mode == "pad_crop":
        return pad_crop(image, size, reflect=True)
    return resize_image(image, target_size(image.shape[:2], size, mode, scale))


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    hw = (size, size) if isinstance(size, int) else size
    if image.shape[:2] == hw:
        return image
    channels = image.shape[2]
    source = Image.fromarray(image[:, :, 0] if channels == 1 else image)
    resized = np.asarray(source.resize((hw[1], hw[0]), Image.Resampling.BILINEAR, reducing_gap=None))
    return resized[:, :, None] if channels == 1 else resized


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    hw = (size, size) if isinstance(size, int) else size
    if mask.shape == hw:
        return mask
    return np.asarray(Image.fromarray(mask).resize((hw[1], hw[0]), Image.Resampling.NEAREST))


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
