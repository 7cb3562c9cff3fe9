"""Hard labels from segmenter logits, as validation and the overlay grids score and draw them.

The Dice itself is :func:`ganseg.metrics.segmentation.dice_per_image`, the one definition the
train stage's validation and the evaluate stage share (docs/metrics.md).
"""

from __future__ import annotations

import torch


def logits_to_labels(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits -> (B, H, W) labels: logit > 0 when K = 1, argmax otherwise."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).to(torch.uint8)
    return logits.argmax(dim=1).to(torch.uint8)
