"""Inception Score: analytic logits, torch-fidelity on the same logits and end to end with the
same state dict, and the offline behaviour (not computed, with the reason; no download)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.metric_isc import isc_features_to_metric

import ganseg.metrics.inception as inception_module
from ganseg.errors import GansegError
from ganseg.metrics.inception import TORCH_FIDELITY_WEIGHTS_URL, torch_fidelity_weights_cache_path
from ganseg.metrics.inception_score import inception_score, inception_score_from_logits
from ganseg.metrics.kid import kid_from_features
from ganseg.metrics.unavailable import MetricUnavailable


class _UInt8Images(Dataset):
    """What torch-fidelity takes: a Dataset of uint8 (3, H, W) tensors."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def test_uniform_predictions_score_one():
    mean, std = inception_score_from_logits(torch.zeros(20, 1008), splits=2)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_confident_distinct_predictions_score_the_number_of_classes_per_split():
    logits = torch.full((20, 1008), -50.0)
    logits[torch.arange(20), torch.arange(20)] = 50.0  # each image its own class, certain
    mean, _ = inception_score_from_logits(logits, splits=2)  # 10 distinct classes per split
    assert mean == pytest.approx(10.0, rel=1e-9)
    same_class = torch.full((20, 1008), -50.0)
    same_class[:, 3] = 50.0  # certain but never diverse
    assert inception_score_from_logits(same_class, splits=2)[0] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(("n", "splits"), [(50, 10), (37, 4)])
def test_matches_torch_fidelity_on_the_same_logits(n, splits):
    logits = torch.randn(n, 1008, generator=torch.Generator().manual_seed(n)) * 3
    ours = inception_score_from_logits(logits, splits=splits, seed=2020)
    reference = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=2020)
    assert ours[0] == pytest.approx(reference["inception_score_mean"], rel=1e-12)
    assert ours[1] == pytest.approx(reference["inception_score_std"], rel=1e-9)


@pytest.mark.slow
def test_is_and_kid_match_torch_fidelity_end_to_end(transplanted_weights, real_images, blurred_images, features):
    """torch-fidelity's calculate_metrics, same state dict (fid-helper pool3 + random head), same
    uint8 images: its pipeline against ours (our batching, grayscale handling and IS/KID code)."""
    reference = torch_fidelity.calculate_metrics(
        input1=_UInt8Images(real_images),
        input2=_UInt8Images(blurred_images),
        isc=True,
        kid=True,
        isc_splits=2,
        kid_subsets=5,
        kid_subset_size=8,
        feature_extractor_weights_path=str(transplanted_weights),
        cuda=False,
        batch_size=8,
        cache=False,
        save_cpu_ram=True,
        verbose=False,
    )
    ours = inception_score(real_images, transplanted_weights, splits=2, batch_size=3)
    assert ours.mean == pytest.approx(reference["inception_score_mean"], rel=1e-6)
    assert ours.std == pytest.approx(reference["inception_score_std"], rel=1e-4, abs=1e-6)
    assert ours.mean > 1.05  # a real spread of predictions, not the trivial score
    assert (ours.n, ours.splits, ours.weights) == (8, 2, "torch-fidelity:inception-transplanted.pth")
    # torch-fidelity computes the KID kernels from float32 features (ours: float64), whose
    # rounding survives the cancellation in MMD^2 (measured 2e-7 relative here).
    kid = kid_from_features(features["real"], features["blurred"], subsets=5, subset_size=8, seed=2020)
    assert kid.mean == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-5)


def test_without_weights_is_is_not_computed_with_the_fix(real_images, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", _must_not_download)
    started = time.perf_counter()
    with pytest.raises(MetricUnavailable) as caught:
        inception_score(torch.zeros(10, 1, 32, 32, dtype=torch.uint8))
    assert time.perf_counter() - started < 5  # fails fast, no network attempt
    reason = caught.value.reason
    assert str(torch_fidelity_weights_cache_path()) in reason
    assert TORCH_FIDELITY_WEIGHTS_URL in reason and "allow the download" in reason
    assert caught.value.as_record() == {"value": None, "reason": reason}
    assert str(caught.value).startswith("inception_score not computed: ")


def test_allowed_download_offline_fails_fast_with_the_reason(monkeypatch):
    def unreachable(address, timeout=None):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(inception_module.socket, "create_connection", unreachable)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _must_not_download)
    with pytest.raises(MetricUnavailable, match="cannot reach github.com") as caught:
        inception_score(torch.zeros(10, 1, 32, 32, dtype=torch.uint8), allow_download=True)
    assert str(torch_fidelity_weights_cache_path()) in caught.value.reason


def test_allowed_download_that_fails_midway_is_reported(monkeypatch):
    monkeypatch.setattr(inception_module.socket, "create_connection", lambda *a, **k: _Closable())

    def broken(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "00000000")')

    monkeypatch.setattr(torch.hub, "download_url_to_file", broken)
    with pytest.raises(MetricUnavailable, match="download of .* failed .*invalid hash"):
        inception_score(torch.zeros(10, 1, 32, 32, dtype=torch.uint8), allow_download=True)


def test_allowed_download_lands_in_the_hub_cache_and_is_used(monkeypatch, transplanted_weights):
    monkeypatch.setattr(inception_module.socket, "create_connection", lambda *a, **k: _Closable())
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        shutil.copyfile(transplanted_weights, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    classifier = inception_module.load_inception_classifier(None, allow_download=True)
    assert calls == [(TORCH_FIDELITY_WEIGHTS_URL, "6726825d")]
    assert torch_fidelity_weights_cache_path().is_file()
    assert classifier.source.endswith("weights-inception-2015-12-05-6726825d.pth")


def test_too_few_images_for_the_splits_is_not_computed():
    with pytest.raises(MetricUnavailable, match="at least 10 images"):
        inception_score(torch.zeros(6, 1, 32, 32, dtype=torch.uint8), splits=10)


def test_explicit_missing_weights_path_is_a_user_error(tmp_path):
    with pytest.raises(GansegError, match="missing.pth: Inception weights file not found"):
        inception_score(torch.zeros(10, 1, 32, 32, dtype=torch.uint8), tmp_path / "missing.pth")


def test_pool3_only_weights_are_not_accepted_for_is(tmp_path):
    path = tmp_path / "no_head.pth"
    torch.save({"Mixed_7c.branch_pool.conv.weight": torch.zeros(1)}, path)
    with pytest.raises(GansegError, match="not torch-fidelity's Inception weights"):
        inception_score(torch.zeros(10, 1, 32, 32, dtype=torch.uint8), path)


class _Closable:
    def close(self) -> None:
        return None


def _must_not_download(*args, **kwargs):
    raise AssertionError("a download was attempted")


def test_logits_shape_is_checked():
    with pytest.raises(ValueError, match="logits must be"):
        inception_score_from_logits(np.zeros(10))
