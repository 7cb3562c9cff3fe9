"""The Dice family (Dice, IoU, precision, recall) per image, mean over images and global over pixels.

Inputs are label maps or scores as :mod:`ganseg.metrics.labels` describes: stacked (N, ...)
tensors or lists of per-image tensors whose sizes may differ; each image is counted on its
own, so an image scores the same alone as in any set. Pixels whose target is IGNORE (outside
the region of interest) count in no TP, FP or FN, whatever was predicted there. From per-class
pixel counts TP, FP, FN of one image:

- Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN),
  precision = TP / (TP + FP), recall = TP / (TP + FN); float64 (N, C) over the foreground
  classes (``*_per_class``).
- A class absent from both ``pred`` and ``target`` in an image is *not counted* there: its
  value is NaN (undefined, nothing to score). Any other zero denominator gives 0.0 (e.g.
  precision when nothing was predicted but the class is present).
- Per image (``dice_per_image``, :func:`image_mean`): the mean over the counted classes; an
  image with no foreground class in either map scores 1.0 (nothing to find, nothing found).
  Binary: empty prediction on empty truth = 1. This is nnU-Net's and MONAI's rule, and the
  one number the train stage's validation and the evaluate stage both report.
- Aggregates: ``mean`` = average of the per-image values (each image counts the same; a
  class's mean skips the images where it is not counted); ``global`` = the ratio of counts
  summed over all images (each pixel counts the same; large objects dominate). Both are
  reported because they rank models differently when object sizes vary across images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from ganseg.data.pairs import IGNORE
from ganseg.metrics.labels import LabelMaps, foreground_classes, label_count, label_map_pairs


@dataclass(frozen=True)
class ConfusionCounts:
    """Per image and foreground class pixel counts, int64 (N, C) each."""

    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor

    def pooled(self) -> ConfusionCounts:
        """Counts summed over images, kept as one row (1, C): for global values."""
        return ConfusionCounts(self.tp.sum(0, keepdim=True), self.fp.sum(0, keepdim=True), self.fn.sum(0, keepdim=True))


def confusion_counts(pred: LabelMaps, target: LabelMaps, num_classes: int) -> ConfusionCounts:
    """TP/FP/FN per image and foreground class, from each image's scored (non-IGNORE) pixels."""
    count = label_count(num_classes)
    pairs = label_map_pairs(pred, target, num_classes)
    if pairs:
        confusion = torch.stack([_confusion_matrix(labels, truth, count) for labels, truth in pairs])
    else:
        confusion = torch.zeros(0, count, count, dtype=torch.long)
    classes = foreground_classes(num_classes)
    tp = confusion.diagonal(dim1=1, dim2=2)[:, classes]
    predicted = confusion.sum(dim=2)[:, classes]  # TP + FP
    actual = confusion.sum(dim=1)[:, classes]  # TP + FN
    return ConfusionCounts(tp=tp, fp=predicted - tp, fn=actual - tp)


def _confusion_matrix(labels: torch.Tensor, truth: torch.Tensor, count: int) -> torch.Tensor:
    """(count, count) int64: [p, t] = scored pixels of one image predicted p whose true label is t."""
    scored = truth != IGNORE
    codes = labels[scored] * count + truth[scored]
    return torch.bincount(codes, minlength=count * count).view(count, count)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, counts: ConfusionCounts) -> torch.Tensor:
    """numerator / denominator; NaN where the class is absent from both maps, 0 where only
    the denominator is empty."""
    absent = (counts.tp + counts.fp + counts.fn) == 0
    value = numerator.double() / denominator.double().clamp(min=1)
    value = torch.where(denominator == 0, 0.0, value)
    return torch.where(absent, torch.nan, value)


def dice_from_counts(c: ConfusionCounts) -> torch.Tensor:
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, c)


def iou_from_counts(c: ConfusionCounts) -> torch.Tensor:
    return _ratio(c.tp, c.tp + c.fp + c.fn, c)


def precision_from_counts(c: ConfusionCounts) -> torch.Tensor:
    return _ratio(c.tp, c.tp + c.fp, c)


def recall_from_counts(c: ConfusionCounts) -> torch.Tensor:
    return _ratio(c.tp, c.tp + c.fn, c)


def image_mean(per_class: torch.Tensor) -> torch.Tensor:
    """(N, C) per-class values -> (N,): the mean over the counted (non-NaN) classes of each
    image; 1.0 for an image where no class is counted (no foreground in either map)."""
    counted = ~per_class.isnan()
    total = torch.where(counted, per_class, 0.0).sum(dim=1)
    number = counted.sum(dim=1)
    return torch.where(number > 0, total / number.clamp(min=1), 1.0)


