"""Per-image segmentation scores of one model, and their summary over test images.

The metric definitions (empty-mask conventions included) live in :mod:`ganseg.metrics`; this
module only arranges them per image, as the bootstrap and the per-image CSV need them:
one (N,) array per name. Multi-class: ``dice`` is the mean over the foreground classes counted
in each image (the train stage's validation Dice), and ``dice_class<c>`` holds class c alone,
NaN in the images where class c is in neither map (the bootstrap skips those).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ganseg.evaluation.bootstrap import Interval, mean_interval, paired_difference
from ganseg.evaluation.names import LABELS, METRICS  # noqa: F401 - re-exported for the report
from ganseg.metrics.labels import LabelMaps
from ganseg.metrics.registry import REGISTRY
from ganseg.metrics.segmentation import segmentation_report


def base_metric(name: str) -> str:
    """``dice_class2`` -> ``dice``."""
    return name.split("_class", 1)[0]


def higher_is_better(name: str) -> bool:
    """The registry's direction for ``name`` (``dice_class2`` as ``dice``); True for names it
    does not hold."""
    spec = REGISTRY.get(base_metric(name))
    return spec is None or spec.higher_is_better


def score_images(predicted: LabelMaps, truth: LabelMaps, num_classes: int) -> dict[str, np.ndarray]:
    """Label maps, (N, H, W) or one (H, W) per image (sizes may differ; IGNORE in ``truth`` is
    not scored) -> {metric: (N,) float64}: every segmentation metric of the registry (headline
    values first, then per class)."""
    report = segmentation_report(predicted, truth, num_classes, boundary=True)
    return {name: values.numpy() for name, values in report.scores().items()}


@dataclass
class Comparison:
    """Every model scored on the same test images, with bootstrap summaries."""

    ids: list[str]
    scores: dict[str, dict[str, np.ndarray]]  # variant -> metric -> (N,)
    summary: dict[str, dict[str, Interval]] = field(default_factory=dict)
    differences: dict[str, dict[str, Interval]] = field(default_factory=dict)  # "b_vs_a" -> metric -> b - a

    @property
    def variants(self) -> list[str]:
        return list(self.scores)

    @property
    def metric_names(self) -> list[str]:
        first = next(iter(self.scores.values()), {})
        return list(first)

    def per_image_table(self) -> pd.DataFrame:
        """Long form: one row per (variant, image)."""
        frames = []
        for variant, metrics in self.scores.items():
            frame = pd.DataFrame({"variant": variant, "pair_id": self.ids})
            for name, values in metrics.items():
                frame[name] = np.round(values, 6)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def best(self, metric: str = "dice") -> str:
        """The variant with the best mean ``metric``; ties go to the earlier variant."""
        sign = 1.0 if higher_is_better(metric) else -1.0
        return max(self.variants, key=lambda v: (sign * self.summary[v][metric].mean, -self.variants.index(v)))


def comparison_pairs(variants: list[str], baseline: str) -> list[tuple[str, str]]:
    """(b, a) pairs meaning "b minus a": each other variant vs the baseline, then later vs earlier."""
    others = [v for v in variants if v != baseline]
    pairs = [(v, baseline) for v in others] if baseline in variants else []
    pairs += [(later, earlier) for i, earlier in enumerate(others) for later in others[i + 1 :]]
    return pairs


def compare(
    ids: list[str],
    scores: dict[str, dict[str, np.ndarray]],
    baseline: str,
    counts: np.ndarray,
    confidence: float,
) -> Comparison:
    result = Comparison(ids=ids, scores=scores)
    for variant, metrics in scores.items():
        result.summary[variant] = {name: mean_interval(v, counts, confidence) for name, v in metrics.items()}
    for later, earlier in comparison_pairs(list(scores), baseline):
        result.differences[f"{later}_vs_{earlier}"] = {
            name: paired_difference(scores[later][name], scores[earlier][name], counts, confidence)
            for name in scores[later]
        }
    return result
