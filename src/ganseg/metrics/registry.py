"""Metric names -> functions, so the evaluate stage can select metrics from params by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ganseg.metrics.boundary import hd95_per_image
from ganseg.metrics.fid import fid_from_features
from ganseg.metrics.inception_score import inception_score
from ganseg.metrics.kid import kid_from_features
from ganseg.metrics.segmentation import (
    dice_per_class,
    iou_per_class,
    precision_per_class,
    recall_per_class,
)

MetricKind = Literal["segmentation", "features", "images"]


@dataclass(frozen=True)
class MetricSpec:
    """``kind`` fixes the call signature:

    - ``segmentation``: ``fn(pred, target, num_classes) -> Tensor (N, C)`` per image and class;
    - ``features``: ``fn(real_features, fake_features) -> float | KidResult`` on (N, D) features;
    - ``images``: ``fn(images_uint8, ...) -> InceptionScoreResult``; may raise MetricUnavailable.
    """

    name: str
    kind: MetricKind
    fn: Callable[..., Any]
    higher_is_better: bool
    description: str


REGISTRY: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("dice", "segmentation", dice_per_class, True, "2TP / (2TP + FP + FN)"),
        MetricSpec("iou", "segmentation", iou_per_class, True, "TP / (TP + FP + FN)"),
        MetricSpec("precision", "segmentation", precision_per_class, True, "TP / (TP + FP)"),
        MetricSpec("recall", "segmentation", recall_per_class, True, "TP / (TP + FN)"),
        MetricSpec("hd95", "segmentation", hd95_per_image, False, "95th-percentile symmetric Hausdorff, pixels"),
        MetricSpec("fid", "features", fid_from_features, False, "Fréchet distance of Inception pool3 Gaussians"),
        MetricSpec("kid", "features", kid_from_features, False, "unbiased polynomial-kernel MMD^2, subsets"),
        MetricSpec("inception_score", "images", inception_score, True, "exp E KL(p(y|x) || p(y)), 10 splits"),
    )
}


def get_metric(name: str) -> MetricSpec:
    """The spec for ``name``; an unknown name lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric '{name}'; known: {', '.join(sorted(REGISTRY))}") from None
