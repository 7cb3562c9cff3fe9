"""How good are the synthetic images? FID, KID and IS against the real training images.

- FID and KID compare Inception pool3 features of a seeded subset of the synthetic images
  with those of the real training images, at one scale: real images of any size give one
  seeded crop of the synthetic images' size each, never a resized whole image
  (:func:`ganseg.metrics.image_quality.seeded_crops`).
- A reference pair, real training images vs real held-out (val + test) images, gives the
  floor the same protocol reaches between two real samples: a synthetic FID/KID near the
  reference means the generator is as close as a fresh real sample would be.
- Both rows are computed at one N (FID is biased upwards at small N and only comparable at
  equal N): the synthetic, held-out and training sides are each drawn to
  N = min(synthetic, real held-out, real train, ``max_images``), and the same N training
  images serve both rows (:mod:`ganseg.metrics.image_quality` holds the rule and the FID/KID).
- IS needs torch-fidelity's classifier weights; without them it is reported as not computed
  with the reason (never replaced by another number). It is computed on the same N synthetic
  images in ``IS_SPLITS`` splits; a split's score cannot exceed its number of images, so IS is
  at most N / splits (6.4 at 64 images).

Mask consistency (do the synthetic masks fit their images?) needs a segmentation model and
is computed by the evaluate stage with the same scores as the test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ganseg.config.evaluate import SyntheticQualityConfig
from ganseg.metrics.image_quality import (
    FidKidResult,
    equal_n,
    fid_kid_from_features,
    image_size,
    seeded_crops,
    seeded_subset,
)
from ganseg.metrics.inception import extract_features, load_feature_extractor
from ganseg.metrics.inception_score import inception_score
from ganseg.metrics.unavailable import MetricUnavailable

IS_SPLITS = 10


@dataclass
class QualityResult:
    values: dict[str, float | int | None] = field(default_factory=dict)  # numbers for metrics files
    not_computed: dict[str, str] = field(default_factory=dict)  # metric -> reason
    feature_extractor: str | None = None
    n: int | None = None  # images per side of both FID/KID rows and of IS


def image_quality(
    real_train: Sequence[torch.Tensor],
    synthetic: Sequence[torch.Tensor],
    real_held_out: Sequence[torch.Tensor] | None,
    cfg: SyntheticQualityConfig,
    seed: int,
    device: torch.device,
) -> QualityResult:
    """FID/KID (synthetic vs real train, and the real reference) and IS of uint8 (C, H, W)
    images: the real ones of any sizes, cropped to the synthetic ones' size; all at one N
    (module docstring)."""
    result = QualityResult()
    has_reference = real_held_out is not None and len(real_held_out) >= 2
    sizes = (len(real_train), len(synthetic)) + ((len(real_held_out),) if has_reference else ())
    n = result.n = equal_n(*sizes, max_images=cfg.max_images)
    fake_size = image_size(synthetic, "synthetic images")
    real = seeded_crops(real_train, n, fake_size, seed)
    fake = seeded_subset(torch.stack(list(synthetic)), n, seed + 1)
    extractor = load_feature_extractor(cfg.inception_weights, device=device)
    result.feature_extractor = extractor.source
    # One Inception pass per image set; the real features serve both comparisons.
    real_features = extract_features(real, extractor, batch_size=cfg.batch_size, label="FID features: real")
    fake_features = extract_features(fake, extractor, batch_size=cfg.batch_size, label="FID features: synthetic")
    synthetic_row = _fid_kid(real_features, fake_features, extractor.source, cfg, seed)
    result.values.update(
        n_real=len(real),
        n_synthetic=len(fake),
        fid=round(synthetic_row.fid, 4),
        kid=round(synthetic_row.kid_mean, 6),
        kid_std=round(synthetic_row.kid_std, 6),
        kid_subset_size=synthetic_row.kid_subset_size,
        kid_subsets=synthetic_row.kid_subsets,
    )
    if has_reference:
        reference = seeded_crops(real_held_out, n, fake_size, seed + 2)
        reference_features = extract_features(reference, extractor, batch_size=cfg.batch_size,
                                              label="FID features: real held-out")
        reference_row = _fid_kid(real_features, reference_features, extractor.source, cfg, seed)
        result.values.update(
            reference_n=len(reference),
            reference_fid=round(reference_row.fid, 4),
            reference_kid=round(reference_row.kid_mean, 6),
            reference_kid_std=round(reference_row.kid_std, 6),
        )
    else:
        result.not_computed["reference"] = "fewer than 2 real held-out images"
    if not cfg.inception_score:
        result.values["inception_score"] = None
        result.not_computed["inception_score"] = "switched off (evaluate.synthetic_quality.inception_score: false)"
        return result
    try:
        score = inception_score(fake, cfg.inception_weights, splits=IS_SPLITS, batch_size=cfg.batch_size, device=device)
    except MetricUnavailable as exc:
        result.values["inception_score"] = None
        result.not_computed["inception_score"] = exc.reason
    else:
        result.values.update(inception_score=round(score.mean, 4), inception_score_std=round(score.std, 4),
                             inception_score_n=score.n, inception_score_splits=score.splits)
    return result


def _fid_kid(real: torch.Tensor, fake: torch.Tensor, source: str, cfg: SyntheticQualityConfig, seed: int) -> FidKidResult:
    return fid_kid_from_features(real, fake, source, kid_subsets=cfg.kid_subsets,
                                 kid_subset_size=cfg.kid_subset_size, seed=seed)
