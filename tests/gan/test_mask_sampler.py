"""New mask layouts: deterministic per index, valid labels, objects pasted without overlap."""

from __future__ import annotations

import numpy as np
import torch

from ganseg.data.pairs import IGNORE
from ganseg.gan.mask_sampler import PATCHES_PER_MASK, MaskSampler, MaskSamplerSettings, mask_patches, paste_objects

from .conftest import toy_pairs


def test_samples_are_deterministic_per_index_whatever_the_order():
    _, labels = toy_pairs(8)
    sampler = MaskSampler(labels.numpy(), MaskSamplerSettings(), seed=5)
    forward = [sampler.sample(i) for i in range(6)]
    backward = [MaskSampler(labels.numpy(), MaskSamplerSettings(), seed=5).sample(i) for i in reversed(range(6))]
    for a, b in zip(forward, reversed(backward)):
        assert np.array_equal(a.labels, b.labels) and a.transform == b.transform and a.source_index == b.source_index
    other_seed = MaskSampler(labels.numpy(), MaskSamplerSettings(), seed=6).sample(0)
    assert not np.array_equal(other_seed.labels, forward[0].labels)


def test_samples_are_new_layouts_with_valid_labels():
    _, labels = toy_pairs(8, num_classes=3)
    sampler = MaskSampler(labels.numpy(), MaskSamplerSettings(paste_p=1.0), seed=0)
    samples = [sampler.sample(i) for i in range(20)]
    for sample in samples:
        assert sample.labels.shape == (32, 32) and sample.labels.dtype == np.uint8
        assert set(np.unique(sample.labels)) <= {0, 1, 2}
        assert "paste(" in sample.transform and sample.donor_index is not None
    copies = sum(np.array_equal(s.labels, labels[s.source_index].numpy()) for s in samples)
    assert copies < len(samples) // 2  # most are not verbatim training masks


def test_identity_settings_return_the_source_mask():
    _, labels = toy_pairs(4)
    settings = MaskSamplerSettings(flips=False, affine_p=0, elastic_p=0, crop_p=0, paste_p=0)
    sample = MaskSampler(labels.numpy(), settings, seed=0).sample(3)
    assert np.array_equal(sample.labels, labels[sample.source_index].numpy())
    assert sample.transform == "identity"


def test_paste_objects_keeps_a_margin_and_reports_the_count():
    target = np.zeros((20, 20), np.uint8)
    target[:10, :] = 1  # top half taken
    donor = np.zeros((20, 20), np.uint8)
    donor[2:5, 2:5] = 2
    donor[12:15, 12:15] = 2
    out, pasted = paste_objects(target, donor, most=2, rng=np.random.default_rng(0), tries=50)
    assert pasted == 2
    assert (out == 2).sum() == 18  # two 3x3 objects, class kept
    ys, _ = np.nonzero(out == 2)
    assert ys.min() >= 11  # at least one background pixel between them and the top half
    assert np.array_equal(out[:10], target[:10])
    full = np.ones((20, 20), np.uint8)
    assert paste_objects(full, donor, 2, np.random.default_rng(0))[1] == 0


def test_mask_patches_of_mixed_sizes_feed_the_sampler_and_name_their_source():
    masks = [torch.zeros(40, 90, dtype=torch.uint8), torch.zeros(20, 24, dtype=torch.uint8),
             torch.zeros(200, 300, dtype=torch.uint8)]
    masks[0][10:14, 80:84] = 1
    masks[1][:, :3] = IGNORE  # outside a region of interest
    masks[2][100:104, 100:104] = 1
    pool = mask_patches(masks, 32, foreground_share=1.0, seed=0)
    # As many windows as 32 px tiles would cover each mask, at most PATCHES_PER_MASK.
    assert np.bincount(pool.sources).tolist() == [2 * 3, 1, PATCHES_PER_MASK]
    assert pool.labels.shape == (len(pool.sources), 32, 32) and IGNORE not in pool.labels
    assert all(pool.labels[pool.sources == index].any(axis=(1, 2)).all() for index in (0, 2))  # centred on nuclei
    again = mask_patches(masks, 32, foreground_share=1.0, seed=0)
    assert np.array_equal(again.labels, pool.labels)
    sampler = MaskSampler(pool.labels, MaskSamplerSettings(paste_p=1.0), seed=1, sources=pool.sources)
    samples = [sampler.sample(i) for i in range(10)]
    assert all(s.labels.shape == (32, 32) for s in samples)
    assert {s.source_index for s in samples} <= {0, 1, 2} and {s.donor_index for s in samples} <= {0, 1, 2}
