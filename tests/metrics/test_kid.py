"""KID against torch-fidelity (same subsets, same seed) and torchmetrics (whole-set subsets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch_fidelity.metric_kid import kid_features_to_metric
from torchmetrics.image.kid import KernelInceptionDistance

from ganseg.metrics.kid import kid_from_features


def _features(n: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 0.3, size=(n, dim)) + shift


def _torch_fidelity_kid(real: np.ndarray, fake: np.ndarray, subsets: int, subset_size: int, seed: int) -> dict:
    return kid_features_to_metric(
        torch.from_numpy(real),
        torch.from_numpy(fake),
        kid_subsets=subsets,
        kid_subset_size=subset_size,
        rng_seed=seed,
        verbose=False,
    )


@pytest.mark.parametrize(("n_real", "n_fake", "subset_size"), [(120, 150, 50), (64, 64, 64)])
def test_matches_torch_fidelity_subset_for_subset(n_real, n_fake, subset_size):
    real, fake = _features(n_real, 64, seed=1), _features(n_fake, 64, seed=2, shift=0.05)
    ours = kid_from_features(real, fake, subsets=20, subset_size=subset_size, seed=7)
    reference = _torch_fidelity_kid(real, fake, subsets=20, subset_size=subset_size, seed=7)
    assert ours.mean == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-9)
    assert ours.std == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-7, abs=1e-15)
    assert (ours.subset_size, ours.subsets, ours.n_real, ours.n_fake) == (subset_size, 20, n_real, n_fake)


def test_precomputed_and_per_subset_kernels_agree(monkeypatch):
    real, fake = _features(90, 32, seed=3), _features(80, 32, seed=4, shift=0.1)
    precomputed = kid_from_features(real, fake, subsets=10, subset_size=40)
    monkeypatch.setattr("ganseg.metrics.kid._PRECOMPUTE_MAX_SAMPLES", 10)
    per_subset = kid_from_features(real, fake, subsets=10, subset_size=40)
    assert precomputed.mean == pytest.approx(per_subset.mean, rel=1e-12)
    assert precomputed.std == pytest.approx(per_subset.std, rel=1e-9)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_whole_set_subset_matches_torchmetrics():
    """subset_size = N: every subset is a permutation of the whole set and MMD^2 is invariant to
    it, so torchmetrics' torch.randperm draws give the same value as ours."""
    real, fake = _features(70, 48, seed=5), _features(70, 48, seed=6, shift=0.03)
    metric = KernelInceptionDistance(feature=nn.Identity(), subsets=3, subset_size=70)
    metric.update(torch.from_numpy(real), real=True)  # features in float64, through its update path
    metric.update(torch.from_numpy(fake), real=False)
    reference_mean, reference_std = metric.compute()
    ours = kid_from_features(real, fake, subsets=3, subset_size=70)
    assert ours.mean == pytest.approx(float(reference_mean), rel=1e-10)
    assert ours.std == pytest.approx(0.0, abs=1e-15)
    assert float(reference_std) == pytest.approx(0.0, abs=1e-12)


def test_same_distribution_is_near_zero_and_a_shift_is_not():
    real = _features(200, 32, seed=8)
    same = _features(200, 32, seed=9)
    shifted = _features(200, 32, seed=10, shift=0.2)
    near = kid_from_features(real, same, subsets=30, subset_size=100)
    far = kid_from_features(real, shifted, subsets=30, subset_size=100)
    assert abs(near.mean) < 3 * near.std + 1e-4
    assert far.mean > 10 * max(abs(near.mean), near.std)


def test_subset_size_is_capped_at_the_smaller_set():
    result = kid_from_features(_features(30, 16, seed=11), _features(25, 16, seed=12))
    assert result.subset_size == 25
    with pytest.raises(ValueError, match="at least 2 samples"):
        kid_from_features(_features(1, 16, seed=13), _features(25, 16, seed=14))
