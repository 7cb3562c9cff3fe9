"""Every metric the project reports, by name: the one list the evaluate stage reads.

A new segmentation metric is one function plus one entry here. The evaluate stage scores
every ``overlap`` and ``boundary`` entry per test image (``ganseg.evaluation.scores``), in the
order below, and takes its report labels, which direction is better, and the chart's
panels from the entry; ``ganseg.evaluation.names`` is a view of this list for the tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ganseg.metrics.boundary import hd95_per_image
from ganseg.metrics.fid import fid_from_features
from ganseg.metrics.inception_score import inception_score
from ganseg.metrics.kid import kid_from_features
from ganseg.metrics.segmentation import (
    dice_from_counts,
    iou_from_counts,
    precision_from_counts,
    recall_from_counts,
)

MetricKind = Literal["overlap", "boundary", "features", "images"]
SEGMENTATION_KINDS = ("overlap", "boundary")


@dataclass(frozen=True)
class MetricSpec:
    """``kind`` fixes the call signature:

    - ``overlap``: ``fn(counts: ConfusionCounts) -> Tensor (N, C)`` float64 per image and
      foreground class, NaN where the class is in neither map (see
      :mod:`ganseg.metrics.segmentation`); pooled counts give its global value; a ratio in
      [0, 1], drawn in the chart's overlap panel;
    - ``boundary``: ``fn(pred, target, num_classes, spacing) -> Tensor (N, C)`` float64 from
      lists of per-image int64 (H, W) label maps, sizes differing, targets IGNORE outside the
      region of interest (a distance such as HD95; slower, ``segmentation_report(boundary=False)``
      skips it);
    - ``features``: ``fn(real_features, fake_features) -> float | KidResult`` on (N, D) features;
    - ``images``: ``fn(images_uint8, ...) -> InceptionScoreResult``; may raise MetricUnavailable.

    ``label`` is the name report tables and charts print.
    """

    name: str
    kind: MetricKind
    fn: Callable[..., Any]
    higher_is_better: bool
    label: str
    description: str


REGISTRY: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("dice", "overlap", dice_from_counts, True, "Dice", "2TP / (2TP + FP + FN)"),
        MetricSpec("iou", "overlap", iou_from_counts, True, "IoU", "TP / (TP + FP + FN)"),
        MetricSpec("precision", "overlap", precision_from_counts, True, "precision", "TP / (TP + FP)"),
        MetricSpec("recall", "overlap", recall_from_counts, True, "recall", "TP / (TP + FN)"),
        MetricSpec("hd95", "boundary", hd95_per_image, False, "HD95 (px)",
                   "95th-percentile symmetric Hausdorff, pixels"),
        MetricSpec("fid", "features", fid_from_features, False, "FID",
                   "Fréchet distance of Inception pool3 Gaussians"),
        MetricSpec("kid", "features", kid_from_features, False, "KID", "unbiased polynomial-kernel MMD^2, subsets"),
        MetricSpec("inception_score", "images", inception_score, True, "IS",
                   "exp E KL(p(y|x) || p(y)), 10 splits"),
    )
}


def get_metric(name: str) -> MetricSpec:
    """The spec for ``name``; an unknown name lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric '{name}'; known: {', '.join(sorted(REGISTRY))}") from None


def segmentation_metrics(kinds: tuple[str, ...] = SEGMENTATION_KINDS) -> list[MetricSpec]:
    """The per-image metrics of these kinds, in registry order: what evaluate scores and reports."""
    return [spec for spec in REGISTRY.values() if spec.kind in kinds]
