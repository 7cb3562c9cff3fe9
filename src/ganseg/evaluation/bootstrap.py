"""Percentile bootstrap intervals over test images, vectorised and seeded.

The unit of replication is the test image: a resample draws n images with replacement. A
resample is stored as a count vector (how often each image was drawn), so the resampled mean
of any per-image column is one matrix product, ``counts @ values / n``: no (B, n) gather, and
one set of resamples serves every model and metric. Paired differences between two models
use the same counts for both, which is exactly the bootstrap of the per-image differences.

Missing values (NaN: a metric undefined for an image, e.g. precision with no predicted
foreground) are left out of each resampled mean; a resample that draws none of the defined
images contributes nothing to the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate (the mean over all images) and its bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int  # images with a defined value

    def as_dict(self, digits: int = 6) -> dict[str, float | int | None]:
        def r(value: float) -> float | None:
            return None if not np.isfinite(value) else round(float(value), digits)

        return {"mean": r(self.mean), "low": r(self.low), "high": r(self.high), "n": self.n}

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) draw counts: row b says how often each image is in resample b."""
    if n < 1:
        raise ValueError("bootstrap needs at least one value")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def bootstrap_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Resampled means of ``values`` (n,) or (n, m) -> (B,) or (B, m); NaN values left out."""
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values)
    filled = np.where(defined, values, 0.0)
    totals = counts @ filled  # (B,) or (B, m)
    drawn = counts @ defined.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(drawn > 0, totals / np.where(drawn > 0, drawn, 1.0), np.nan)


def percentile_interval(values: np.ndarray, counts: np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean of ``values`` (n,) and its percentile-bootstrap interval from ``counts``."""
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values)
    if not defined.any():
        return Interval(np.nan, np.nan, np.nan, 0)
    means = bootstrap_means(values, counts)
    means = means[np.isfinite(means)]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(values[defined].mean()), float(low), float(high), int(defined.sum()))


def paired_difference(
    values_a: np.ndarray, values_b: np.ndarray, counts: np.ndarray, confidence: float = 0.95
) -> Interval:
    """Mean of ``a - b`` over images where both are defined, with its bootstrap interval.

    ``a`` and ``b`` are per-image values of two models on the same images, in the same order.
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same shape, got {a.shape} and {b.shape}")
    return percentile_interval(a - b, counts, confidence)


def t_interval(values: np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean and Student-t interval of a few independent values (e.g. one per seed)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(values.mean())
    if n == 1:
        return Interval(mean, np.nan, np.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)
