"""Metrics: pure functions, one concern per module, each tested against an independent reference.

- Segmentation (:mod:`.segmentation`, :mod:`.boundary`, inputs per :mod:`.labels`): Dice, IoU,
  precision, recall per image and class / per image / mean / global (a class in neither map
  of an image is not counted there); 95th-percentile Hausdorff distance. Images may differ in
  size (lists of label maps); target pixels labelled IGNORE (outside the region of interest)
  are scored by none of them.
- Generated images (:mod:`.inception`, :mod:`.fid`, :mod:`.kid`, :mod:`.image_quality`,
  :mod:`.inception_score`): FID and KID on TF-Inception pool3 features (offline weights),
  Inception Score when torch-fidelity's full weights are available, else MetricUnavailable.

``REGISTRY`` maps metric names to :class:`MetricSpec`: the one list of what the evaluate stage
reports (adding a metric: CONTRIBUTING.md). See docs/metrics.md for protocols and caveats.
"""

from ganseg.metrics.boundary import hausdorff_per_image, hd95_per_image
from ganseg.metrics.fid import feature_statistics, fid_from_features, frechet_distance
from ganseg.metrics.image_quality import FidKidResult, compute_fid_kid
from ganseg.metrics.inception import (
    extract_features,
    load_feature_extractor,
    load_inception_classifier,
)
from ganseg.metrics.inception_score import (
    InceptionScoreResult,
    inception_score,
    inception_score_from_logits,
)
from ganseg.metrics.kid import KidResult, kid_from_features
from ganseg.metrics.registry import REGISTRY, MetricSpec, get_metric, segmentation_metrics
from ganseg.metrics.segmentation import (
    SegmentationReport,
    confusion_counts,
    dice_per_class,
    dice_per_image,
    image_mean,
    iou_per_class,
    precision_per_class,
    recall_per_class,
    segmentation_report,
)
from ganseg.metrics.unavailable import MetricUnavailable

__all__ = [
    "REGISTRY",
    "FidKidResult",
    "InceptionScoreResult",
    "KidResult",
    "MetricSpec",
    "MetricUnavailable",
    "SegmentationReport",
    "compute_fid_kid",
    "confusion_counts",
    "dice_per_class",
    "dice_per_image",
    "extract_features",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "get_metric",
    "hausdorff_per_image",
    "hd95_per_image",
    "image_mean",
    "inception_score",
    "inception_score_from_logits",
    "iou_per_class",
    "kid_from_features",
    "load_feature_extractor",
    "load_inception_classifier",
    "precision_per_class",
    "recall_per_class",
    "segmentation_metrics",
    "segmentation_report",
]
