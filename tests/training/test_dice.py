"""Validation's Dice: the metrics library's per-image Dice, against torchmetrics and evaluate's scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.segmentation import dice_score

from ganseg.evaluation.scores import score_images
from ganseg.metrics.segmentation import dice_per_image
from ganseg.training.dice import logits_to_labels
from ganseg.training.validation import evaluate_dice


class _FixedLogits(torch.nn.Module):
    """Returns stored logits for the images it is given (matched by their first pixel = index)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # so that the model has a device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        index = (images[:, 0, 0, 0] * 255).round().long()
        return self.logits[index]


def test_analytic_binary_cases():
    target = torch.zeros(4, 4, 4, dtype=torch.uint8)
    pred = torch.zeros_like(target)
    target[0, :2] = 1  # 8 px
    pred[0, :1] = 1  # 4 px inside: Dice = 2*4 / (4 + 8) = 2/3
    target[1, 0, 0] = 1  # image 1: prediction empty, truth not -> 0
    pred[2, 0, 0] = 1  # image 2: truth empty, prediction not -> 0
    # image 3: both empty -> 1 (nothing to find, nothing found)
    assert dice_per_image(pred, target, 1).tolist() == pytest.approx([2 / 3, 0.0, 0.0, 1.0])


def test_issue_example_half_found_class_and_absent_class_give_two_thirds_on_both_paths():
    # 2x2, three labels: class 1 half-found (TP 1, FN 1), class 2 in neither map -> not counted
    truth = torch.tensor([[[1, 1], [0, 0]]], dtype=torch.uint8)
    pred = torch.tensor([[[1, 0], [0, 0]]], dtype=torch.uint8)
    assert dice_per_image(pred, truth, 3).item() == pytest.approx(2 / 3)  # was 2/3 here, 5/6 in evaluate
    scores = score_images(pred, truth, 3)
    assert scores["dice"].item() == pytest.approx(2 / 3)
    assert scores["dice_class1"].item() == pytest.approx(2 / 3) and np.isnan(scores["dice_class2"].item())
    logits = torch.nn.functional.one_hot(pred.long(), 3).permute(0, 3, 1, 2).float() * 4
    images = torch.zeros(1, 1, 2, 2, dtype=torch.uint8)
    validation = evaluate_dice(_FixedLogits(logits), images, truth, num_classes=3, device=torch.device("cpu"))
    assert validation["val/dice"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("num_classes", [1, 3, 4])
def test_validation_dice_equals_the_mean_of_evaluate_scores_on_random_label_maps(num_classes):
    generator = torch.Generator().manual_seed(num_classes)
    n, k = 12, max(num_classes, 2)
    truth = torch.randint(0, k, (n, 8, 8), generator=generator, dtype=torch.uint8)
    truth[: n // 3] = torch.where(truth[: n // 3] == k - 1, 0, truth[: n // 3])  # some classes absent
    truth[0] = 0  # one image without any foreground
    logits = torch.randn(n, 1 if num_classes == 1 else k, 8, 8, generator=generator)
    logits[0] = -5.0 if num_classes == 1 else logits[0]  # image 0 predicted empty too (binary)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    validation = evaluate_dice(_FixedLogits(logits), images, truth, num_classes=num_classes,
                               device=torch.device("cpu"), batch_size=5)
    evaluated = score_images(logits_to_labels(logits), truth, num_classes)
    assert validation["val/dice"] == pytest.approx(float(evaluated["dice"].mean()), abs=1e-12)
    if num_classes == 1:
        assert evaluated["dice"][0] == 1.0  # empty on empty


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


def test_multiclass_skips_classes_absent_from_both_like_a_hand_loop():
    generator = torch.Generator().manual_seed(2)
    target = torch.randint(0, 3, (10, 6, 6), generator=generator)
    pred = torch.randint(0, 3, (10, 6, 6), generator=generator)
    target[:5][target[:5] == 3 - 1] = 0  # class 2 missing from the truth of half the images ...
    pred[:3][pred[:3] == 3 - 1] = 0  # ... and from the prediction of three of them
    expected = []
    for p, t in zip(pred, target):
        values = []
        for cls in (1, 2):
            tp = int(((p == cls) & (t == cls)).sum())
            size = int((p == cls).sum() + (t == cls).sum())
            if size:
                values.append(2 * tp / size)
        expected.append(sum(values) / len(values) if values else 1.0)
    assert dice_per_image(pred, target, 4 - 1).tolist() == pytest.approx(expected)


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
    with pytest.raises(ValueError, match="differ in shape"):
        dice_per_image(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 5, dtype=torch.long), 1)
