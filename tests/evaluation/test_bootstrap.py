"""Bootstrap intervals against known answers: scipy.stats.bootstrap and the normal-theory CI."""

import numpy as np
import pytest
from scipy import stats

from ganseg.evaluation.bootstrap import (
    bootstrap_means,
    paired_difference,
    percentile_interval,
    resample_counts,
    t_interval,
)


def test_counts_are_resamples_with_replacement():
    counts = resample_counts(n=7, resamples=500, seed=3)
    assert counts.shape == (500, 7)
    assert np.all(counts.sum(axis=1) == 7) and counts.min() >= 0
    # Each image is drawn on average once per resample.
    assert abs(counts.mean() - 1.0) < 0.05
    assert np.array_equal(counts, resample_counts(7, 500, seed=3))
    assert not np.array_equal(counts, resample_counts(7, 500, seed=4))


def test_resampled_means_equal_the_mean_of_the_drawn_values():
    values = np.array([0.1, 0.5, 0.9, 0.3])
    counts = resample_counts(4, 50, seed=0)
    rng_means = bootstrap_means(values, counts)
    direct = np.array([np.repeat(values, row.astype(int)).mean() for row in counts])
    np.testing.assert_allclose(rng_means, direct)


def test_interval_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(0)
    values = rng.beta(5, 2, size=60)  # Dice-like, skewed
    ours = percentile_interval(values, resample_counts(60, 20000, seed=1), 0.95)
    ref = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=20000,
                          method="percentile", random_state=2).confidence_interval
    assert ours.mean == pytest.approx(values.mean())
    # Two Monte Carlo estimates of the same quantiles agree to well under the SE of the mean.
    se = values.std(ddof=1) / np.sqrt(60)
    assert ours.low == pytest.approx(ref.low, abs=0.05 * se * 4)
    assert ours.high == pytest.approx(ref.high, abs=0.05 * se * 4)
    assert ours.n == 60


def test_interval_of_normal_data_matches_normal_theory():
    rng = np.random.default_rng(1)
    values = rng.normal(0.7, 0.1, size=400)
    ours = percentile_interval(values, resample_counts(400, 10000, seed=5), 0.95)
    half = 1.96 * values.std(ddof=0) / np.sqrt(400)
    assert ours.low == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert ours.high == pytest.approx(values.mean() + half, abs=0.1 * half)


def test_constant_values_give_a_zero_width_interval():
    ours = percentile_interval(np.full(10, 0.8), resample_counts(10, 200, seed=0))
    assert ours.low == pytest.approx(0.8) and ours.high == pytest.approx(0.8)


def test_nan_values_are_left_out():
    values = np.array([0.2, np.nan, 0.4, 0.6, np.nan])
    ours = percentile_interval(values, resample_counts(5, 2000, seed=0))
    assert ours.n == 3 and ours.mean == pytest.approx(0.4)
    assert 0.2 <= ours.low <= 0.4 <= ours.high <= 0.6
    assert np.isnan(percentile_interval(np.full(4, np.nan), resample_counts(4, 10, 0)).mean)


def test_paired_difference_is_narrower_than_unpaired_when_images_vary():
    rng = np.random.default_rng(2)
    difficulty = rng.uniform(0.3, 0.95, size=80)  # images differ a lot in difficulty...
    a = difficulty + 0.02 + rng.normal(0, 0.005, 80)  # ...and model a is a bit better on each
    b = difficulty
    counts = resample_counts(80, 5000, seed=3)
    paired = paired_difference(a, b, counts)
    assert paired.mean == pytest.approx(0.02, abs=0.002)
    assert paired.low > 0 and paired.excludes_zero
    # The separate intervals overlap heavily: only pairing reveals the difference.
    ia, ib = percentile_interval(a, counts), percentile_interval(b, counts)
    assert ia.low < ib.high
    # The same counts serve both models: the paired interval is that of the differences.
    direct = percentile_interval(a - b, counts)
    assert (paired.low, paired.high) == (direct.low, direct.high)
    with pytest.raises(ValueError, match="same shape"):
        paired_difference(a, b[:-1], counts)


def test_no_difference_gives_an_interval_around_zero():
    rng = np.random.default_rng(4)
    a = rng.uniform(0.5, 0.9, 50)
    b = a + rng.normal(0, 0.05, 50)
    d = paired_difference(a, b, resample_counts(50, 4000, seed=0))
    assert d.low < 0 < d.high and not d.excludes_zero


def test_t_interval_matches_scipy():
    values = np.array([0.81, 0.79, 0.84])
    ours = t_interval(values, 0.95)
    low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    assert (ours.low, ours.high) == (pytest.approx(low), pytest.approx(high))
    single = t_interval(np.array([0.8]))
    assert single.mean == 0.8 and np.isnan(single.low)