def dice_per_image(pred: LabelMaps, target: LabelMaps, num_classes: int) -> torch.Tensor:
    """Dice of each image (mean over its counted foreground classes) -> (N,) float64, from
    stacked tensors or lists of per-image maps; IGNORE target pixels are not scored."""
    return image_mean(dice_per_class(pred, target, num_classes))


def dice_per_class(pred: LabelMaps, target: LabelMaps, num_classes: int) -> torch.Tensor:
    """Dice per image and foreground class -> (N, C) float64, NaN where not counted."""
    return dice_from_counts(confusion_counts(pred, target, num_classes))


def iou_per_class(pred: LabelMaps, target: LabelMaps, num_classes: int) -> torch.Tensor:
    """IoU (Jaccard) per image and foreground class -> (N, C) float64, NaN where not counted."""
    return iou_from_counts(confusion_counts(pred, target, num_classes))


def precision_per_class(pred: LabelMaps, target: LabelMaps, num_classes: int) -> torch.Tensor:
    """Pixel precision per image and foreground class -> (N, C) float64, NaN where not counted."""
    return precision_from_counts(confusion_counts(pred, target, num_classes))


def recall_per_class(pred: LabelMaps, target: LabelMaps, num_classes: int) -> torch.Tensor:
    """Pixel recall (sensitivity) per image and foreground class -> (N, C) float64, NaN where not counted."""
    return recall_from_counts(confusion_counts(pred, target, num_classes))


@dataclass(frozen=True)
class SegmentationReport:
    """Per-image values and their aggregates for one prediction set.

    ``per_image[name]``: (N, C), NaN where a class is not counted in an image;
    ``global_values[name]``: (C,) from pooled pixel counts (overlap metrics only; a distance has
    no pixel-pooled form). ``classes[j]`` labels column j.
    """

    classes: tuple[int, ...]
    per_image: dict[str, torch.Tensor]
    global_values: dict[str, torch.Tensor]

    def mean(self) -> dict[str, torch.Tensor]:
        """Per-class means over the images where the class is counted: name -> (C,)."""
        return {name: values.nanmean(dim=0) for name, values in self.per_image.items()}

    def scores(self) -> dict[str, torch.Tensor]:
        """Per image, (N,) each: every metric's image value (:func:`image_mean`) first, then,
        with several classes, ``{name}_class{c}`` per class (NaN where not counted)."""
        out = {name: image_mean(values) for name, values in self.per_image.items()}
        if len(self.classes) > 1:
            for name, values in self.per_image.items():
                for column, cls in enumerate(self.classes):
                    out[f"{name}_class{cls}"] = values[:, column]
        return out

    def summary(self, prefix: str = "eval/") -> dict[str, float]:
        """Flat, namespaced floats: ``eval/dice`` (the mean of per-image values),
        ``eval/dice_global``, and ``eval/dice_class{c}`` per class when there are several."""
        out: dict[str, float] = {}
        per_image = self.scores()
        for name in self.per_image:
            out[f"{prefix}{name}"] = float(per_image[name].mean())
            if name in self.global_values:
                out[f"{prefix}{name}_global"] = float(image_mean(self.global_values[name][None])[0])
            if len(self.classes) > 1:
                for cls in self.classes:
                    out[f"{prefix}{name}_class{cls}"] = float(per_image[f"{name}_class{cls}"].nanmean())
        return out

    def table(self, ids: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per image, the columns of :meth:`scores` (``dice``, ..., ``dice_class1``, ...)."""
        frame = pd.DataFrame({name: values.cpu().numpy() for name, values in self.scores().items()})
        if ids is not None:
            if len(ids) != len(frame):
                raise ValueError(f"{len(ids)} ids for {len(frame)} images")
            frame.insert(0, "pair_id", list(ids))
        return frame


def segmentation_report(
    pred: LabelMaps,
    target: LabelMaps,
    num_classes: int,
    boundary: bool = True,
    spacing: tuple[float, float] = (1.0, 1.0),
) -> SegmentationReport:
    """Every ``overlap`` metric of the registry per image, with global values, and (when
    ``boundary``) every ``boundary`` one (HD95), in registry order."""
    from ganseg.metrics.registry import segmentation_metrics  # the registry imports this module

    pairs = label_map_pairs(pred, target, num_classes)  # scores -> labels once, for every metric
    labels, truths = [p for p, _ in pairs], [t for _, t in pairs]
    counts = confusion_counts(labels, truths, num_classes)
    pooled = counts.pooled()
    per_image, global_values = {}, {}
    for spec in segmentation_metrics():
        if spec.kind == "overlap":
            per_image[spec.name] = spec.fn(counts)
            global_values[spec.name] = spec.fn(pooled)[0]
        elif boundary:
            per_image[spec.name] = spec.fn(labels, truths, num_classes, spacing=spacing)
    return SegmentationReport(
        classes=tuple(foreground_classes(num_classes)), per_image=per_image, global_values=global_values
    )
