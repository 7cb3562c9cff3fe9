"""Value ranges, mask encoding, the dihedral augmentation and the patch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganseg.data.pairs import IGNORE
from ganseg.gan.data import (
    PairSampler,
    decode_masks,
    dihedral,
    encode_masks,
    fixed_patches,
    images_to_uint8,
    images_to_unit,
)
from ganseg.gan.losses import PixelLoss

CPU = torch.device("cpu")


def test_masks_encode_and_decode_losslessly():
    binary = torch.randint(0, 2, (3, 8, 8), dtype=torch.uint8)
    encoded = encode_masks(binary, 1)
    assert encoded.shape == (3, 1, 8, 8) and set(encoded.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(decode_masks(encoded, 1), binary)
    labels = torch.randint(0, 4, (3, 8, 8), dtype=torch.uint8)
    one_hot = encode_masks(labels, 4)
    assert one_hot.shape == (3, 4, 8, 8)
    assert torch.equal((one_hot > 0).sum(1), torch.ones(3, 8, 8, dtype=torch.long))
    assert torch.equal(decode_masks(one_hot, 4), labels)


def test_images_round_trip_through_the_unit_range():
    images = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    unit = images_to_unit(images)
    assert float(unit.min()) == -1.0 and float(unit.max()) == 1.0
    assert torch.equal(images_to_uint8(unit), images)


def test_dihedral_moves_image_and_mask_together():
    labels = torch.zeros(8, 6, 6, dtype=torch.uint8)
    labels[:, 0, 1] = 1  # an off-axis pixel: every symmetry moves it somewhere distinct
    images = (labels * 255).unsqueeze(1)
    flips = [torch.tensor([bool(i & 1) for i in range(8)]), torch.tensor([bool(i & 2) for i in range(8)]),
             torch.tensor([bool(i & 4) for i in range(8)])]
    moved_images, moved_labels = dihedral(images, *flips), dihedral(labels, *flips)
    assert torch.equal(moved_images[:, 0], moved_labels * 255)
    positions = {tuple(torch.nonzero(m)[0].tolist()) for m in moved_labels}
    assert len(positions) == 8  # the 8 symmetries of the square


def test_sampler_visits_every_pair_once_per_epoch_and_resumes_exactly():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 4, 4).contiguous()
    labels = torch.zeros(10, 4, 4, dtype=torch.uint8)
    sampler = PairSampler(images, labels, 1, batch_size=5, seed=1, device=CPU, patch_size=4, augment=False)
    seen = torch.cat([images_to_uint8(sampler.next().images)[:, 0, 0, 0] for _ in range(2)])
    assert sorted(seen.tolist()) == list(range(10))
    state = sampler.state_dict()
    expected = [sampler.next().images for _ in range(3)]
    resumed = PairSampler(images, labels, 1, batch_size=5, seed=99, device=CPU, patch_size=4, augment=False)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, resumed.next().images) for a in expected)


def test_ignore_encodes_as_background_and_leaves_the_pixel_loss():
    labels = torch.tensor([[[0, 1], [IGNORE, 2]]], dtype=torch.uint8)
    assert encode_masks(labels, 1).flatten().tolist() == [-1.0, 1.0, -1.0, 1.0]
    assert torch.equal(decode_masks(encode_masks(labels, 3), 3), torch.tensor([[[0, 1], [0, 2]]], dtype=torch.uint8))
    fake, real = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    real[0, :, 1, 0] = 5.0  # wrong only at the IGNORE pixel
    valid = (labels != IGNORE).unsqueeze(1).float()
    assert float(PixelLoss(1.0)(fake, real, valid)[0]) == 0.0
    assert float(PixelLoss(1.0)(fake, real)[0]) == pytest.approx(5.0 / 4)


def mixed_pairs():
    """Non-square images of three sizes, one smaller than a 32 px patch; image i is the constant
    20 * (i + 1) with a square nucleus (label 1) whose pixels are 255."""
    images, labels = [], []
    for index, (height, width) in enumerate([(40, 90), (70, 33), (20, 24)]):
        mask = torch.zeros(height, width, dtype=torch.uint8)
        mask[height // 2 : height // 2 + 4, width - 6 : width - 2] = 1
        image = torch.where(mask.bool(), 255, 20 * (index + 1)).to(torch.uint8)[None]
        images.append(image)
        labels.append(mask)
    return images, labels


def test_mixed_size_images_give_patches_of_one_size_cut_from_their_image(capsys):
    images, labels = mixed_pairs()
    sampler = PairSampler(images, labels, 1, batch_size=6, seed=0, device=CPU, patch_size=32)
    warning = capsys.readouterr().err.strip().splitlines()
    assert warning == [("warning: augment: 1 of 3 images are smaller than the 32 px patch along a side; "
                        "they are padded (reflected image, ignored mask)")]
    for _ in range(4):
        batch = sampler.next()
        assert batch.images.shape == (6, 1, 32, 32) and batch.masks.shape == (6, 1, 32, 32)
        assert batch.valid is not None and batch.valid.shape == (6, 1, 32, 32)
        pixels = images_to_uint8(batch.images)
        for image, label, valid in zip(pixels[:, 0], batch.labels, batch.valid[:, 0]):
            background = set(image[label == 0].tolist())
            assert len(background) == 1 and background <= {20, 40, 60}  # one source image per patch
            assert set(image[label == 1].tolist()) <= {255}
            assert torch.equal(valid.bool(), label != IGNORE)
            if background == {60}:  # the 20x24 image: padded to 32 px, the padding ignored
                assert int((label == IGNORE).sum()) == 32 * 32 - 20 * 24
            else:
                assert not (label == IGNORE).any()


def test_windows_lie_inside_their_image_and_the_foreground_share_centres_them():
    images, labels = mixed_pairs()
    for share in (1.0, 0.0):
        sampler = PairSampler(images[:2], labels[:2], 1, batch_size=8, seed=3, device=CPU, patch_size=16,
                              foreground_share=share, augment=False)
        rng = np.random.default_rng(0)
        for index in (0, 1) * 50:
            top, left = sampler.plan.window(index, rng)
            height, width = labels[index].shape
            assert 0 <= top <= height - 16 and 0 <= left <= width - 16
        hits = [bool((label == 1).any()) for _ in range(25) for label in sampler.next().labels]
        if share == 1.0:
            assert all(hits)  # every window centred on the 4x4 nucleus
        else:
            assert sum(hits) / len(hits) < 0.5  # uniform windows mostly miss it


def test_patch_sampling_resumes_exactly_from_its_state():
    images, labels = mixed_pairs()
    sampler = PairSampler(images, labels, 1, batch_size=4, seed=7, device=CPU, patch_size=16)
    for _ in range(3):
        sampler.next()
    state = sampler.state_dict()
    expected = [sampler.next() for _ in range(3)]
    resumed = PairSampler(images, labels, 1, batch_size=4, seed=123, device=CPU, patch_size=16)
    resumed.load_state_dict(state)
    for batch in expected:
        again = resumed.next()
        assert torch.equal(batch.images, again.images) and torch.equal(batch.labels, again.labels)
    fresh = PairSampler(images, labels, 1, batch_size=4, seed=7, device=CPU, patch_size=16)
    first = [fresh.next() for _ in range(4)][3]
    assert torch.equal(first.images, expected[0].images)  # the same seed draws the same patches


def test_images_of_the_patch_size_are_sampled_whole():
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 2, (6, 8, 8), dtype=torch.uint8)
    sampler = PairSampler(images, labels, 1, batch_size=6, seed=0, device=CPU, patch_size=8, augment=False)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    batch = sampler.next()
    assert torch.equal(images_to_uint8(batch.images), images[order]) and torch.equal(batch.labels, labels[order])
    assert batch.valid is None  # no IGNORE pixel anywhere: the pixel loss keeps its plain mean


def test_fixed_patches_are_seeded_and_of_the_patch_size():
    images, labels = mixed_pairs()
    patch_images, patch_labels = fixed_patches(images, labels, 16, 1.0, seed=0)
    assert patch_images.shape == (3, 1, 16, 16) and patch_labels.shape == (3, 16, 16)
    assert all(bool((label == 1).any()) for label in patch_labels)  # centred on the nucleus
    again = fixed_patches(images, labels, 16, 1.0, seed=0)
    assert torch.equal(again[0], patch_images) and torch.equal(again[1], patch_labels)
