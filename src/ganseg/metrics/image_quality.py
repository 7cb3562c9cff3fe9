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

The sets are also compared at one *scale*. Generated images have one size (the GAN's patch);
real images have their own, often much larger. Resizing a 1000 px image to Inception's input
would shrink its nuclei several times more than a 128 px patch's, and FID would measure that.
So the real side is cut, not resized: :func:`seeded_crops` takes one seeded, uniformly placed
window of the generated images' size from each chosen real image (reflection-padded where an
image is smaller). A real image of that size is its own window, so same-size sets compare
exactly as whole images did. N stays the number of images: one crop per image, since crops
of one image are not independent samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ganseg.data.patches import PatchPlan, cut
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


def seeded_indices(count: int, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``range(count)``, chosen without replacement by ``seed`` (sorted: stable order)."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def seeded_subset(images: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` of the (N, C, H, W) images, chosen by :func:`seeded_indices`."""
    if len(images) <= limit:
        return images
    return images[torch.from_numpy(seeded_indices(len(images), limit, seed))]


def seeded_crops(images: Sequence[torch.Tensor], limit: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """At most ``limit`` of the (C, H, W) images (any sizes), chosen by :func:`seeded_indices`,
    one seeded window of ``size`` from each -> (n, C, h, w) uint8 (module docstring: equal scale)."""
    chosen = seeded_indices(len(images), limit, seed)
    no_foreground = np.empty((0, 2), dtype=np.int32)  # windows placed uniformly
    plan = PatchPlan(size, 0.0, [tuple(images[i].shape[-2:]) for i in chosen], [no_foreground] * len(chosen))
    rng = np.random.default_rng([seed, limit])
    return torch.stack([cut(images[i].cpu(), *plan.window(k, rng), plan.size, fill=None)
                        for k, i in enumerate(chosen)])


def image_size(images: Sequence[torch.Tensor], name: str) -> tuple[int, int]:
    """The one (height, width) of a set of generated images; ValueError naming the set if they differ."""
    sizes = {tuple(image.shape[-2:]) for image in images}
    if len(sizes) != 1:
        raise ValueError(f"{name}: generated images must share one size, got {sorted(sizes)[:3]}")
    return sizes.pop()


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
