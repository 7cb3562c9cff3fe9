"""Inception Score: exp(E_x KL(p(y|x) || p(y))) on the full TF Inception's 1008-way head.

Protocol (torch-fidelity's ``isc``): ``logits_unbiased`` (pool3 @ fc.weight^T, without the fc
bias), images shuffled with ``numpy.random.RandomState(seed).permutation``, split into
``splits`` consecutive chunks; per chunk exp(mean KL(p || mean p)); mean and population std
over chunks; float64.

IS needs the classifier head, which only torch-fidelity's weights file carries (fid-helper's
offline copy stops at pool3). Without that file IS raises :class:`MetricUnavailable` with the
fix; it never substitutes another quantity. Caveat: the score rewards images that look like
confident, diverse ImageNet classes; on microscopy it says little, compare it only between runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ganseg.metrics.inception import extract_features, load_inception_classifier
from ganseg.metrics.unavailable import MetricUnavailable


@dataclass(frozen=True)
class InceptionScoreResult:
    mean: float
    std: float
    n: int
    splits: int
    weights: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def inception_score_from_logits(
    logits: torch.Tensor | np.ndarray, splits: int = 10, shuffle: bool = True, seed: int = 2020
) -> tuple[float, float]:
    """(N, C) class logits -> (mean, std) of the per-split scores."""
    logits = torch.as_tensor(logits).to(torch.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, classes), got {tuple(logits.shape)}")
    n = logits.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} images, got {n}")
    if shuffle:
        logits = logits[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    log_p = logits.log_softmax(dim=1)  # (N, C) log p(y|x)
    scores = []
    for i in range(splits):
        chunk = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = chunk.exp().mean(dim=0).log()  # log p(y) over the chunk
        kl = (chunk.exp() * (chunk - log_marginal)).sum(dim=1)  # (n_chunk,)
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(
    images: torch.Tensor,
    weights_path: Path | str | None = None,
    splits: int = 10,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    allow_download: bool = False,
    seed: int = 2020,
) -> InceptionScoreResult:
    """IS of uint8 images (N, C, H, W), C in {1, 3}.

    Raises :class:`MetricUnavailable` (with the reason and the fix) when the weights are not
    available offline or there are fewer images than ``splits``.
    """
    if images.shape[0] < splits:
        raise MetricUnavailable(
            "inception_score", f"needs at least {splits} images for {splits} splits, got {images.shape[0]}"
        )
    classifier = load_inception_classifier(weights_path, device=device, allow_download=allow_download)
    logits = extract_features(images, classifier, batch_size=batch_size)  # (N, 1008)
    mean, std = inception_score_from_logits(logits, splits=splits, seed=seed)
    return InceptionScoreResult(mean=mean, std=std, n=int(images.shape[0]), splits=splits, weights=classifier.source)
