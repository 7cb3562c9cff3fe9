"""Boundary agreement: the (95th-percentile) symmetric Hausdorff distance between mask outlines.

Outline: the mask pixels with at least one 4-neighbour outside the mask (the image border
counts as outside), as torchmetrics' ``mask_edges`` defines it. For every outline pixel of
``pred`` the Euclidean distance to the nearest outline pixel of ``target`` is taken, and vice
versa; the result is the larger of the two directed ``percentile``-th percentiles (MONAI's
convention; numpy's linear interpolation). ``percentile=100`` is the classic Hausdorff distance
and equals torchmetrics' ``hausdorff_distance``. Units: pixels, or physical units with
``spacing=(dy, dx)``.

Empty masks: both empty -> 0 (perfect agreement); exactly one empty -> the image diagonal
(the largest distance the image allows), a finite worst case so that a missed or hallucinated
object counts against the mean instead of vanishing from it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ganseg.metrics.labels import foreground_classes, to_label_map, validate_label_maps


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
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    percentile: float = 95.0,
    spacing: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """Symmetric percentile Hausdorff distance per image and foreground class -> (N, C) float64.

    Distances are computed on the CPU (exact Euclidean distance transform); the result is a CPU tensor.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    labels = to_label_map(pred, num_classes)
    validate_label_maps(labels, target, num_classes)
    height, width = target.shape[-2:]
    diagonal = math.hypot((height - 1) * spacing[0], (width - 1) * spacing[1])
    classes = foreground_classes(num_classes)
    result = torch.zeros(target.shape[0], len(classes), dtype=torch.float64)
    for column, cls in enumerate(classes):
        pred_masks, target_masks = labels == cls, target == cls  # (N, H, W)
        pred_outline = mask_outline(pred_masks).cpu().numpy()
        target_outline = mask_outline(target_masks).cpu().numpy()
        pred_any = pred_masks.flatten(1).any(1).tolist()
        target_any = target_masks.flatten(1).any(1).tolist()
        for index in range(target.shape[0]):
            if not pred_any[index] and not target_any[index]:
                continue  # both empty: 0
            if pred_any[index] != target_any[index]:
                result[index, column] = diagonal
                continue
            forward = _directed_distances(pred_outline[index], target_outline[index], spacing)
            backward = _directed_distances(target_outline[index], pred_outline[index], spacing)
            result[index, column] = max(np.percentile(forward, percentile), np.percentile(backward, percentile))
    return result


def hd95_per_image(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, spacing: tuple[float, float] = (1.0, 1.0)
) -> torch.Tensor:
    """95th-percentile symmetric Hausdorff distance per image and foreground class -> (N, C)."""
    return hausdorff_per_image(pred, target, num_classes, percentile=95.0, spacing=spacing)
