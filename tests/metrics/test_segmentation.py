"""Dice family: analytic cases, the not-counted rule, and torchmetrics on random label maps."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.classification import (
    binary_precision,
    binary_recall,
    multiclass_jaccard_index,
    multiclass_precision,
    multiclass_recall,
)
from torchmetrics.functional.segmentation import dice_score, mean_iou

from ganseg.data.pairs import IGNORE
from ganseg.metrics.segmentation import (
    confusion_counts,
    dice_per_class,
    dice_per_image,
    image_mean,
    iou_per_class,
    precision_per_class,
    recall_per_class,
    segmentation_report,
)

PER_CLASS = {
    "dice": dice_per_class,
    "iou": iou_per_class,
    "precision": precision_per_class,
    "recall": recall_per_class,
}


def _square(size: int, top: int, left: int, side: int) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.uint8)
    mask[top : top + side, left : left + side] = 1
    return mask


def _random_label_maps(n: int, size: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Blobby random label maps (smooth noise, quantised) so every class appears in each image."""
    generator = torch.Generator().manual_seed(seed)
    labels = max(num_classes, 2)

    def draw() -> torch.Tensor:
        noise = torch.rand(n, 1, size // 4, size // 4, generator=generator)
        smooth = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        return (smooth * labels).long().clamp(max=labels - 1)

    target = draw()
    pred = torch.where(torch.rand(n, size, size, generator=generator) < 0.7, target, draw())
    return pred, target


def test_half_overlapping_squares_give_the_textbook_values():
    # pred and target: 10x10 squares, shifted by 5 columns -> TP 50, FP 50, FN 50
    pred = _square(32, 4, 4, 10)[None]
    target = _square(32, 4, 9, 10)[None]
    counts = confusion_counts(pred, target, num_classes=1)
    assert (counts.tp.item(), counts.fp.item(), counts.fn.item()) == (50, 50, 50)
    assert dice_per_image(pred, target, 1).item() == pytest.approx(0.5)
    assert iou_per_class(pred, target, 1).item() == pytest.approx(1 / 3)
    assert precision_per_class(pred, target, 1).item() == pytest.approx(0.5)
    assert recall_per_class(pred, target, 1).item() == pytest.approx(0.5)


def test_prediction_inside_target_has_full_precision_partial_recall():
    pred = _square(32, 10, 10, 4)[None]  # 16 px inside the 64 px target
    target = _square(32, 8, 8, 8)[None]
    assert precision_per_class(pred, target, 1).item() == 1.0
    assert recall_per_class(pred, target, 1).item() == pytest.approx(16 / 64)
    assert dice_per_image(pred, target, 1).item() == pytest.approx(2 * 16 / (16 + 64))


@pytest.mark.parametrize(
    ("pred_empty", "target_empty", "expected"),
    [
        (True, True, {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}),  # not counted -> image 1
        (True, False, {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}),
        (False, True, {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}),
    ],
)
def test_empty_mask_conventions(pred_empty, target_empty, expected):
    square = _square(16, 2, 2, 5)[None]
    empty = torch.zeros_like(square)
    pred = empty if pred_empty else square
    target = empty if target_empty else square
    for name, fn in PER_CLASS.items():
        per_class = fn(pred, target, 1)
        assert per_class.isnan().item() == (pred_empty and target_empty), name
        assert image_mean(per_class).item() == expected[name], name


def test_a_class_in_neither_map_is_not_counted_in_that_image():
    # the 2x2 case: class 1 half-found, class 2 in neither map
    target = torch.tensor([[[1, 1], [0, 0]]])
    pred = torch.tensor([[[1, 0], [0, 0]]])
    per_class = dice_per_class(pred, target, 3)
    assert per_class[0, 0].item() == pytest.approx(2 / 3) and per_class[0, 1].isnan()
    assert dice_per_image(pred, target, 3).item() == pytest.approx(2 / 3)  # not (2/3 + 1) / 2
    assert segmentation_report(pred, target, 3, boundary=False).summary()["eval/dice"] == pytest.approx(2 / 3)


def test_class_means_skip_the_images_where_the_class_is_not_counted():
    target = torch.zeros(3, 4, 4, dtype=torch.long)
    pred = torch.zeros_like(target)
    target[:, 0] = 1
    pred[:, 0] = 1  # class 1 perfect everywhere
    target[0, 3, :2] = 2
    pred[0, 3, :1] = 2  # image 0: class 2 Dice 2/3; images 1, 2: class 2 in neither map
    report = segmentation_report(pred, target, 3, boundary=False)
    summary = report.summary()
    assert summary["eval/dice_class2"] == pytest.approx(2 / 3)  # a hand computation: image 0 only
    assert summary["eval/dice"] == pytest.approx(((1 + 2 / 3) / 2 + 1 + 1) / 3)
    assert summary["eval/dice_global"] == pytest.approx((1 + 2 / 3) / 2)
    assert report.table()["dice_class2"].isna().tolist() == [False, True, True]


def test_perfect_prediction_scores_one():
    _, target = _random_label_maps(3, 32, 4, seed=0)
    for name, fn in PER_CLASS.items():
        assert torch.equal(fn(target, target, 4), torch.ones(3, 3, dtype=torch.float64)), name


@pytest.mark.parametrize("num_classes", [1, 3, 5])
def test_per_image_values_match_torchmetrics_on_random_label_maps(num_classes):
    pred, target = _random_label_maps(6, 40, num_classes, seed=num_classes)
    k = max(num_classes, 2)
    ours = {name: fn(pred, target, num_classes) for name, fn in PER_CLASS.items()}
    assert ours["dice"].shape == (6, k - 1)

    reference_dice = dice_score(
        pred, target, num_classes=k, include_background=False, average="none", input_format="index"
    )
    reference_iou = mean_iou(pred, target, num_classes=k, include_background=False, per_class=True, input_format="index")
    if num_classes == 1:
        reference_precision = binary_precision(pred, target, multidim_average="samplewise")[:, None]
        reference_recall = binary_recall(pred, target, multidim_average="samplewise")[:, None]
    else:
        kwargs = {"num_classes": k, "average": None, "multidim_average": "samplewise"}
        reference_precision = multiclass_precision(pred, target, **kwargs)[:, 1:]
        reference_recall = multiclass_recall(pred, target, **kwargs)[:, 1:]
    # every class occurs in every image here, so no empty-mask convention is involved
    assert (target.flatten(1)[:, None, :] == torch.arange(1, k)[None, :, None]).any(-1).all()
    torch.testing.assert_close(ours["dice"], reference_dice.double(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours["iou"], reference_iou.double(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours["precision"], reference_precision.double(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours["recall"], reference_recall.double(), rtol=1e-6, atol=1e-7)


def test_global_values_match_torchmetrics_pooled_over_pixels():
    pred, target = _random_label_maps(5, 32, 3, seed=7)
    report = segmentation_report(pred, target, num_classes=3, boundary=False)
    kwargs = {"num_classes": 3, "average": None, "multidim_average": "global"}
    torch.testing.assert_close(report.global_values["precision"], multiclass_precision(pred, target, **kwargs)[1:].double())
    torch.testing.assert_close(report.global_values["recall"], multiclass_recall(pred, target, **kwargs)[1:].double())
    torch.testing.assert_close(
        report.global_values["iou"], multiclass_jaccard_index(pred, target, num_classes=3, average=None)[1:].double()
    )
    reference_dice = dice_score(
        pred, target, 3, include_background=False, average="none", input_format="index", aggregation_level="global"
    )
    torch.testing.assert_close(report.global_values["dice"], reference_dice.reshape(-1).double())


def test_mean_and_global_differ_when_object_sizes_differ():
    # image 0: big object found perfectly; image 1: small object missed entirely
    pred = torch.stack([_square(32, 0, 0, 20), torch.zeros(32, 32, dtype=torch.uint8)])
    target = torch.stack([_square(32, 0, 0, 20), _square(32, 10, 10, 2)])
    report = segmentation_report(pred, target, 1, boundary=False)
    assert report.mean()["dice"].item() == pytest.approx(0.5)  # (1 + 0) / 2
    assert report.global_values["dice"].item() == pytest.approx(2 * 400 / (400 + 404))


def test_empty_images_count_as_agreement_in_the_mean():
    pred = torch.stack([_square(16, 0, 0, 4), torch.zeros(16, 16, dtype=torch.uint8)])
    target = torch.stack([_square(16, 0, 0, 4), torch.zeros(16, 16, dtype=torch.uint8)])
    assert dice_per_image(pred, target, 1).tolist() == [1.0, 1.0]


def test_probabilities_and_logits_are_reduced_to_label_maps():
    pred, target = _random_label_maps(4, 24, 1, seed=3)
    probabilities = torch.where(pred.bool(), 0.9, 0.2).float()
    torch.testing.assert_close(dice_per_image(probabilities, target, 1), dice_per_image(pred, target, 1))
    torch.testing.assert_close(dice_per_image(probabilities[:, None], target, 1), dice_per_image(pred, target, 1))
    pred3, target3 = _random_label_maps(4, 24, 3, seed=4)
    logits = torch.nn.functional.one_hot(pred3, 3).permute(0, 3, 1, 2).float() * 5 - 2
    torch.testing.assert_close(iou_per_class(logits, target3, 3), iou_per_class(pred3, target3, 3))


def test_binary_logits_are_rejected_with_the_fix():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="sigmoid"):
        dice_per_image(torch.randn(1, 8, 8) * 5, target, 1)


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (torch.zeros(2, 8, 8, dtype=torch.long), torch.zeros(2, 8, 9, dtype=torch.long), "differ in shape"),
        (torch.zeros(1, 8, 8, dtype=torch.long), torch.full((1, 8, 8), 2, dtype=torch.uint8), "outside 0..1"),
        (torch.full((1, 8, 8), 255), torch.zeros(1, 8, 8, dtype=torch.long), "pred has labels outside 0..1"),
        (torch.full((1, 8, 8), 3), torch.zeros(1, 8, 8, dtype=torch.long), "pred has labels outside 0..2"),
    ],
)
def test_invalid_label_maps_are_named(pred, target, message):
    num_classes = 3 if "0..2" in message else 1  # the target may hold IGNORE (255), the prediction not
    with pytest.raises(ValueError, match=message):
        dice_per_image(pred, target, num_classes)


def test_report_summary_and_table():
    pred, target = _random_label_maps(3, 32, 3, seed=9)
    report = segmentation_report(pred, target, num_classes=3)
    summary = report.summary()
    assert report.classes == (1, 2)
    assert summary["eval/dice"] == pytest.approx(float(dice_per_image(pred, target, 3).mean()))
    assert {"eval/dice_global", "eval/dice_class1", "eval/dice_class2", "eval/hd95", "eval/hd95_class2"} <= set(summary)
    assert "eval/hd95_global" not in summary  # distances have no pixel-pooled form
    table = report.table(ids=["a", "b", "c"])
    assert list(table["pair_id"]) == ["a", "b", "c"]
    assert table["dice_class2"].tolist() == pytest.approx(report.per_image["dice"][:, 1].tolist())
    binary = segmentation_report(pred.clamp(max=1), target.clamp(max=1), num_classes=1, boundary=False)
    assert list(binary.table().columns) == ["dice", "iou", "precision", "recall"]
    assert "eval/dice_class1" not in binary.summary()


# -- region of interest (IGNORE) and images of differing sizes ----------------------------------
def _roi_case(outside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """4x6 image, region of interest = the left 4 columns; ``outside`` (4, 2) = the prediction
    in the ignored columns. Inside: truth a 2x2 square, prediction 2x3 over it -> TP 4, FP 2, FN 0."""
    target = torch.full((4, 6), IGNORE, dtype=torch.uint8)
    target[:, :4] = 0
    target[:2, :2] = 1
    pred = torch.zeros(4, 6, dtype=torch.uint8)
    pred[:2, :3] = 1
    pred[:, 4:] = outside
    return pred[None], target[None]


@pytest.mark.parametrize("outside", ["background", "foreground", "random"])
def test_predictions_outside_the_region_of_interest_change_no_metric(outside):
    fill = {"background": torch.zeros(4, 2), "foreground": torch.ones(4, 2),
            "random": torch.randint(0, 2, (4, 2), generator=torch.Generator().manual_seed(3))}[outside]
    pred, target = _roi_case(fill.to(torch.uint8))
    counts = confusion_counts(pred, target, 1)
    assert (counts.tp.item(), counts.fp.item(), counts.fn.item()) == (4, 2, 0)
    summary = segmentation_report(pred, target, 1, boundary=False).summary()
    assert summary["eval/dice"] == pytest.approx(8 / 10)
    assert summary["eval/iou"] == pytest.approx(4 / 6)
    assert summary["eval/precision"] == pytest.approx(4 / 6)
    assert summary["eval/recall"] == 1.0
    assert dice_per_image(pred, target, 1).tolist() == pytest.approx([0.8])


def test_an_ignored_region_scores_as_if_the_image_were_cropped_to_it():
    pred, target = _random_label_maps(3, 24, 3, seed=11)
    ignored = target.clone()
    ignored[:, :, 17:] = IGNORE  # region of interest: columns 0..16
    pred_flipped = pred.clone()
    pred_flipped[:, :, 17:] = (pred[:, :, 17:] + 1) % 3  # every prediction outside it changed
    masked = segmentation_report(pred_flipped, ignored, 3).scores()
    cropped = segmentation_report(pred[:, :, :17], target[:, :, :17], 3).scores()
    for name in cropped:
        torch.testing.assert_close(masked[name], cropped[name], equal_nan=True, msg=name)


def test_images_of_differing_sizes_score_as_each_image_alone():
    sizes = [(8, 12), (16, 5), (7, 7), (20, 9)]
    pairs = [_random_label_maps(1, 32, 3, seed=s) for s in range(len(sizes))]
    preds = [p[0, :h, :w] for (p, _), (h, w) in zip(pairs, sizes)]
    targets = [t[0, :h, :w].to(torch.uint8) for (_, t), (h, w) in zip(pairs, sizes)]
    targets[1][:3] = IGNORE  # one image with an ignored band
    together = segmentation_report(preds, targets, 3)
    for index, (pred, target) in enumerate(zip(preds, targets)):
        alone = segmentation_report(pred[None], target[None], 3)
        for name, values in alone.per_image.items():
            torch.testing.assert_close(together.per_image[name][index], values[0], equal_nan=True, msg=name)
    pooled = confusion_counts(preds, targets, 3).pooled()
    assert pooled.tp.sum() == sum(int(confusion_counts(p[None], t[None], 3).tp.sum()) for p, t in zip(preds, targets))


def test_dice_per_image_takes_lists_and_stacked_tensors_alike():
    pred, target = _random_label_maps(4, 16, 1, seed=5)
    stacked = dice_per_image(pred, target, 1)
    listed = dice_per_image(list(pred), list(target), 1)
    assert listed.dtype == torch.float64 and listed.shape == (4,)
    torch.testing.assert_close(listed, stacked)
    probabilities = [p.double()[None] * 0.8 + 0.1 for p in pred]  # per image (1, H, W) scores
    torch.testing.assert_close(dice_per_image(probabilities, list(target), 1), stacked)


def test_ignored_pixels_match_torchmetrics_ignore_index():
    pred, target = _random_label_maps(4, 32, 3, seed=9)
    target = target.clone()
    target[:, 20:, :] = IGNORE
    target[1, :, :6] = IGNORE
    kwargs = {"num_classes": 3, "average": None, "multidim_average": "samplewise", "ignore_index": IGNORE}
    ours = {name: fn(pred, target, 3) for name, fn in PER_CLASS.items()}
    torch.testing.assert_close(ours["precision"], multiclass_precision(pred, target, **kwargs)[:, 1:].double())
    torch.testing.assert_close(ours["recall"], multiclass_recall(pred, target, **kwargs)[:, 1:].double())


def test_mismatched_sizes_in_a_list_name_the_image():
    with pytest.raises(ValueError, match="image 1: pred .* differ in shape"):
        dice_per_image([torch.zeros(4, 4, dtype=torch.long)] * 2,
                       [torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long)], 1)
