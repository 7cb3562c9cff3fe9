"""Synthetic pairs: deterministic from the seed, masks from the sampler, images from G."""

from __future__ import annotations

import numpy as np
import torch

from ganseg.gan.dcgan import DcganGenerator, DcganGeneratorConfig
from ganseg.gan.mask_sampler import MaskSampler, MaskSamplerSettings
from ganseg.gan.pix2pix import UNetGenerator, UNetGeneratorConfig
from ganseg.gan.samples import PAD, render_grid
from ganseg.gan.synthesis import dcgan_pairs, noise_for, pix2pix_pairs

from .conftest import toy_pairs

CPU = torch.device("cpu")


def test_pix2pix_pairs_paint_the_sampled_masks_deterministically():
    _, labels = toy_pairs(6)
    torch.manual_seed(0)
    generator = UNetGenerator(UNetGeneratorConfig(1, 1, base_channels=8, depth=3))
    sampler = MaskSampler(labels.numpy(), MaskSamplerSettings(), seed=3)
    first = list(pix2pix_pairs(generator, sampler, 5, 1, CPU, batch_size=2))
    again = list(pix2pix_pairs(generator, MaskSampler(labels.numpy(), MaskSamplerSettings(), seed=3), 5, 1, CPU))
    assert [p.index for p in first] == list(range(5))
    for a, b in zip(first, again):  # batch size does not matter, dropout is off
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert a.image.shape == (1, 32, 32) and a.image.dtype == np.uint8
    assert np.array_equal(first[2].mask, sampler.sample(2).labels)
    assert not generator.training


def test_dcgan_pairs_decode_image_and_mask_channels():
    torch.manual_seed(0)
    generator = DcganGenerator(DcganGeneratorConfig(latent_dim=8, out_channels=2, image_size=32, base_channels=8))
    pairs = list(dcgan_pairs(generator, 4, 8, 1, 1, seed=1, device=CPU, batch_size=3))
    assert len(pairs) == 4 and pairs[0].image.shape == (1, 32, 32)
    assert set(np.unique(np.concatenate([p.mask.ravel() for p in pairs]))) <= {0, 1}
    again = list(dcgan_pairs(generator, 2, 8, 1, 1, seed=1, device=CPU))
    assert np.array_equal(again[1].image, pairs[1].image)


def test_noise_rows_depend_only_on_seed_and_index():
    assert torch.equal(noise_for(range(5), 4, 7)[3], noise_for(range(3, 4), 4, 7)[0])
    assert not torch.equal(noise_for(range(1), 4, 7), noise_for(range(1), 4, 8))


def test_grid_places_mask_generated_and_real_rows():
    masks = torch.zeros(3, 4, 4, dtype=torch.uint8)
    masks[1] = 1
    generated = torch.full((3, 1, 4, 4), 100, dtype=torch.uint8)
    real = torch.full((3, 1, 4, 4), 200, dtype=torch.uint8)
    grid = render_grid(masks, generated, 1, columns=2, real_images=real)
    assert grid.shape == (2 * 3 * (4 + PAD) + PAD, 2 * (4 + PAD) + PAD, 3)
    tile = lambda row, col: grid[PAD + row * (4 + PAD), PAD + col * (4 + PAD)]
    assert tile(0, 1).tolist() == [255, 255, 255]  # mask of sample 1
    assert tile(1, 0).tolist() == [100] * 3 and tile(2, 0).tolist() == [200] * 3
    assert tile(3, 0).tolist() == [0, 0, 0]  # second block: sample 2's (empty) mask
