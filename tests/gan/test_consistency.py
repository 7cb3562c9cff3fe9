"""Mask consistency: the Dice wiring, checked with segmenters whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganseg.data.pairs import IGNORE
from ganseg.gan.consistency import fitting_pairs, mask_consistency, train_reference_segmenter

from .conftest import toy_pairs

CPU = torch.device("cpu")


class ThresholdSegmenter(nn.Module):
    """Logit +10 where the [0, 1] image is bright, -10 elsewhere (or everywhere when ``blind``)."""

    def __init__(self, blind: bool = False):
        super().__init__()
        self.blind = blind

    def forward(self, x):
        if self.blind:
            return torch.full_like(x, -10.0)
        return torch.where(x > 0.5, 10.0, -10.0)


def test_images_that_match_their_masks_score_one_and_a_blind_segmenter_zero():
    labels = torch.zeros(4, 8, 8, dtype=torch.uint8)
    labels[:, 2:5, 3:6] = 1
    images = (labels * 255).unsqueeze(1)
    result = mask_consistency(ThresholdSegmenter(), images, labels, images[:2], labels[:2], 1, CPU, steps=0)
    assert result.mask_consistency_dice == pytest.approx(1.0)
    assert result.reference_dice == pytest.approx(1.0)
    assert (result.n_synthetic, result.n_reference) == (4, 2)
    shifted = torch.roll(labels, shifts=3, dims=2)  # masks that do not fit their images
    worse = mask_consistency(ThresholdSegmenter(), images, shifted, None, None, 1, CPU, steps=0)
    assert worse.mask_consistency_dice < 0.5 and worse.reference_dice is None
    blind = mask_consistency(ThresholdSegmenter(blind=True), images, labels, None, None, 1, CPU, steps=0)
    assert blind.mask_consistency_dice == 0.0


def test_reference_segmenter_learns_the_toy_nuclei():
    images, labels = toy_pairs(12)
    model = train_reference_segmenter(images, labels, 1, steps=40, base_width=8, batch_size=4, lr=3e-3,
                                      seed=0, device=CPU, patch_size=32)
    result = mask_consistency(model, images, labels, None, None, 1, CPU, steps=40)
    assert result.mask_consistency_dice > 0.5  # on its own training pairs after 40 steps
    assert not model.training


def test_ignored_pixels_count_in_no_dice():
    labels = torch.zeros(2, 8, 8, dtype=torch.uint8)
    labels[:, 2:5, 3:6] = 1
    images = (labels * 255).unsqueeze(1)
    ignored = labels.clone()
    ignored[:, :, 6:] = IGNORE
    images[:, 0, :, 6:] = 255  # the segmenter sees foreground where the truth is ignored
    result = mask_consistency(ThresholdSegmenter(), images, ignored, None, None, 1, CPU, steps=0)
    assert result.mask_consistency_dice == pytest.approx(1.0)


def test_per_pair_scores_behind_the_mean_and_the_fraction_of_the_reference_that_keeps_a_pair():
    labels = torch.zeros(3, 8, 8, dtype=torch.uint8)
    labels[:, 2:6, 2:6] = 1
    images = (labels * 255).unsqueeze(1)
    labels[1] = torch.roll(labels[1], shifts=2, dims=1)  # half of its object off the image's: Dice 0.5
    labels[2] = 0
    labels[2, 0, 0] = 1  # an object where the image shows nothing: Dice 0
    result = mask_consistency(ThresholdSegmenter(), images, labels, None, None, 1, CPU, steps=0)
    assert result.pair_dice.tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert result.mask_consistency_dice == pytest.approx(0.5)
    keep, threshold = fitting_pairs(result.pair_dice, reference_dice=0.8, min_relative_dice=0.5)
    assert threshold == pytest.approx(0.4) and keep.tolist() == [True, True, False]
    keep, _ = fitting_pairs(result.pair_dice, reference_dice=0.8, min_relative_dice=0.0)
    assert keep.all()
