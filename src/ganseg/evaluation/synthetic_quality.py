"""How good are the synthetic images? FID, KID and IS against the real training images.

- FID and KID compare Inception pool3 features of (a seeded subset of) the synthetic images
  with those of the real training images; N of each side is reported, because FID is biased
  upwards at small N and only comparable at equal N. KID is unbiased.
- A reference pair, real training images vs real held-out (val + test) images, gives the
  floor the same protocol reaches between two real samples: a synthetic FID/KID near the
  reference means the generator is as close as a fresh real sample would be.
- IS needs torch-fidelity's classifier weights; without them it is reported as not computed
  with the reason (never replaced by another number).

Mask consistency (do the synthetic masks fit their images?) needs a segmentation model and
is computed by the evaluate stage with the same scores as the test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ganseg.config.evaluate import SyntheticQualityConfig
from ganseg.metrics.fid import fid_from_features
from ganseg.metrics.inception import extract_features, load_feature_extractor
from ganseg.metrics.inception_score import inception_score
from ganseg.metrics.kid import KidResult, kid_from_features
from ganseg.metrics.unavailable import MetricUnavailable

IS_SPLITS = 10


@dataclass
class QualityResult:
    values: dict[str, float | int | None] = field(default_factory=dict)  # numbers for metrics files
    not_computed: dict[str, str] = field(default_factory=dict)  # metric -> reason
    feature_extractor: str | None = None


def seeded_subset(images: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` images, chosen without replacement by ``seed`` (sorted: stable order)."""
    if len(images) <= limit:
        return images
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), size=limit, replace=False))
    return images[torch.from_numpy(chosen)]


def image_quality(
    real_train: torch.Tensor,
    synthetic: torch.Tensor,
    real_held_out: torch.Tensor | None,
    cfg: SyntheticQualityConfig,
    seed: int,
    device: torch.device,
) -> QualityResult:
    """FID/KID (synthetic vs real train, and the real reference) and IS of uint8 (N, C, H, W)."""
    result = QualityResult()
    real = seeded_subset(real_train, cfg.max_images, seed)
    fake = seeded_subset(synthetic, cfg.max_images, seed + 1)
    extractor = load_feature_extractor(cfg.inception_weights, device=device)
    result.feature_extractor = extractor.source
    # One Inception pass per image set; the real features serve both comparisons.
    real_features = extract_features(real, extractor, batch_size=cfg.batch_size)
    fake_features = extract_features(fake, extractor, batch_size=cfg.batch_size)
    kid = _kid(real_features, fake_features, cfg, seed)
    result.values.update(
        n_real=len(real),
        n_synthetic=len(fake),
        fid=round(fid_from_features(real_features, fake_features), 4),
        kid=round(kid.mean, 6),
        kid_std=round(kid.std, 6),
        kid_subset_size=kid.subset_size,
    )
    if real_held_out is not None and len(real_held_out) >= 2:
        reference = seeded_subset(real_held_out, cfg.max_images, seed + 2)
        reference_features = extract_features(reference, extractor, batch_size=cfg.batch_size)
        result.values.update(
            reference_n=len(reference),
            reference_fid=round(fid_from_features(real_features, reference_features), 4),
            reference_kid=round(_kid(real_features, reference_features, cfg, seed).mean, 6),
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
        result.values.update(inception_score=round(score.mean, 4), inception_score_std=round(score.std, 4))
    return result


def _kid(real: torch.Tensor, fake: torch.Tensor, cfg: SyntheticQualityConfig, seed: int) -> KidResult:
    return kid_from_features(real, fake, subsets=cfg.kid_subsets, subset_size=cfg.kid_subset_size, seed=seed)
