"""Augmentation keeps image and mask aligned; the sampler's mix, order and shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganseg.config.train import AugmentationConfig
from ganseg.training.data import EpochSampler, PairDataset, batch_to_device, build_augmentation


def _blobs(count: int = 6, side: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images that are bright exactly where the mask is 1: alignment is checkable pixelwise."""
    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(count, side, side, dtype=torch.uint8)
    for index in range(count):
        y, x = torch.randint(4, side - 12, (2,), generator=generator).tolist()
        masks[index, y : y + 8 + index % 3, x : x + 10] = 1
    images = (masks * 200 + 20).unsqueeze(1).to(torch.uint8)
    return images, masks


def _only(**overrides) -> AugmentationConfig:
    off = {"hflip": 0, "vflip": 0, "rotate90": 0, "affine": {"p": 0}, "elastic": {"p": 0},
           "brightness_contrast": {"p": 0}, "noise": {"p": 0}}
    return AugmentationConfig.model_validate({**off, **overrides})


def test_all_probabilities_zero_means_no_augmentation():
    assert build_augmentation(_only()) is None
    images, masks = _blobs()
    image, mask = PairDataset(images, masks, None)[(2, 123)]
    assert torch.equal(image, images[2]) and torch.equal(mask, masks[2])


def test_flips_and_rotations_move_image_and_mask_together_exactly():
    images, masks = _blobs()
    dataset = PairDataset(images, masks, build_augmentation(_only(hflip=1.0, vflip=0.5, rotate90=1.0)))
    changed = 0
    for seed in range(8):
        image, mask = dataset[(1, seed)]
        assert torch.equal((image[0] > 100).to(torch.uint8), mask)
        changed += not torch.equal(mask, masks[1])
    assert changed == 8  # a horizontal flip always applies, so every draw moved the blob


@pytest.mark.parametrize("kind", ["affine", "elastic"])
def test_warps_keep_labels_binary_and_aligned(kind):
    images, masks = _blobs()
    strong = {"affine": {"p": 1.0, "rotate": 30, "scale": [0.8, 1.2], "translate": 0.1},
              "elastic": {"p": 1.0, "alpha": 30, "sigma": 4}}[kind]
    dataset = PairDataset(images, masks, build_augmentation(_only(**{kind: strong})))
    for seed in range(5):
        image, mask = dataset[(3, seed)]
        assert set(mask.unique().tolist()) <= {0, 1}
        bright = image[0] > 110
        agreement = (bright == mask.bool()).float().mean().item()
        assert agreement > 0.97  # only interpolated edge pixels may disagree
    assert not torch.equal(dataset[(3, 0)][1], masks[3])


def test_intensity_transforms_leave_the_mask_alone():
    images, masks = _blobs()
    dataset = PairDataset(images, masks, build_augmentation(
        _only(brightness_contrast={"p": 1.0, "brightness": 0.3, "contrast": 0.3}, noise={"p": 1.0, "std": 0.1})))
    image, mask = dataset[(0, 5)]
    assert torch.equal(mask, masks[0]) and not torch.equal(image, images[0])
    assert image.dtype == torch.uint8 and image.shape == images[0].shape


def test_same_seed_same_sample_different_seed_different_sample():
    images, masks = _blobs()
    dataset = PairDataset(images, masks, build_augmentation(AugmentationConfig()))
    first = [dataset[(i, 1000 + i)] for i in range(6)]
    again = [dataset[(i, 1000 + i)] for i in reversed(range(6))][::-1]  # other call order
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    others = [dataset[(i, 2000 + i)] for i in range(6)]
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, others))


def test_rgb_images_keep_three_channels():
    images, masks = _blobs()
    dataset = PairDataset(images.repeat(1, 3, 1, 1), masks, build_augmentation(AugmentationConfig()))
    assert dataset[(0, 1)][0].shape == (3, 32, 32)


def test_epoch_mix_follows_the_ratio():
    sampler = EpochSampler(num_real=10, num_synthetic=7, synthetic_ratio=1.5, seed=3)
    indices = [index for index, _ in sampler]
    assert len(indices) == len(sampler) == 25
    assert sorted(i for i in indices if i < 10) == list(range(10))  # every real pair once
    synthetic = [i - 10 for i in indices if i >= 10]
    assert len(synthetic) == 15 and set(synthetic) == set(range(7))  # whole pool used before repeats
    assert max(np.bincount(synthetic)) <= 3


