"""Per-image scores, comparisons, the metrics dict, the markdown and the overlay colours."""

import json

import numpy as np
import pytest
import torch

from ganseg.evaluation import overlays
from ganseg.evaluation.bootstrap import resample_counts
from ganseg.evaluation.report import Evaluation, difference_verdict, metrics_dict, render_markdown
from ganseg.evaluation.scores import compare, comparison_pairs, score_images


def _masks(n=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.random((n, size, size)) > 0.6).astype(np.uint8))


def test_scores_of_a_perfect_and_an_empty_prediction():
    truth = _masks()
    perfect = score_images(truth.clone(), truth, 1)
    assert np.allclose(perfect["dice"], 1) and np.allclose(perfect["hd95"], 0)
    empty = score_images(torch.zeros_like(truth), truth, 1)
    assert np.allclose(empty["dice"], 0) and np.allclose(empty["recall"], 0)
    assert list(perfect) == ["dice", "iou", "precision", "recall", "hd95"]


def test_multi_class_scores_have_per_class_columns_and_a_class_mean():
    rng = np.random.default_rng(1)
    truth = torch.from_numpy(rng.integers(0, 3, (3, 12, 12)).astype(np.uint8))
    predicted = truth.clone()
    predicted[:, :6][predicted[:, :6] == 2] = 1  # class 2 is half-missed
    scores = score_images(predicted, truth, 3)
    assert {"dice_class1", "dice_class2", "hd95_class2"} <= set(scores)
    np.testing.assert_allclose(scores["dice"], (scores["dice_class1"] + scores["dice_class2"]) / 2)
    assert (scores["dice_class2"] < 1).all()


def test_comparison_pairs_baseline_first_then_later_minus_earlier():
    assert comparison_pairs(["real", "synthetic", "adversarial"], "real") == [
        ("synthetic", "real"), ("adversarial", "real"), ("adversarial", "synthetic")]
    assert comparison_pairs(["synthetic", "adversarial"], "real") == [("adversarial", "synthetic")]
    assert comparison_pairs(["real"], "real") == []


def _comparison():
    truth = _masks(n=6)
    good = truth.clone()
    good[0] = 0  # one image missed
    scores = {"real": score_images(torch.zeros_like(truth), truth, 1), "synthetic": score_images(good, truth, 1)}
    return compare([f"i{k}" for k in range(6)], scores, "real", resample_counts(6, 500, 0), 0.95)


def test_compare_summarises_and_pairs():
    comparison = _comparison()
    assert comparison.best("dice") == "synthetic" and comparison.best("hd95") == "synthetic"
    diff = comparison.differences["synthetic_vs_real"]["dice"]
    assert diff.mean == pytest.approx(5 / 6) and diff.low > 0
    table = comparison.per_image_table()
    assert len(table) == 12 and list(table.columns[:3]) == ["variant", "pair_id", "dice"]


def test_metrics_dict_is_json_with_numbers_and_intervals():
    evaluation = Evaluation(comparison=_comparison(), test_folder="data/prepared/test", num_classes=1,
                            resamples=500, confidence=0.95, missing={"adversarial": "not found"})
    data = json.loads(json.dumps(metrics_dict(evaluation), allow_nan=False))
    assert data["best_variant"] == "synthetic" and data["test_images"] == 6
    cell = data["variants"]["synthetic"]
    assert cell["dice_low"] <= cell["dice"] <= cell["dice_high"]
    text = render_markdown(evaluation)
    assert "| **synthetic** |" in text and "`adversarial` not evaluated: not found" in text
    assert "| synthetic − real |" in text and "| better |" in text


@pytest.mark.parametrize(("low", "high", "metric", "expected"), [
    (0.01, 0.05, "dice", "better"), (-0.05, -0.01, "dice", "worse"), (-0.01, 0.02, "dice", "no clear difference"),
    (-3.0, -1.0, "hd95", "better"), (1.0, 3.0, "hd95", "worse")])
def test_difference_verdict_respects_the_metric_direction(low, high, metric, expected):
    from ganseg.evaluation.bootstrap import Interval

    assert difference_verdict(Interval((low + high) / 2, low, high, 10), metric) == expected


def test_error_overlay_colours_each_kind_of_pixel():
    image = np.full((2, 2, 1), 100, np.uint8)
    predicted = np.array([[1, 1], [0, 2]])
    truth = np.array([[1, 0], [1, 1]])
    rgb = overlays.error_overlay(image, predicted, truth).astype(int)
    # correct -> green dominant, false positive -> orange (red high), missed -> blue, wrong class -> magenta
    assert rgb[0, 0, 1] > rgb[0, 0, 0] and rgb[0, 1, 0] > rgb[0, 1, 2] and rgb[1, 0, 2] > rgb[1, 0, 0]
    assert rgb[1, 1, 0] > rgb[1, 1, 1] and rgb[1, 1, 2] > rgb[1, 1, 1]
    plain = overlays.mask_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), int))
    assert not plain.any()  # no foreground, nothing drawn


def test_multi_class_report_has_a_per_class_table():
    rng = np.random.default_rng(3)
    truth = torch.from_numpy(rng.integers(0, 3, (5, 12, 12)).astype(np.uint8))
    scores = {"real": score_images(torch.zeros_like(truth), truth, 3), "synthetic": score_images(truth.clone(), truth, 3)}
    comparison = compare([f"i{k}" for k in range(5)], scores, "real", resample_counts(5, 200, 0), 0.95)
    evaluation = Evaluation(comparison=comparison, test_folder="t", num_classes=3, resamples=200, confidence=0.95)
    text = render_markdown(evaluation)
    assert "### Dice per class" in text and "| dice_class1 | dice_class2 |" in text
    data = metrics_dict(evaluation)
    assert data["variants"]["synthetic"]["dice_class2"] == 1.0
