"""Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel, over random subsets.

k(x, y) = (x . y / D + 1)^3. Each subset draws ``subset_size`` features from each set without
replacement; MMD^2 is the unbiased estimator of Binkowski et al. (2018) as torch-fidelity and
torchmetrics implement it (diagonals dropped from K_xx and K_yy, K_xy kept whole). The mean and
(population) std over subsets are reported. Subsets are drawn exactly as torch-fidelity draws
them (``numpy.random.RandomState(seed).choice``), so the same features and seed give the
same value as ``torch_fidelity`` with ``kid_subsets``, ``kid_subset_size`` and ``rng_seed``.

Unlike FID, KID is unbiased at small N, which is why it is reported beside FID here. When a set
has fewer than ``subset_size`` samples the subset size shrinks to the smaller set (torch-fidelity
would refuse); the size used is part of the result. With subset size = N every subset is the
whole set, so the std is 0: it measures subset spread, not the estimator's uncertainty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

# Above this many samples per set the full kernel matrices (float64) are not precomputed.
_PRECOMPUTE_MAX_SAMPLES = 2048


@dataclass(frozen=True)
class KidResult:
    mean: float
    std: float
    subset_size: int
    subsets: int
    n_real: int
    n_fake: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int, gamma: float, coef0: float) -> torch.Tensor:
    """(M, D), (P, D) -> (M, P): (gamma x . y + coef0)^degree."""
    return (x @ y.T * gamma + coef0) ** degree


def unbiased_mmd2(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 from square kernel blocks of one subset (m, m) each."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / (m * m)


def kid_from_features(
    real: ArrayLike,
    fake: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 2020,
) -> KidResult:
    """KID between feature sets (N1, D) and (N2, D), float64; defaults are torch-fidelity's."""
    feats1 = torch.as_tensor(real).to(torch.float64)
    feats2 = torch.as_tensor(fake).to(torch.float64)
    if feats1.ndim != 2 or feats2.ndim != 2 or feats1.shape[1] != feats2.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {tuple(feats1.shape)}, {tuple(feats2.shape)}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    n1, n2 = feats1.shape[0], feats2.shape[0]
    size = min(subset_size, n1, n2)
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {n1} and {n2}")
    gamma = 1.0 / feats1.shape[1] if gamma is None else gamma

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return polynomial_kernel(x, y, degree, gamma, coef0)

    precompute = max(n1, n2) <= _PRECOMPUTE_MAX_SAMPLES
    if precompute:  # every subset's kernel blocks are sub-blocks of these
        k11, k22, k12 = kernel(feats1, feats1), kernel(feats2, feats2), kernel(feats1, feats2)

    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        idx1 = torch.from_numpy(rng.choice(n1, size, replace=False))
        idx2 = torch.from_numpy(rng.choice(n2, size, replace=False))
        if precompute:
            k_xx, k_yy, k_xy = k11[idx1][:, idx1], k22[idx2][:, idx2], k12[idx1][:, idx2]
        else:
            x, y = feats1[idx1], feats2[idx2]
            k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
        values[i] = float(unbiased_mmd2(k_xx, k_xy, k_yy))
    return KidResult(
        mean=float(values.mean()), std=float(values.std()), subset_size=size, subsets=subsets, n_real=n1, n_fake=n2
    )
