"""evaluate_dice on models whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganseg.training.losses import SegmentationLoss
from ganseg.training.validation import evaluate_dice, overlay_grid, predict_logits


class Threshold(nn.Module):
    """Logit = image - 0.5: foreground exactly where the image is bright."""

    def forward(self, images):
        return images - 0.5


def _pairs():
    masks = torch.zeros(5, 16, 16, dtype=torch.uint8)
    masks[:, 4:10, 3:12] = 1
    return (masks * 255).unsqueeze(1), masks


def test_perfect_model_scores_one_and_restores_train_mode():
    images, masks = _pairs()
    model = Threshold().train()
    result = evaluate_dice(model, images, masks, num_classes=1, device=torch.device("cpu"), batch_size=2,
                           criterion=SegmentationLoss("bce"))
    assert result["val/dice"] == 1.0 and result["val/loss"] < 0.48
    assert model.training


def test_half_wrong_images_average_per_image():
    images, masks = _pairs()
    images[:2] = 0  # two images predicted empty: Dice 0 each
    result = evaluate_dice(Threshold(), images, masks, num_classes=1, device=torch.device("cpu"), prefix="x/")
    assert result == {"x/dice": pytest.approx(3 / 5)}


def test_predict_logits_batches_give_the_same_answer():
    images, _ = _pairs()
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, 3, padding=1)
    assert torch.allclose(predict_logits(conv, images, device=torch.device("cpu"), batch_size=2),
                          predict_logits(conv, images, device=torch.device("cpu"), batch_size=5))


def test_overlay_grid_layout():
    images, masks = _pairs()
    grid = overlay_grid(images, masks, masks, columns=2)
    # 5 tiles -> 3 rows x 2 columns; a tile is image | 2 px gap | overlay; 4 px between tiles.
    assert grid.shape == (3 * 16 + 2 * 4, 2 * (16 + 2 + 16) + 4, 3)
