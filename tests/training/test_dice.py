"""Hard-prediction Dice per image, against analytic cases and torchmetrics."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.segmentation import dice_score

from ganseg.training.dice import dice_per_image, logits_to_labels


def test_analytic_binary_cases():
    target = torch.zeros(4, 4, 4, dtype=torch.uint8)
    pred = torch.zeros_like(target)
    target[0, :2] = 1  # 8 px
    pred[0, :1] = 1  # 4 px inside: Dice = 2*4 / (4 + 8) = 2/3
    target[1, 0, 0] = 1  # image 1: prediction empty, truth not -> 0
    pred[2, 0, 0] = 1  # image 2: truth empty, prediction not -> 0
    # image 3: both empty -> 1 (nothing to find, nothing found)
    assert dice_per_image(pred, target, 1).tolist() == pytest.approx([2 / 3, 0.0, 0.0, 1.0])


@pytest.mark.filterwarnings("ignore:dice_score metric currently defaults")
def test_binary_matches_torchmetrics_on_non_empty_images():
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(16, 24, 24, generator=generator) > 0.6).to(torch.uint8)
    pred = (torch.rand(16, 24, 24, generator=generator) > 0.5).to(torch.uint8)
    ours = dice_per_image(pred, target, 1)
    reference = dice_score(pred.long(), target.long(), num_classes=2, include_background=False,
                           average="micro", input_format="index", aggregation_level="samplewise")
    assert torch.allclose(ours.float(), reference.float().flatten(), atol=1e-6)


def test_multiclass_matches_torchmetrics_macro_over_present_classes():
    generator = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (8, 20, 20), generator=generator)
    pred = torch.randint(0, 4, (8, 20, 20), generator=generator)
    ours = dice_per_image(pred, target, 4)
    reference = dice_score(pred, target, num_classes=4, include_background=False, average="macro",
                           input_format="index", aggregation_level="samplewise")
    assert torch.allclose(ours.float(), reference.float().flatten(), atol=1e-6)


def test_multiclass_ignores_classes_absent_from_both():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0] = 1
    pred = target.clone()  # class 1 perfect; classes 2, 3 absent everywhere -> not counted
    assert dice_per_image(pred, target, 4).item() == 1.0


def test_logits_to_labels():
    assert logits_to_labels(torch.tensor([[[[-1.0, 2.0]]]])).tolist() == [[[0, 1]]]
    multi = torch.tensor([[[[0.0]], [[3.0]], [[1.0]]]])  # (1, 3, 1, 1)
    assert logits_to_labels(multi).tolist() == [[[1]]]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must both be"):
        dice_per_image(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5), 1)
