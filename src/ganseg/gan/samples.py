"""Sample grids: masks and the images painted for them, side by side, as one RGB array.

Pure array functions (the stage writes the PNG): a grid is blocks of ``columns`` samples,
each block a row of masks, a row of generated images and, when given, a row of the real
images those masks came from, so a viewer can judge both realism and fidelity to the mask.
"""

from __future__ import annotations

import numpy as np
import torch

from ganseg.data.pairs import IGNORE, VOC_PALETTE

PAD = 2
PAD_VALUE = 64  # dark grey between tiles


def mask_to_rgb(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8: white foreground, or the VOC palette per class; IGNORE
    pixels grey (binary) or VOC's void colour (multi-class, its index 255)."""
    if num_classes == 1:
        gray = np.where(labels == IGNORE, 128, (labels > 0) * 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    palette = np.asarray(VOC_PALETTE, dtype=np.uint8).reshape(256, 3)
    return palette[labels]


def image_to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W, 3) uint8."""
    hwc = np.transpose(image, (1, 2, 0))
    return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else hwc[:, :, :3]


def render_grid(
    masks: torch.Tensor | np.ndarray,  # (N, H, W) uint8 labels
    images: torch.Tensor | np.ndarray,  # (N, C, H, W) uint8 generated
    num_classes: int,
    columns: int = 8,
    real_images: torch.Tensor | np.ndarray | None = None,  # (N, C, H, W) uint8
) -> np.ndarray:
    masks, images = np.asarray(masks), np.asarray(images)
    real = None if real_images is None else np.asarray(real_images)
    count, _, height, width = images.shape
    rows_per_block = 2 if real is None else 3
    blocks = -(-count // columns)
    grid = np.full(
        (blocks * rows_per_block * (height + PAD) + PAD, columns * (width + PAD) + PAD, 3),
        PAD_VALUE, dtype=np.uint8,
    )
    for index in range(count):
        block, column = divmod(index, columns)
        tiles = [mask_to_rgb(masks[index], num_classes), image_to_rgb(images[index])]
        if real is not None:
            tiles.append(image_to_rgb(real[index]))
        for offset, tile in enumerate(tiles):
            top = PAD + (block * rows_per_block + offset) * (height + PAD)
            left = PAD + column * (width + PAD)
            grid[top : top + height, left : left + width] = tile
    return grid
