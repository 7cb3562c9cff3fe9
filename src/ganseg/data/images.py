"""Decoding image and mask files into arrays, with one-line errors that name the file.

Conventions (documented in docs/data.md):
- 8-bit and 16-bit (or float) grayscale, RGB, RGBA, palette and 1-bit files are accepted.
- Alpha is dropped; palette images are expanded to RGB; 16-bit and float images are
  rescaled linearly from their own min..max to 0..255 (microscopy often uses 12 of 16 bits).
- ``channels=1`` converts colour to luminance (ITU-R 601, as PIL's "L"); ``channels=3``
  replicates grayscale to three channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganseg.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# PIL refuses images beyond ~179 Mpx as a decompression-bomb guard; microscopy slides can be
# large, but anything over this is more likely a corrupt header than a real image here.
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000


def open_image(path: Path) -> Image.Image:
    """Open and fully decode ``path`` (truncated files fail here, not later)."""
    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.copy()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (corrupt or unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Bring any integer or float array to uint8: 8-bit kept, others rescaled min..max."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def image_array(img: Image.Image, channels: int) -> np.ndarray:
    """(H, W, channels) uint8 from any PIL mode."""
    if img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1", "LAB", "HSV"):
        img = img.convert("RGB" if img.mode not in ("LA", "1") else "L")
    array = to_uint8(np.asarray(img))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if channels == 1:
        if array.ndim == 3:
            array = np.asarray(Image.fromarray(array[:, :, :3]).convert("L"))
        return array[:, :, None]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return array[:, :, :3]


def read_image(path: Path, channels: int) -> tuple[np.ndarray, dict]:
    """Decode ``path`` to (H, W, channels) uint8 plus facts for the manifest."""
    img = open_image(path)
    facts = {"mode": img.mode, "source_channels": len(img.getbands())}
    return image_array(img, channels), facts
