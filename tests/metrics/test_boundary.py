"""HD95: analytic shifts, empty conventions, torchmetrics' Hausdorff (percentile 100) and a
brute-force reference (scipy erosion + all-pairs distances) for the 95th percentile."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torchmetrics.functional.segmentation import hausdorff_distance

from ganseg.data.pairs import IGNORE
from ganseg.metrics.boundary import hausdorff_per_image, hd95_per_image, mask_outline


def _disk(size: int, cy: float, cx: float, radius: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= radius**2).to(torch.uint8)


def _blobs(n: int, size: int, labels: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, size // 6, size // 6, generator=generator)
    smooth = torch.nn.functional.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    return (smooth.clamp(0, 0.999) * labels).long()


def _brute_force_hausdorff(pred: np.ndarray, target: np.ndarray, percentile: float) -> float:
    """Outline by scipy erosion (cross, outside = background), all-pairs distances, numpy percentile."""
    cross = ndimage.generate_binary_structure(2, 1)

    def outline_points(mask: np.ndarray) -> np.ndarray:
        outline = mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)
        return np.argwhere(outline).astype(np.float64)

    p, t = outline_points(pred), outline_points(target)
    distances = np.sqrt(((p[:, None, :] - t[None, :, :]) ** 2).sum(-1))  # (P, T)
    return max(np.percentile(distances.min(axis=1), percentile), np.percentile(distances.min(axis=0), percentile))


def test_outline_of_a_filled_square_is_its_border_ring():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2:6, 2:6] = True
    outline = mask_outline(mask)[0]
    assert outline.sum() == 12  # 4x4 square: 16 pixels, 4 interior
    assert not outline[3:5, 3:5].any()
    full = torch.ones(1, 4, 4, dtype=torch.bool)  # the image border counts as outside
    assert mask_outline(full).sum() == 12


def test_shifted_square_has_hausdorff_equal_to_the_shift():
    pred = torch.zeros(1, 40, 40, dtype=torch.uint8)
    target = torch.zeros(1, 40, 40, dtype=torch.uint8)
    pred[0, 10:25, 10:25] = 1
    target[0, 10:25, 13:28] = 1  # 3 px to the right
    assert hausdorff_per_image(pred, target, 1, percentile=100).item() == pytest.approx(3.0)
    assert hd95_per_image(pred, target, 1).item() <= 3.0


def test_concentric_disks_hausdorff_is_the_radius_difference():
    pred = _disk(64, 32, 32, 20)[None]
    target = _disk(64, 32, 32, 14)[None]
    value = hausdorff_per_image(pred, target, 1, percentile=100).item()
    assert value == pytest.approx(6.0, abs=1.0)  # pixelised circles: within a pixel
    assert hd95_per_image(pred, target, 1).item() == pytest.approx(6.0, abs=1.0)


def test_spacing_scales_distances():
    pred = torch.zeros(1, 30, 30, dtype=torch.uint8)
    target = torch.zeros(1, 30, 30, dtype=torch.uint8)
    pred[0, 5:15, 5:15] = 1
    target[0, 9:19, 5:15] = 1  # 4 rows down
    assert hausdorff_per_image(pred, target, 1, percentile=100, spacing=(0.5, 1.0)).item() == pytest.approx(2.0)


def test_empty_conventions():
    square = torch.zeros(1, 20, 30, dtype=torch.uint8)
    square[0, 5:10, 5:10] = 1
    empty = torch.zeros_like(square)
    assert hd95_per_image(empty, empty, 1).item() == 0.0
    diagonal = math.hypot(19, 29)
    assert hd95_per_image(square, empty, 1).item() == pytest.approx(diagonal)
    assert hd95_per_image(empty, square, 1).item() == pytest.approx(diagonal)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_percentile_100_matches_torchmetrics_hausdorff(num_classes):
    k = max(num_classes, 2)
    target = _blobs(4, 48, k, seed=1)
    pred = _blobs(4, 48, k, seed=2)
    present = [(target == c).flatten(1).any(1) & (pred == c).flatten(1).any(1) for c in range(1, k)]
    assert torch.stack(present).all()  # torchmetrics has no empty convention; keep every class present
    ours = hausdorff_per_image(pred, target, num_classes, percentile=100)
    reference = hausdorff_distance(pred, target, num_classes=k, include_background=False, input_format="index")
    torch.testing.assert_close(ours, reference.double(), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("percentile", [95.0, 50.0])
def test_percentiles_match_a_brute_force_reference(percentile):
    target = _blobs(5, 40, 2, seed=3)
    pred = _blobs(5, 40, 2, seed=4)
    ours = hausdorff_per_image(pred, target, 1, percentile=percentile)[:, 0]
    reference = [
        _brute_force_hausdorff(p.numpy().astype(bool), t.numpy().astype(bool), percentile)
        for p, t in zip(pred, target, strict=True)
    ]
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-12)
    assert (ours > 0).all()


def test_hd95_is_robust_to_one_outlier_pixel_unlike_hausdorff():
    target = _disk(64, 32, 32, 15)[None]
    pred = target.clone()
    pred[0, 2, 2] = 1  # one stray pixel far away
    assert hausdorff_per_image(pred, target, 1, percentile=100).item() > 20
    assert hd95_per_image(pred, target, 1).item() == 0.0


def test_predictions_outside_the_region_of_interest_do_not_move_hd():
    target = torch.zeros(1, 20, 30, dtype=torch.uint8)
    target[0, 4:10, 4:10] = 1
    pred = target.clone()
    pred[0, 4:10, 10] = 1  # one column too wide: Hausdorff 1 inside the region
    target[0, :, 20:] = IGNORE  # region of interest: columns 0..19
    alone = hausdorff_per_image(pred, target, 1, percentile=100).item()
    pred[0, 2:18, 22:28] = 1  # a large false object, outside the region
    assert hausdorff_per_image(pred, target, 1, percentile=100).item() == alone == pytest.approx(1.0)


def test_a_miss_costs_the_diagonal_of_the_region_not_of_the_image():
    target = torch.full((1, 40, 50), IGNORE, dtype=torch.uint8)
    target[0, 10:14, 5:9] = 0  # region: rows 10..13, columns 5..8 -> diagonal hypot(3, 3)
    target[0, 11, 6] = 1
    assert hd95_per_image(torch.zeros(1, 40, 50, dtype=torch.long), target, 1).item() == pytest.approx(math.hypot(3, 3))
    assert hd95_per_image(torch.ones(1, 40, 50, dtype=torch.long), torch.full((1, 40, 50), IGNORE), 1).item() == 0.0


def test_an_object_cut_by_the_region_edge_scores_as_in_the_cropped_image():
    target = _blobs(3, 36, 2, seed=6)
    pred = _blobs(3, 36, 2, seed=7)
    ignored = target.clone()
    ignored[:, 25:, :] = IGNORE
    masked = hd95_per_image(pred, ignored, 1)
    cropped = hd95_per_image(pred[:, :25], target[:, :25], 1)
    torch.testing.assert_close(masked, cropped)
    assert (masked > 0).all()


def test_images_of_differing_sizes_get_their_own_diagonal():
    square = torch.zeros(10, 10, dtype=torch.long)
    wide = torch.zeros(5, 21, dtype=torch.long)
    truths = [square.clone(), wide.clone()]
    truths[0][3, 3] = 1
    truths[1][2, 2] = 1
    values = hd95_per_image([square, wide], truths, 1)[:, 0].tolist()
    assert values == pytest.approx([math.hypot(9, 9), math.hypot(4, 20)])
