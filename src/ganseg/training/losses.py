"""Segmentation losses: tensors in, ``(loss, {name: value})`` out, so loops never branch on kind.

``logits``: (B, K, H, W) with K = 1 for binary, K = num_classes otherwise; ``labels``: (B, H, W)
integer class per pixel (0 = background; :data:`~ganseg.data.pairs.IGNORE` = outside the region
of interest or padding: such a pixel adds nothing to any term, and the means are over the other
pixels). Computed in float32 whatever the autocast dtype: the log-sum-exp and the Dice ratios
lose too much in bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganseg.data.pairs import IGNORE

LOSS_KINDS = ("bce", "dice", "bce_dice")


def valid_pixels(labels: torch.Tensor) -> torch.Tensor | None:
    """(B, H, W) bool, True where a pixel counts; None when every pixel does (the common case,
    kept on the plain code path)."""
    valid = labels != IGNORE
    return None if bool(valid.all()) else valid


def cross_entropy_term(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sigmoid BCE for one logit map (binary), softmax cross-entropy for K >= 2; the mean over
    the pixels that count."""
    valid = valid_pixels(labels)
    if logits.shape[1] != 1:
        return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE)
    if valid is None:
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    target = torch.where(valid, labels, 0).float()
    per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="none")
    return (per_pixel * valid).sum() / valid.sum().clamp(min=1)


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice, per image and class, averaged.

    Binary: the foreground probability map against the mask. Multi-class: every class map
    (background included, as the U-Net literature does) against its one-hot target. ``smooth``
    keeps empty masks well-defined: an empty target pulls its probabilities to 0. Pixels that
    do not count are left out of both the probabilities and the target.
    """
    valid = valid_pixels(labels)
    if valid is not None:
        labels = torch.where(valid, labels, 0)
    if logits.shape[1] == 1:
        probs = torch.sigmoid(logits)  # (B, 1, H, W)
        target = labels.float().unsqueeze(1)
    else:
        probs = torch.softmax(logits, dim=1)  # (B, K, H, W)
        target = F.one_hot(labels.long(), logits.shape[1]).permute(0, 3, 1, 2).float()
    if valid is not None:
        probs, target = probs * valid.unsqueeze(1), target * valid.unsqueeze(1)
    intersection = (probs * target).sum(dim=(2, 3))  # (B, K)
    total = probs.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
    dice = (2 * intersection + smooth) / (total + smooth)
    return 1 - dice.mean()


class SegmentationLoss(nn.Module):
    """``bce``, ``dice`` or ``bce_dice`` (their unweighted sum, the default)."""

    def __init__(self, kind: str = "bce_dice", smooth: float = 1.0):
        super().__init__()
        if kind not in LOSS_KINDS:
            raise ValueError(f"loss must be one of {LOSS_KINDS}, got {kind!r}")
        self.kind = kind
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = logits.float()
        terms: dict[str, torch.Tensor] = {}
        if self.kind in ("bce", "bce_dice"):
            terms["loss_ce"] = cross_entropy_term(logits, labels)
        if self.kind in ("dice", "bce_dice"):
            terms["loss_dice"] = soft_dice_loss(logits, labels, self.smooth)
        loss = sum(terms.values())
        stats = {"loss": loss.detach(), **{name: value.detach() for name, value in terms.items()}}
        return loss, stats
