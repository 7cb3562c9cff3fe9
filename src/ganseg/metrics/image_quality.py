"""FID and KID of a generated image set against a real one, from one feature pass per set.

FID is biased upwards at small N (its expectation falls roughly like 1/N), so a value is only
comparable with values at the same N: the result carries ``n_real`` and ``n_fake`` and
:meth:`FidKidResult.as_dict` writes them beside the FID. KID is unbiased and is the number to
trust when N is a few hundred or less.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganseg.metrics.fid import fid_from_features
from ganseg.metrics.inception import extract_features
from ganseg.metrics.kid import kid_from_features


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
    real_features = extract_features(real_images, extractor, batch_size=batch_size)
    fake_features = extract_features(fake_images, extractor, batch_size=batch_size)
    kid = kid_from_features(real_features, fake_features, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    return FidKidResult(
        fid=fid_from_features(real_features, fake_features),
        kid_mean=kid.mean,
        kid_std=kid.std,
        kid_subset_size=kid.subset_size,
        kid_subsets=kid.subsets,
        n_real=int(real_images.shape[0]),
        n_fake=int(fake_images.shape[0]),
        feature_extractor=str(getattr(extractor, "source", type(extractor).__name__)),
    )
