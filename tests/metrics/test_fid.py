"""Fréchet distance: analytic Gaussians, exact-moment samples, both routes, scipy/torchmetrics/
torch-fidelity on full-rank statistics, and extended precision where those references drift."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.linalg
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torchmetrics.image.fid import _compute_fid

from ganseg.metrics.fid import (
    feature_statistics,
    fid_from_features,
    frechet_distance,
    trace_sqrt_product,
)


def _random_spd(dim: int, seed: int, log_range=(-4.0, 1.0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    eigenvalues = np.exp(rng.uniform(*log_range, size=dim))
    sigma = (q * eigenvalues) @ q.T
    return (sigma + sigma.T) / 2


def _samples_with_exact_moments(mu: np.ndarray, sigma: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n samples whose empirical mean is mu and unbiased covariance is sigma (n > dim)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, mu.shape[0]))
    z -= z.mean(axis=0)
    u, _, vt = np.linalg.svd(z, full_matrices=False)  # whiten: (u vt)^T (u vt) = I
    white = u @ vt * np.sqrt(n - 1)
    return white @ np.linalg.cholesky(sigma).T + mu


def test_one_dimension_is_mean_and_std_differences_squared():
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert value == pytest.approx(3.0**2 + (2.0 - 3.0) ** 2, rel=1e-14)


def test_diagonal_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 50), rng.uniform(0.1, 3, 50)
    mu1, mu2 = rng.normal(size=50), rng.normal(size=50)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_commuting_covariances_in_a_random_basis():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    a, b = rng.uniform(0.01, 2, 64), rng.uniform(0.01, 2, 64)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    mu = rng.normal(size=64)
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-10)


def test_equal_covariances_give_the_squared_mean_distance():
    sigma = _random_spd(128, seed=2)
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=128), rng.normal(size=128)
    value = frechet_distance(mu1, sigma, mu2, sigma)
    assert value == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-10)


def test_non_commuting_two_dimensional_closed_form():
    # For 2x2 M with real non-negative eigenvalues: Tr sqrt(M) = sqrt(Tr M + 2 sqrt(det M)).
    s1 = np.array([[2.0, 0.7], [0.7, 0.5]])
    s2 = np.array([[1.0, -0.4], [-0.4, 3.0]])
    product = s1 @ s2
    trace_sqrt = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(expected, rel=1e-13)


def test_singular_covariances_are_exact_where_sqrtm_is_not():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(7, 20))
    s1 = a.T @ a  # rank 5: Cholesky fails, the eigh route runs
    s2_full, s2_singular = _random_spd(20, seed=5), b.T @ b
    # Exact: S1 S2 = A^T (A S2) has the nonzero eigenvalues of A S2 A^T (5x5, positive definite)
    exact_full = np.sqrt(np.linalg.eigvalsh(a @ s2_full @ a.T)).sum()
    exact_singular = np.linalg.svd(a @ b.T, compute_uv=False).sum()  # sqrt(eig(A B^T B A^T))
    assert float(trace_sqrt_product(s1, s2_full)) == pytest.approx(exact_full, rel=1e-13)
    assert float(trace_sqrt_product(s1, s2_singular)) == pytest.approx(exact_singular, rel=1e-13)
    by_sqrtm = np.trace(scipy.linalg.sqrtm(s1 @ s2_full)).real
    assert abs(by_sqrtm - exact_full) > 1e-10 * exact_full  # the square root of round-off


def test_features_with_exact_moments_reproduce_the_analytic_value():
    dim = 32
    mu1, mu2 = np.zeros(dim), np.full(dim, 0.25)
    s1, s2 = _random_spd(dim, seed=6), _random_spd(dim, seed=7)
    real = _samples_with_exact_moments(mu1, s1, n=200, seed=8)
    fake = _samples_with_exact_moments(mu2, s2, n=300, seed=9)
    mean, covariance = feature_statistics(real)
    np.testing.assert_allclose(covariance.numpy(), s1, atol=1e-10)
    np.testing.assert_allclose(mean.numpy(), mu1, atol=1e-12)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    analytic = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert fid_from_features(real, fake) == pytest.approx(analytic, rel=1e-10)


def test_sampled_gaussians_converge_to_the_analytic_value():
    rng = np.random.default_rng(10)
    dim = 4
    s1, s2 = _random_spd(dim, seed=11, log_range=(-1, 1)), _random_spd(dim, seed=12, log_range=(-1, 1))
    mu1, mu2 = np.zeros(dim), np.ones(dim)
    analytic = frechet_distance(mu1, s1, mu2, s2)
    real = rng.multivariate_normal(mu1, s1, size=40_000)
    fake = rng.multivariate_normal(mu2, s2, size=40_000)
    assert fid_from_features(real, fake) == pytest.approx(analytic, rel=0.03)


def test_low_rank_route_equals_the_covariance_route():
    rng = np.random.default_rng(13)
    real, fake = rng.normal(size=(30, 64)), rng.normal(loc=0.3, size=(45, 64)) * 1.5
    mu1, s1 = feature_statistics(real)
    mu2, s2 = feature_statistics(fake)
    # 30 and 45 samples in 64-d: fid_from_features takes the nuclear-norm route
    assert fid_from_features(real, fake) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-9)


@pytest.mark.parametrize("n", [10, 3000])
def test_identical_sets_give_zero(n):
    features = np.random.default_rng(14).gamma(2.0, 0.2, size=(n, 2048 if n < 2048 else 256))
    scale = float(np.trace(np.cov(features, rowvar=False)))
    assert abs(fid_from_features(features, features)) < 1e-6 * scale


def test_full_rank_statistics_match_scipy_torchmetrics_and_torch_fidelity():
    """Where the references are accurate (covariances of full rank), agreement is ~1e-10."""
    rng = np.random.default_rng(15)
    real = rng.gamma(2.0, 0.3, size=(600, 256))
    fake = rng.gamma(2.2, 0.28, size=(700, 256)) + rng.normal(0, 0.05, size=(700, 256))
    ours = fid_from_features(real, fake)
    mu1, s1 = real.mean(0), np.cov(real, rowvar=False)
    mu2, s2 = fake.mean(0), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    by_sqrtm = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real
    by_torchmetrics = float(_compute_fid(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2))))
    by_torch_fidelity = fid_statistics_to_metric(
        fid_features_to_statistics(torch.from_numpy(real)), fid_features_to_statistics(torch.from_numpy(fake)), False
    )["frechet_inception_distance"]
    for reference in (by_sqrtm, by_torchmetrics, by_torch_fidelity):
        assert ours == pytest.approx(reference, rel=1e-10)


def test_small_n_matches_extended_precision_where_eigvals_references_drift():
    """N < D: the covariances have D - N + 1 zero eigenvalues. Taking sqrt of their round-off
    (eigvals of S1 S2, as torchmetrics and torch-fidelity do) adds up to ~1e-6 relative at
    D = 2048; our nuclear-norm route agrees with a 40-digit computation to ~1e-13. (D = 512
    here: a 2048-d non-symmetric eigvals takes over a minute on this CPU.)"""
    rng = np.random.default_rng(16)
    real = rng.gamma(1.5, 0.4, size=(12, 512))
    fake = rng.gamma(1.6, 0.4, size=(12, 512))
    ours = fid_from_features(real, fake)
    exact = _fid_extended_precision(real, fake)
    assert ours == pytest.approx(exact, rel=1e-12)
    mu1, s1 = feature_statistics(real)
    mu2, s2 = feature_statistics(fake)
    by_torchmetrics = float(_compute_fid(mu1, s1, mu2, s2))
    assert by_torchmetrics == pytest.approx(exact, rel=1e-4)  # the reference's own accuracy here


def _fid_extended_precision(real: np.ndarray, fake: np.ndarray, digits: int = 40) -> float:
    """FID with mpmath at ``digits`` digits from float64 features (low-rank identity, exact)."""
    with mpmath.workdps(digits):
        n1, n2 = len(real), len(fake)
        rows1 = [[mpmath.mpf(x) for x in row] for row in real.tolist()]
        rows2 = [[mpmath.mpf(x) for x in row] for row in fake.tolist()]
        mu1 = [mpmath.fsum(column) / n1 for column in zip(*rows1, strict=True)]
        mu2 = [mpmath.fsum(column) / n2 for column in zip(*rows2, strict=True)]
        centred1 = [[x - m for x, m in zip(row, mu1, strict=True)] for row in rows1]
        centred2 = [[x - m for x, m in zip(row, mu2, strict=True)] for row in rows2]
        trace1 = mpmath.fsum(mpmath.fdot(row, row) for row in centred1) / (n1 - 1)
        trace2 = mpmath.fsum(mpmath.fdot(row, row) for row in centred2) / (n2 - 1)
        cross = mpmath.matrix([[mpmath.fdot(r1, r2) for r2 in centred2] for r1 in centred1])  # (N1, N2)
        trace_sqrt = mpmath.fsum(mpmath.svd_r(cross, compute_uv=False)) / mpmath.sqrt((n1 - 1) * (n2 - 1))
        mean_term = mpmath.fsum((x - y) ** 2 for x, y in zip(mu1, mu2, strict=True))
        return float(mean_term + trace1 + trace2 - 2 * trace_sqrt)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="at least 2 samples"):
        fid_from_features(np.zeros((1, 8)), np.zeros((5, 8)))
    with pytest.raises(ValueError, match="same D"):
        fid_from_features(np.zeros((4, 8)), np.zeros((5, 9)))
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
