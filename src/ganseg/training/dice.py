"""Dice of hard predictions, per image: the validation metric of the train stage.

Dice(P, T) = 2 |P n T| / (|P| + |T|) over the foreground pixels of one image.

- Binary (``num_classes == 1``): labels are 0/1; an image where both P and T are empty scores
  1 (a correct "nothing here"), one where only one is empty scores 0.
- Multi-class: the mean over foreground classes 1..K-1 of the per-class Dice, counting only
  classes present in P or T; an image with no foreground in either scores 1.

The data-set figure is the mean of the per-image values (every image weighs the same,
whatever its foreground area). Checked against torchmetrics in tests/training/test_dice.py.
"""

from __future__ import annotations

import torch


def dice_per_image(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) integer labels -> (B,) float64 Dice (see the module docstring)."""
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must both be (B, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}")
    classes = [1] if num_classes == 1 else list(range(1, num_classes))
    scores, present = [], []
    for label in classes:
        p = (pred == label).flatten(1)  # (B, H*W)
        t = (target == label).flatten(1)
        intersection = (p & t).sum(1, dtype=torch.float64)
        total = p.sum(1, dtype=torch.float64) + t.sum(1, dtype=torch.float64)
        scores.append(torch.where(total > 0, 2 * intersection / total.clamp_min(1), 0.0))
        present.append(total > 0)
    score = torch.stack(scores, 1)  # (B, classes)
    mask = torch.stack(present, 1)
    counted = mask.sum(1)
    mean = (score * mask).sum(1) / counted.clamp_min(1)
    return torch.where(counted > 0, mean, torch.ones_like(mean))


def logits_to_labels(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits -> (B, H, W) labels: logit > 0 when K = 1, argmax otherwise."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).to(torch.uint8)
    return logits.argmax(dim=1).to(torch.uint8)
