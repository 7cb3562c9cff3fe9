"""Training patches: where windows fall, what padding holds, and that they repeat from a seed."""

import numpy as np
import torch

from ganseg.data.pairs import IGNORE
from ganseg.data.patches import PatchPlan, cut, cut_pair
from ganseg.training.data import PairDataset


def _mask(height: int, width: int, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.uint8)
    if box:
        top, left, bottom, right = box
        mask[top:bottom, left:right] = 1
    return mask


def test_windows_lie_inside_images_larger_than_the_patch():
    masks = [_mask(100, 37), _mask(40, 300, (10, 250, 14, 260))]
    plan = PatchPlan.for_masks(masks, 32, foreground_share=0.5)
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(100, 37), (40, 300)]):
        for _ in range(200):
            top, left = plan.window(index, rng)
            assert 0 <= top <= height - 32 and 0 <= left <= width - 32


def test_foreground_share_one_always_shows_the_object():
    mask = _mask(200, 300, (150, 270, 155, 275))  # one small object in a corner
    plan = PatchPlan.for_masks([mask], 32, foreground_share=1.0)
    rng = np.random.default_rng(1)
    image = torch.zeros(1, 200, 300, dtype=torch.uint8)
    for _ in range(50):
        top, left = plan.window(0, rng)
        _, labels = cut_pair(image, mask, top, left, plan.size)
        assert int(labels.sum()) > 0


def test_uniform_windows_rarely_show_a_small_object():
    mask = _mask(200, 300, (150, 270, 155, 275))
    plan = PatchPlan.for_masks([mask], 32, foreground_share=0.0)
    rng = np.random.default_rng(1)
    shown = sum(int(mask[t:t + 32, l:l + 32].sum()) > 0 for t, l in (plan.window(0, rng) for _ in range(200)))
    assert shown < 40  # the object covers ~1-2 % of the positions a uniform window can take


def test_a_small_image_is_padded_centred_image_reflected_mask_ignored():
    image = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4)
    mask = torch.ones(3, 4, dtype=torch.uint8)
    plan = PatchPlan.for_masks([mask], 8, foreground_share=0.0)
    assert plan.padded == [0]
    top, left = plan.window(0, np.random.default_rng(0))
    assert (top, left) == (-2, -2)
    patch_image, patch_mask = cut_pair(image, mask, top, left, plan.size)
    assert patch_image.shape == (1, 8, 8) and patch_mask.shape == (8, 8)
    assert torch.equal(patch_image[:, 2:5, 2:6], image)  # the image sits in the middle, unchanged
    assert torch.equal(patch_image[0, 2, 1], image[0, 0, 1])  # reflection, as the sliding window pads
    assert int((patch_mask == 1).sum()) == 12 and int((patch_mask == IGNORE).sum()) == 64 - 12


def test_cut_inside_is_a_plain_slice():
    tensor = torch.arange(100).reshape(10, 10)
    assert torch.equal(cut(tensor, 2, 3, (4, 5), fill=0), tensor[2:6, 3:8])


def test_dataset_patches_repeat_from_the_seed_and_mix_sizes():
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.integers(0, 255, (1, h, w), dtype=np.uint8)) for h, w in [(50, 80), (120, 40)]]
    masks = [_mask(50, 80, (10, 10, 20, 30)), _mask(120, 40, (100, 5, 110, 15))]
    dataset = PairDataset(images, masks, None, PatchPlan.for_masks(masks, 32, 0.33))
    first, again, other = dataset[(1, 7)], dataset[(1, 7)], dataset[(1, 8)]
    assert first[0].shape == (1, 32, 32) and first[1].shape == (32, 32)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0]) or not torch.equal(first[1], other[1])


def test_whole_image_patches_leave_the_samples_as_they_were():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 255, (3, 1, 16, 16), dtype=np.uint8))
    masks = torch.from_numpy(rng.integers(0, 2, (3, 16, 16), dtype=np.uint8))
    whole = PairDataset(images, masks, None)
    patched = PairDataset(images, masks, None, PatchPlan.for_masks(list(masks), 16, 0.33))
    for key in [(0, 1), (2, 99)]:
        assert torch.equal(whole[key][0], patched[key][0]) and torch.equal(whole[key][1], patched[key][1])
