"""Segmentation losses against their textbook definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganseg.training.losses import SegmentationLoss, soft_dice_loss


def test_bce_is_torch_bce_on_the_single_logit_map():
    logits = torch.randn(3, 1, 8, 8)
    labels = torch.randint(0, 2, (3, 8, 8))
    loss, stats = SegmentationLoss("bce")(logits, labels)
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(logits[:, 0], labels.float()))
    assert set(stats) == {"loss", "loss_ce"}


def test_multiclass_uses_softmax_cross_entropy():
    logits = torch.randn(2, 4, 8, 8)
    labels = torch.randint(0, 4, (2, 8, 8))
    loss, _ = SegmentationLoss("bce")(logits, labels)
    assert torch.allclose(loss, F.cross_entropy(logits, labels))


def test_soft_dice_by_hand():
    # One image, probabilities 0.5 everywhere on 4 pixels, 2 of them foreground:
    # intersection 1, sum of probs 2, sum of target 2 -> Dice (2*1 + 1) / (4 + 1) = 0.6.
    logits = torch.zeros(1, 1, 2, 2)
    labels = torch.tensor([[[1, 1], [0, 0]]])
    assert soft_dice_loss(logits, labels, smooth=1.0).item() == pytest.approx(0.4)


def test_confident_correct_prediction_has_near_zero_dice_loss():
    labels = torch.randint(0, 3, (2, 16, 16))
    logits = F.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 40
    assert soft_dice_loss(logits, labels).item() < 1e-3
    wrong = F.one_hot((labels + 1) % 3, 3).permute(0, 3, 1, 2).float() * 40
    assert soft_dice_loss(wrong, labels).item() > 0.9


def test_bce_dice_is_the_sum_and_backpropagates():
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    labels = torch.randint(0, 2, (2, 8, 8))
    loss, stats = SegmentationLoss("bce_dice")(logits, labels)
    assert torch.allclose(loss, stats["loss_ce"] + stats["loss_dice"])
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert not stats["loss"].requires_grad


def test_half_precision_logits_are_scored_in_float32():
    logits = torch.randn(2, 1, 8, 8)
    labels = torch.randint(0, 2, (2, 8, 8))
    full, _ = SegmentationLoss()(logits, labels)
    half, _ = SegmentationLoss()(logits.bfloat16(), labels)
    assert half.dtype == torch.float32 and half.item() == pytest.approx(full.item(), abs=0.02)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="loss must be one of"):
        SegmentationLoss("focal")


@pytest.mark.parametrize("kind", ["bce", "dice", "bce_dice"])
@pytest.mark.parametrize("classes", [1, 3])
def test_pixels_outside_the_region_of_interest_change_no_loss(kind, classes):
    """A batch whose right half is IGNORE scores as its left half alone, whatever the logits
    and labels there."""
    from ganseg.data.pairs import IGNORE

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, classes, 8, 8, generator=generator)
    labels = torch.randint(0, max(classes, 2), (2, 8, 8), generator=generator)
    ignored = labels.clone()
    ignored[..., 4:] = IGNORE
    criterion = SegmentationLoss(kind)
    left_only, _ = criterion(logits[..., :4], labels[..., :4])
    masked, _ = criterion(logits, ignored)
    scrambled = logits.clone()
    scrambled[..., 4:] = torch.randn(2, classes, 8, 4, generator=generator) * 10
    masked_scrambled, _ = criterion(scrambled, ignored)
    assert torch.allclose(masked, left_only, atol=1e-6)
    assert torch.allclose(masked_scrambled, left_only, atol=1e-6)
