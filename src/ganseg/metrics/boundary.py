"""Boundary agreement: the (95th-percentile) symmetric Hausdorff distance between mask outlines.

Outline: the mask pixels with at least one 4-neighbour outside the mask (the image border
counts as outside), as torchmetrics' ``mask_edges`` defines it. For every outline pixel of
``pred`` the Euclidean distance to the nearest outline pixel of ``target`` is taken, and vice
versa; the result is the larger of the two directed ``percentile``-th percentiles (MONAI's
convention; numpy's linear interpolation). ``percentile=100`` is the classic Hausdorff distance
and equals torchmetrics' ``hausdorff_distance``. Units: pixels, or physical units with
``spacing=(dy, dx)``. Each image is scored at its own size.

Region of interest: only pixels whose target is not IGNORE are scored. The predicted mask is
cut to that region before its outline is taken (a prediction outside it changes nothing), and
the region's edge counts as outside, as the image border does, for both masks alike: where
both cover the region's edge their outlines coincide there (distance 0). Distances are
straight lines in the image plane, also across ignored pixels.

Empty masks (inside the region): both empty -> 0 (perfect agreement); exactly one empty -> the
diagonal of the region's bounding box (the image diagonal when nothing is ignored: the largest
distance the region allows), a finite worst case so that a missed or hallucinated object
counts against the mean instead of vanishing from it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ganseg.data.pairs import IGNORE
from ganseg.metrics.labels import LabelMaps, foreground_classes, label_map_pairs


def mask_outline(masks: torch.Tensor) -> torch.Tensor:
    """bool (N, H, W) -> bool (N, H, W): pixels of the mask with a 4-neighbour outside it."""
    padded = F.pad(masks.to(torch.uint8), (1, 1, 1, 1)).bool()  # outside the image = background
    interior = (
        padded[:, 1:-1, 1:-1]
        & padded[:, :-2, 1:-1]
        & padded[:, 2:, 1:-1]
        & padded[:, 1:-1, :-2]
        & padded[:, 1:-1, 2:]
    )
    return masks & ~interior


def _directed_distances(source: np.ndarray, target: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Distance from each ``source`` outline pixel to the nearest ``target`` outline pixel."""
    to_target = ndimage.distance_transform_edt(~target, sampling=spacing)  # 0 on target outline
    return to_target[source]


def hausdorff_per_image(
    pred: LabelMaps,
    target: LabelMaps,
    num_classes: int,
    percentile: float = 95.0,
    spacing: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """Symmetric percentile Hausdorff distance per image and foreground class -> (N, C) float64.

    Distances are computed on the CPU (exact Euclidean distance transform); the result is a CPU tensor.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    pairs = label_map_pairs(pred, target, num_classes)
    classes = foreground_classes(num_classes)
    result = torch.zeros(len(pairs), len(classes), dtype=torch.float64)
    for index, (labels, truth) in enumerate(pairs):
        scored = (truth != IGNORE).cpu()
        worst = _region_diagonal(scored, spacing)
        for column, cls in enumerate(classes):
            pred_mask, target_mask = (labels.cpu() == cls) & scored, truth.cpu() == cls
            result[index, column] = _hausdorff(pred_mask, target_mask, percentile, spacing, worst)
    return result


def _hausdorff(
    pred_mask: torch.Tensor, target_mask: torch.Tensor, percentile: float, spacing: tuple[float, float], worst: float
) -> float:
    """One image and class, bool (H, W) masks; ``worst`` when exactly one is empty."""
    pred_any, target_any = bool(pred_mask.any()), bool(target_mask.any())
    if not pred_any and not target_any:
        return 0.0
    if pred_any != target_any:
        return worst
    pred_outline = mask_outline(pred_mask[None])[0].numpy()
    target_outline = mask_outline(target_mask[None])[0].numpy()
    forward = _directed_distances(pred_outline, target_outline, spacing)
    backward = _directed_distances(target_outline, pred_outline, spacing)
    return float(max(np.percentile(forward, percentile), np.percentile(backward, percentile)))


def _region_diagonal(scored: torch.Tensor, spacing: tuple[float, float]) -> float:
    """Diagonal of the bounding box of the scored pixels (bool (H, W)); 0 when none is scored."""
    rows, cols = scored.any(dim=1).nonzero()[:, 0], scored.any(dim=0).nonzero()[:, 0]
    if not len(rows):
        return 0.0
    return math.hypot(int(rows[-1] - rows[0]) * spacing[0], int(cols[-1] - cols[0]) * spacing[1])


def hd95_per_image(
    pred: LabelMaps, target: LabelMaps, num_classes: int, spacing: tuple[float, float] = (1.0, 1.0)
) -> torch.Tensor:
    """95th-percentile symmetric Hausdorff distance per image and foreground class -> (N, C)."""
    return hausdorff_per_image(pred, target, num_classes, percentile=95.0, spacing=spacing)
