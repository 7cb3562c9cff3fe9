"""The registry: every name resolves to a function with its kind's signature, and it drives evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganseg import metrics
from ganseg.evaluation import names
from ganseg.evaluation.scores import higher_is_better, score_images
from ganseg.metrics import REGISTRY, MetricSpec, get_metric, segmentation_metrics
from ganseg.metrics.segmentation import confusion_counts, segmentation_report


def test_names_and_kinds():
    assert set(REGISTRY) == {"dice", "iou", "precision", "recall", "hd95", "fid", "kid", "inception_score"}
    assert [spec.name for spec in segmentation_metrics()] == ["dice", "iou", "precision", "recall", "hd95"]
    assert [spec.name for spec in segmentation_metrics(kinds=("overlap",))] == ["dice", "iou", "precision", "recall"]
    assert [name for name, spec in REGISTRY.items() if not spec.higher_is_better] == ["hd95", "fid", "kid"]
    assert all(spec.name == name for name, spec in REGISTRY.items())


def test_evaluate_names_are_a_view_of_the_registry():
    assert names.METRICS == ("dice", "iou", "precision", "recall", "hd95")
    assert names.LABELS["hd95"] == "HD95 (px)" and names.LABELS["dice"] == "Dice"
    assert names.LOWER_IS_BETTER == {"hd95"}
    assert higher_is_better("dice_class2") and not higher_is_better("hd95_class1")


def test_segmentation_entries_share_their_kinds_signatures():
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, 4:10, 4:10] = 1
    target[1, 12:, 12:] = 2
    pred = torch.roll(target, shifts=1, dims=2)
    counts = confusion_counts(pred, target, 3)
    for spec in segmentation_metrics():
        if spec.kind == "overlap":
            values = spec.fn(counts)
        else:
            values = spec.fn(pred, target, 3, spacing=(1.0, 1.0))
        assert values.shape == (2, 2) and values.dtype == torch.float64, spec.name


def test_feature_entries_share_one_signature():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(20, 8)), rng.normal(0.5, size=(20, 8))
    assert get_metric("fid").fn(real, fake) > 0
    assert get_metric("kid").fn(real, fake).mean > 0


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown metric 'dise'; known: dice, fid, hd95"):
        get_metric("dise")


def test_a_registered_metric_is_scored_by_evaluate(monkeypatch):
    """One function plus one registry entry: evaluate's per-image scores and summary report it."""

    def false_positive_pixels(counts) -> torch.Tensor:  # (N, C), a count, lower is better
        return counts.fp.double()

    def predicted_area(pred, target, num_classes, spacing) -> torch.Tensor:  # lists of (H, W) label maps
        classes = range(1, max(num_classes, 2))
        return torch.tensor([[float((labels == c).sum()) for c in classes] for labels in pred], dtype=torch.float64)

    monkeypatch.setitem(REGISTRY, "fp_pixels", MetricSpec("fp_pixels", "overlap", false_positive_pixels, False,
                                                          "FP (px)", "false-positive pixels"))
    monkeypatch.setitem(REGISTRY, "area", MetricSpec("area", "boundary", predicted_area, True, "area", "pixels"))
    truth = torch.zeros(3, 8, 8, dtype=torch.uint8)
    truth[:, :4] = 1
    truth[2, 6:] = 2
    pred = truth.clone()
    pred[0, 4] = 1  # image 0: 8 false-positive pixels of class 1
    pred[1, 7, :3] = 2  # image 1: 3 false-positive pixels of class 2
    scores = score_images(pred, truth, 3)
    assert list(scores)[:7] == ["dice", "iou", "precision", "recall", "hd95", "fp_pixels", "area"]
    assert scores["fp_pixels_class1"].tolist() == [8.0, 0.0, 0.0]
    assert scores["fp_pixels_class2"].tolist() == [0.0, 3.0, 0.0]
    assert scores["area_class1"].tolist() == [40.0, 32.0, 32.0]
    summary = segmentation_report(pred, truth, 3).summary()
    assert summary["eval/fp_pixels_global"] == pytest.approx((8 + 3) / 2)
    assert not higher_is_better("fp_pixels_class1")


def test_public_api_is_importable():
    for name in metrics.__all__:
        assert getattr(metrics, name) is not None
