"""Value ranges, mask encoding, the dihedral augmentation and the batch sampler."""

from __future__ import annotations

import torch

from ganseg.gan.data import (
    PairSampler,
    decode_masks,
    dihedral,
    encode_masks,
    images_to_uint8,
    images_to_unit,
)


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
    sampler = PairSampler(images, labels, 1, batch_size=5, seed=1, device=torch.device("cpu"), augment=False)
    seen = torch.cat([images_to_uint8(sampler.next().images)[:, 0, 0, 0] for _ in range(2)])
    assert sorted(seen.tolist()) == list(range(10))
    state = sampler.state_dict()
    expected = [sampler.next().images for _ in range(3)]
    resumed = PairSampler(images, labels, 1, batch_size=5, seed=99, device=torch.device("cpu"), augment=False)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, resumed.next().images) for a in expected)