def _batches(sampler: EpochSampler, epochs: int, batch_size: int) -> list[list[int]]:
    """The indices of every batch of ``epochs`` passes, as the DataLoader groups the sampler's order."""
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        order = [index for index, _ in sampler]
        batches += [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return batches


def test_pretrain_draws_only_synthetic_pairs_before_the_switch_and_only_real_after():
    # 10 real + 5 synthetic per epoch, batches of 4: 4 batches per epoch (the last of 3); the
    # switch at step 6 falls inside the second epoch.
    sampler = EpochSampler(num_real=10, num_synthetic=30, synthetic_ratio=0.5, seed=3)
    mixed_length = len(sampler)
    sampler.pretrain(until_step=6, batch_size=4)
    assert len(sampler) == mixed_length == 15  # the epoch length, hence the plan, is the mix's
    batches = _batches(sampler, epochs=4, batch_size=4)
    assert all(i >= 10 for batch in batches[:6] for i in batch)  # steps 1..6: synthetic only
    assert all(i < 10 for batch in batches[6:] for i in batch)  # step 7 on: real only
    synthetic = [i - 10 for batch in batches[:6] for i in batch]
    assert len(synthetic) == len(set(synthetic)) == 23  # 4+4+4+3 + 4+4: the pool walked without repeats
    real = [i for batch in batches[6:] for i in batch]
    assert np.bincount(real, minlength=10).max() - np.bincount(real, minlength=10).min() <= 1


def test_pretrain_order_is_a_function_of_seed_epoch_and_schedule():
    def order(epoch: int) -> list:
        sampler = EpochSampler(num_real=10, num_synthetic=30, synthetic_ratio=0.5, seed=3)
        sampler.pretrain(until_step=6, batch_size=4)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(1) == order(1) and order(1) != order(2)  # a resume at epoch 1 sees what the run saw


def test_pretrain_shards_keep_the_switch_on_every_rank():
    per_rank = []
    for rank in range(2):
        sampler = EpochSampler(num_real=9, num_synthetic=20, synthetic_ratio=0.0 + 4 / 9, seed=1, rank=rank,
                               world_size=2)
        sampler.pretrain(until_step=3, batch_size=2)
        per_rank.append(_batches(sampler, epochs=2, batch_size=2))
    for batches in per_rank:  # 13 samples -> 7 per rank, 4 batches per epoch
        assert len(batches) == 8
        assert all(i >= 9 for batch in batches[:3] for i in batch)
        assert all(i < 9 for batch in batches[3:] for i in batch)


def test_mixed_schedule_is_unchanged_by_the_pretrain_option():
    plain = EpochSampler(num_real=10, num_synthetic=7, synthetic_ratio=1.5, seed=3)
    plain.set_epoch(2)
    # The order the sampler drew before the pretrain schedule existed (same seed and epoch).
    assert [index for index, _ in plain] == [12, 14, 9, 3, 6, 10, 8, 10, 16, 11, 14, 1, 15, 16, 11, 2, 14, 0, 5,
                                             13, 12, 13, 15, 4, 7]


def test_real_only_when_ratio_is_zero():
    sampler = EpochSampler(num_real=5, num_synthetic=9, synthetic_ratio=0.0)
    assert sorted(i for i, _ in sampler) == list(range(5))


def test_order_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(20, seed=1), EpochSampler(20, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    b.set_epoch(5)
    assert list(a) != list(b)
    assert list(EpochSampler(20, seed=2)) != list(EpochSampler(20, seed=1))


def test_shards_split_one_global_order():
    total = 11  # not a multiple of 3: padded with the first samples
    shards = [list(EpochSampler(total, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    combined = [item for row in zip(*shards) for item in row]
    order = list(EpochSampler(total, seed=0))
    assert combined[:total] == order and combined[total:] == order[:1]


def test_batch_to_device_scales_images_and_casts_labels():
    images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    labels = torch.tensor([[[0, 1]]], dtype=torch.uint8)
    floats, longs = batch_to_device((images, labels), torch.device("cpu"), torch.channels_last)
    assert floats.tolist() == [[[[0.0, 1.0]]]] and longs.dtype == torch.long
    assert floats.is_contiguous(memory_format=torch.channels_last)
