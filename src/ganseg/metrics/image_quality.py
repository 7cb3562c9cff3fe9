"""FID and KID of a generated image set against a real one, from one feature pass per set.

FID is biased upwards at small N (its expectation falls roughly like 1/N), so a value is only
comparable with values at the same N. The rule both stages follow (augment, evaluate):

- the sets compared are drawn to one N (:func:`equal_n` and :func:`seeded_subset`): the
  smallest set, capped by ``max_images``;
- every FID / KID line carries its N (:meth:`FidKidResult.describe`, :meth:`FidKidResult.as_dict`);
- below :data:`FID_MIN_N` images per side the stage prints :func:`small_n_warning` on stderr:
  there most of an FID can be bias (two disjoint samples of real DSB 2018 images at 64 px give
  FID 183 at N 16, 133 at 48, 103 at 64: docs/evaluation.md).

KID is unbiased and is the number to trust when N is a few hundred or less.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ganseg.metrics.fid import fid_from_features
from ganseg.metrics.inception import extract_features
from ganseg.metrics.kid import kid_from_features

# The Inception pool3 dimension: below it the feature covariances are rank-deficient and the
# usual FID protocols (torch-fidelity, the TTUR reference) warn; published FIDs use 10 000+.
FID_MIN_N = 2048


@dataclass(frozen=True)
class FidKidResult:
    fid: float
    kid_mean: float
    kid_std: float
    kid_subset_size: int
    kid_subsets: int
    n_real: int
    n_fake: int
    feature_extractor: str

    def as_dict(self, prefix: str = "eval/") -> dict[str, float | int | str]:
        """Namespaced values for a metrics file; N sits beside every FID."""
        return {
            f"{prefix}fid": self.fid,
            f"{prefix}fid_n_real": self.n_real,
            f"{prefix}fid_n_fake": self.n_fake,
            f"{prefix}kid": self.kid_mean,
            f"{prefix}kid_std": self.kid_std,
            f"{prefix}kid_subset_size": self.kid_subset_size,
            f"{prefix}kid_subsets": self.kid_subsets,
            f"{prefix}feature_extractor": self.feature_extractor,
        }

    def describe(self) -> str:
        """One line with N beside every number (:func:`fid_kid_line`)."""
        return fid_kid_line(self.fid, self.kid_mean, self.kid_std, self.n_fake, self.n_real,
                            self.kid_subsets, self.kid_subset_size)


def fid_kid_line(fid: float, kid: float, kid_std: float, n_fake: int, n_real: int, kid_subsets: int,
                 kid_subset_size: int) -> str:
    """``FID 41.20 (N 64 vs 64), KID 0.0123 ± 0.0010 (N 64 vs 64, 50 subsets of 50)``."""
    sides = f"N {n_fake} vs {n_real}"
    return (f"FID {fid:.2f} ({sides}), KID {kid:.4f} ± {kid_std:.4f} "
            f"({sides}, {kid_subsets} subsets of {kid_subset_size})")


def equal_n(*sizes: int, max_images: int) -> int:
    """The one N every compared set is drawn to: the smallest set, at most ``max_images``."""
    return int(min(*sizes, max_images))


def seeded_subset(images: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` images, chosen without replacement by ``seed`` (sorted: stable order)."""
    if len(images) <= limit:
        return images
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), size=limit, replace=False))
    return images[torch.from_numpy(chosen)]


def small_n_warning(n: int, stage: str) -> str | None:
    """The stderr line when FID's N is below :data:`FID_MIN_N`, else None."""
    if n >= FID_MIN_N:
        return None
    return (f"warning: {stage}: FID at N {n} < {FID_MIN_N} images per side is biased upwards (much of it "
            f"can be small-N bias); compare it only with FIDs at N {n}, and prefer KID")


def fid_kid_from_features(
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    feature_extractor: str,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 2020,
) -> FidKidResult:
    """FID and KID between feature sets (N1, D) and (N2, D): the one FID/KID function of both stages."""
    kid = kid_from_features(real_features, fake_features, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    return FidKidResult(
        fid=fid_from_features(real_features, fake_features),
        kid_mean=kid.mean,
        kid_std=kid.std,
        kid_subset_size=kid.subset_size,
        kid_subsets=kid.subsets,
        n_real=int(real_features.shape[0]),
        n_fake=int(fake_features.shape[0]),
        feature_extractor=feature_extractor,
    )


def compute_fid_kid(
    real_images: torch.Tensor,
    fake_images: torch.Tensor,
    extractor: nn.Module,
    batch_size: int = 64,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 2020,
) -> FidKidResult:
    """FID and KID between uint8 image sets (N, C, H, W) through ``extractor`` (e.g. Inception pool3).

    ``extractor`` is any module from uint8 images to (N, D) features, typically
    :func:`ganseg.metrics.inception.load_feature_extractor`'s.
    """
    real_features = extract_features(real_images, extractor, batch_size=batch_size, label="FID features: real")
    fake_features = extract_features(fake_images, extractor, batch_size=batch_size, label="FID features: generated")
    return fid_kid_from_features(
        real_features, fake_features, str(getattr(extractor, "source", type(extractor).__name__)),
        kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed,
    )
