"""Synthetic-image quality at one N: both FID/KID rows and IS drawn to the same N, N on every
line (metrics, report, stage output), the small-N warning; the augment stage follows the rule."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import pipelines.augment as augment_stage
import pipelines.evaluate as evaluate_stage
from ganseg.config.augment import AugmentConfig
from ganseg.config.common import CommonConfig
from ganseg.config.evaluate import EvaluateConfig, SyntheticQualityConfig
from ganseg.evaluation import synthetic_quality
from ganseg.evaluation.bootstrap import resample_counts
from ganseg.evaluation.report import Evaluation, metrics_dict, render_markdown
from ganseg.evaluation.scores import compare
from ganseg.metrics.fid import fid_from_features
from ganseg.metrics.image_quality import FID_MIN_N, equal_n, small_n_warning
from ganseg.metrics.inception import extract_features
from ganseg.metrics.inception_score import InceptionScoreResult
from tests.metrics.test_image_quality import SmallFeatureNet, _microscopy


@pytest.fixture
def small_extractor(monkeypatch):
    """A cheap fixed extractor in place of Inception, in both stages."""
    net = SmallFeatureNet().eval()
    monkeypatch.setattr(synthetic_quality, "load_feature_extractor", lambda *args, **kwargs: net)
    monkeypatch.setattr("ganseg.metrics.inception.load_feature_extractor", lambda *args, **kwargs: net)
    return net


@pytest.fixture
def fake_inception_score(monkeypatch):
    def score(images, weights, splits, batch_size, device):
        return InceptionScoreResult(mean=2.5, std=0.1, n=len(images), splits=splits, weights="fake")

    monkeypatch.setattr(synthetic_quality, "inception_score", score)


@pytest.fixture(scope="module")
def image_sets() -> dict[str, torch.Tensor]:
    return {"train": _microscopy(90, seed=1), "synthetic": _microscopy(80, seed=2), "held_out": _microscopy(30, seed=3)}


CFG = SyntheticQualityConfig(max_images=64, kid_subset_size=50, kid_subsets=5, batch_size=32)


def test_equal_n_is_the_smallest_set_capped():
    assert equal_n(90, 80, 30, max_images=64) == 30
    assert equal_n(90, 80, max_images=64) == 64


def test_both_rows_and_is_use_one_n(small_extractor, fake_inception_score, image_sets):
    quality = synthetic_quality.image_quality(
        image_sets["train"], image_sets["synthetic"], image_sets["held_out"], CFG, seed=0, device=torch.device("cpu")
    )
    values = quality.values
    assert quality.n == 30  # held-out has 30: every side is drawn to 30, not 64 vs 64 against 30 vs 64
    assert (values["n_synthetic"], values["n_real"], values["reference_n"]) == (30, 30, 30)
    assert values["kid_subset_size"] == 30 and values["kid_std"] >= 0 and values["reference_kid_std"] >= 0
    assert (values["inception_score_n"], values["inception_score_splits"]) == (30, 10)
    # The reference row is FID between the same 30 training images and 30 held-out ones.
    real = synthetic_quality.seeded_subset(image_sets["train"], 30, 0)
    reference = synthetic_quality.seeded_subset(image_sets["held_out"], 30, 2)
    expected = fid_from_features(extract_features(real, small_extractor), extract_features(reference, small_extractor))
    assert values["reference_fid"] == round(expected, 4) > 0


def test_without_held_out_images_n_is_synthetic_and_train(small_extractor, image_sets):
    cfg = CFG.model_copy(update={"inception_score": False})
    quality = synthetic_quality.image_quality(
        image_sets["train"], image_sets["synthetic"], None, cfg, seed=0, device=torch.device("cpu")
    )
    assert quality.n == 64 and quality.values["n_synthetic"] == quality.values["n_real"] == 64
    assert "reference" in quality.not_computed and "reference_fid" not in quality.values


def test_small_n_warning_below_2048_only():
    assert small_n_warning(FID_MIN_N, "evaluate") is None
    message = small_n_warning(64, "evaluate")
    assert message.startswith("warning: evaluate: FID at N 64 < 2048")


def _evaluation(values: dict) -> Evaluation:
    scores = {"real": {"dice": np.linspace(0.5, 0.9, 6)}}
    comparison = compare([f"t{i}" for i in range(6)], scores, "real", resample_counts(6, 200, 0), 0.95)
    return Evaluation(comparison=comparison, test_folder="t", num_classes=1, resamples=200, confidence=0.95,
                      quality={"values": values, "not_computed": {}, "feature_extractor": "small-test-net"})


VALUES = {"n_real": 64, "n_synthetic": 64, "fid": 150.5, "kid": 0.05, "kid_std": 0.004, "kid_subset_size": 50,
          "kid_subsets": 50, "reference_n": 64, "reference_fid": 80.25, "reference_kid": 0.002,
          "reference_kid_std": 0.0011, "inception_score": 2.5, "inception_score_std": 0.1,
          "inception_score_n": 64, "inception_score_splits": 10}


def test_report_states_one_n_for_both_rows_with_spreads_and_the_is_bound():
    text = render_markdown(_evaluation(VALUES))
    assert "Both rows use the same N = 64 images per side" in text
    assert "| synthetic vs real train | 64 vs 64 | 150.50 | 0.0500 ± 0.0040 |" in text
    assert "| real held-out vs real train (reference) | 64 vs 64 | 80.25 | 0.0020 ± 0.0011 |" in text
    assert "N = 64 < 2048: much of each FID here is small-N bias" in text
    assert "(N 64, 10 splits;" in text and "IS cannot exceed 6.4 by construction" in text
    synthetic = metrics_dict(_evaluation(VALUES))["synthetic"]
    assert synthetic["reference_kid_std"] == 0.0011 and synthetic["inception_score_n"] == 64


def test_stage_summary_prints_n_on_every_fid_kid_and_is_line(capsys):
    evaluate_stage.print_summary(_evaluation(VALUES), {"segmentation": 1.0}, "reports/evaluation.md")
    lines = capsys.readouterr().out.splitlines()
    assert ("evaluate: synthetic vs real train: FID 150.50 (N 64 vs 64), KID 0.0500 ± 0.0040 "
            "(N 64 vs 64, 50 subsets of 50)") in lines
    assert ("evaluate: real held-out vs real train (reference): FID 80.25 (N 64 vs 64), KID 0.0020 ± 0.0011 "
            "(N 64 vs 64, 50 subsets of 50)") in lines
    assert "evaluate: Inception Score 2.500 ± 0.100 (N 64, 10 splits: at most 6.4 at this N)" in lines
    flat = evaluate_stage.flat_metrics(_evaluation(VALUES))
    assert flat["eval/n_synthetic"] == flat["eval/reference_n"] == flat["eval/inception_score_n"] == 64


def test_evaluate_stage_warns_on_stderr_at_small_n(small_extractor, image_sets, monkeypatch, capsys, tmp_path):
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "manifest.csv").write_text("pair_id\n")
    (tmp_path / "prepared" / "val").mkdir(parents=True)
    (tmp_path / "prepared" / "val" / "manifest.csv").write_text("pair_id\n")
    folders = {"synthetic": "synthetic", "train": "train", "val": "held_out"}
    monkeypatch.setattr(evaluate_stage, "load_pairs", lambda folder, channels, num_classes: types.SimpleNamespace(
        images=image_sets[folders[folder.name]]))
    cfg = EvaluateConfig(synthetic_quality=CFG.model_copy(update={"inception_score": False}))
    evaluation = _evaluation({})
    evaluate_stage.judge_synthetic(evaluation, tmp_path / "prepared", tmp_path / "synthetic", None,
                                   CommonConfig(), cfg, torch.device("cpu"))
    assert "warning: evaluate: FID at N 30 < 2048" in capsys.readouterr().err
    assert evaluation.quality["values"]["reference_n"] == 30


def test_augment_stage_compares_at_equal_n_and_says_so(small_extractor, image_sets, capsys):
    cfg = AugmentConfig(quality={"fid_kid": True, "max_images": 100, "kid_subset_size": 50, "kid_subsets": 5})
    values = augment_stage.image_quality(cfg, CommonConfig(), image_sets["train"], image_sets["held_out"], "cpu")
    assert (values["fid_n_real"], values["fid_n_fake"], values["kid_subset_size"]) == (30, 30, 30)
    captured = capsys.readouterr()
    assert "augment: synthetic vs real train: FID " in captured.out and "(N 30 vs 30)" in captured.out
    assert "(N 30 vs 30, 5 subsets of 30)" in captured.out
    assert "warning: augment: FID at N 30 < 2048" in captured.err
    summary = {"final": {}, **values, "filter": {"kept": 30, "dropped": 0, "kept_dice": None}}
    flat = augment_stage.flat_metrics(summary)
    assert flat["augment/fid_n_real"] == flat["augment/fid_n_fake"] == 30
