"""Pictures of predictions: error overlays against the truth, mask overlays for new images.

All functions are numpy in, numpy out ((H, W, 3) uint8), so they work at any image size and
need no plotting library; :mod:`ganseg.evaluation.charts` arranges them into grids. Pixels
outside the region of interest (truth IGNORE) are washed grey: they are not scored, so no
error colour is drawn there.
"""

from __future__ import annotations

import numpy as np

from ganseg.data.pairs import IGNORE, VOC_PALETTE

# Error colours (colour-blind-safe pair for the two error kinds: orange vs blue).
CORRECT = np.array([0, 200, 0], dtype=np.float32)  # foreground found with the right label
FALSE_POSITIVE = np.array([255, 140, 0], dtype=np.float32)  # predicted, not in the truth
FALSE_NEGATIVE = np.array([0, 110, 255], dtype=np.float32)  # in the truth, missed
WRONG_CLASS = np.array([230, 0, 230], dtype=np.float32)  # foreground in both, other label
UNSCORED = np.array([128, 128, 128], dtype=np.float32)  # outside the region of interest
ALPHA = 0.45
UNSCORED_ALPHA = 0.6  # strong enough to read as "not part of the score", the image still visible


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 -> (H, W, 3) float32."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image.astype(np.float32)


def _blend(rgb: np.ndarray, where: np.ndarray, colour: np.ndarray, alpha: float = ALPHA) -> None:
    rgb[where] = (1 - alpha) * rgb[where] + alpha * colour


def error_overlay(image: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Image with correct foreground green, false positives orange, misses blue, wrong class
    magenta; grey where the truth is IGNORE (not scored, whatever was predicted)."""
    rgb = to_rgb(image)
    scored = truth != IGNORE
    predicted_fg, truth_fg = (predicted > 0) & scored, (truth > 0) & scored
    _blend(rgb, ~scored, UNSCORED, UNSCORED_ALPHA)
    _blend(rgb, predicted_fg & truth_fg & (predicted == truth), CORRECT)
    _blend(rgb, predicted_fg & truth_fg & (predicted != truth), WRONG_CLASS)
    _blend(rgb, predicted_fg & ~truth_fg, FALSE_POSITIVE)
    _blend(rgb, ~predicted_fg & truth_fg, FALSE_NEGATIVE)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def mask_overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Image with each predicted class tinted (binary: red) and its outline drawn solid."""
    rgb = to_rgb(image)
    palette = np.array(VOC_PALETTE, dtype=np.float32).reshape(256, 3)
    palette[1] = (255, 40, 40)  # binary foreground / class 1: a red that reads on gray images
    outline = boundary(labels)
    for label in np.unique(labels):
        if label == 0:
            continue
        region = labels == label
        _blend(rgb, region, palette[label])
        rgb[region & outline] = palette[label]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def boundary(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose 4-neighbourhood holds another label (inner contours)."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge & (labels > 0)
