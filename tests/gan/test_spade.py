"""The SPADE generator: shapes, its noise, its reaction to the mask, and how it is selected."""

from __future__ import annotations

import pytest
import torch

from ganseg.config.augment import AugmentConfig, resolve_patch_size
from ganseg.errors import ConfigError
from ganseg.gan.build import build_networks, generator_from_config
from ganseg.gan.spade import SpadeGenerator, SpadeGeneratorConfig


def spade(**overrides) -> SpadeGenerator:
    torch.manual_seed(0)
    return SpadeGenerator(SpadeGeneratorConfig(**{"in_channels": 1, "out_channels": 1, "base_channels": 4,
                                                  "upsamplings": 3, "latent_dim": 4, "hidden_channels": 8,
                                                  **overrides})).eval()


@pytest.mark.parametrize("size,upsamplings", [(40, 3), (48, 4), (24, 2)])
def test_spade_paints_sizes_the_patch_rule_allows(size, upsamplings):
    # 40 and 24 are no powers of two: the rule only asks for a multiple of 2**upsamplings.
    cfg = AugmentConfig.model_validate({"model": "spade", "spade": {"upsamplings": upsamplings},
                                        "discriminator": {"layers": 1}})
    assert cfg.size_problem(size) is None
    generator = spade(upsamplings=upsamplings, in_channels=3, out_channels=3)
    images = generator(torch.randn(2, 3, size, size).sign())
    assert images.shape == (2, 3, size, size)
    assert images.abs().max() <= 1.0


def test_spade_rejects_sizes_its_upsamplings_cannot_reach():
    with pytest.raises(ValueError, match="not divisible"):
        spade(upsamplings=3)(torch.zeros(1, 1, 36, 36))


def test_different_noise_paints_different_images_for_one_mask():
    generator = spade()
    masks = torch.randn(1, 1, 32, 32).sign().expand(2, -1, -1, -1)
    noise = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    images = generator(masks, noise)
    assert (images[0] - images[1]).abs().mean() > 1e-4
    assert torch.equal(generator(masks, noise), images)  # the same noise: the same image


def test_spade_draws_its_noise_from_the_seeded_global_rng():
    generator = spade()
    masks = torch.randn(3, 1, 32, 32).sign()
    torch.manual_seed(5)
    first = generator(masks)
    torch.manual_seed(5)
    assert torch.equal(generator(masks), first)
    assert not torch.equal(generator(masks), first)  # the next draw differs


def test_spade_reacts_to_the_mask_where_it_changed():
    generator = spade(latent_dim=0)
    masks = -torch.ones(1, 1, 32, 32)
    edited = masks.clone()
    edited[0, 0, 2:8, 2:8] = 1  # an object in the top-left corner
    delta = (generator(edited) - generator(masks)).abs()[0, 0]
    assert delta[:10, :10].mean() > 1e-5
    assert delta[:10, :10].mean() > 5 * delta[22:, 22:].mean()


def test_spade_is_deterministic_without_noise_channels():
    generator = spade(latent_dim=0)
    masks = torch.randn(2, 1, 32, 32).sign()
    assert torch.equal(generator(masks), generator(masks))


def test_spade_config_rebuilds_the_generator_the_stage_saved():
    cfg = AugmentConfig.model_validate({"model": "spade", "spade": {"base_channels": 4, "hidden_channels": 8}})
    nets = build_networks(cfg, 32, 1, 3)
    assert nets.generator_config["kind"] == "spade"
    assert nets.generator_config["in_channels"] == 3  # one-hot classes
    rebuilt = generator_from_config(dict(nets.generator_config))
    rebuilt.load_state_dict(nets.generator.state_dict())
    masks, noise = torch.randn(1, 3, 32, 32).sign(), torch.randn(1, cfg.spade.latent_dim)
    assert torch.equal(rebuilt.eval()(masks, noise), nets.generator.eval()(masks, noise))


def test_spade_keeps_the_pix2pix_task_with_its_own_weights():
    cfg = AugmentConfig.model_validate({"model": "spade", "spade": {"lambda_l1": 3.0}})
    nets = build_networks(cfg, 64, 1, 1)
    assert nets.task.pixel_loss.weight == 3.0
    assert cfg.mask_conditioned and cfg.pixel_weights == (3.0, 10.0)


@pytest.mark.parametrize("block,message", [
    ({"spade": {"latent_dim": -1}}, "latent_dim"),
    ({"spade": {"norm": "group"}}, "norm"),
    ({"spade": {"base_channels": 2}}, "base_channels"),
    ({"spade": {"unknown": 1}}, "unknown"),
    ({"discriminator": {"scales": 0}}, "scales"),
    ({"pix2pix": {"feature_matching": -1}}, "feature_matching"),
])
def test_config_rejects_nonsense(block, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig.model_validate({"model": "spade", **block})


def test_patch_checks_name_the_spade_and_scale_keys():
    cfg = AugmentConfig.model_validate({"model": "spade", "spade": {"upsamplings": 4}})
    with pytest.raises(ConfigError, match="augment.spade.upsamplings: 4 up-samplings need"):
        cfg.check_against(40)
    scaled = AugmentConfig.model_validate({"discriminator": {"scales": 3}})
    with pytest.raises(ConfigError, match="coarsest of 3 scales"):
        scaled.check_against(64)  # 64 / 2**(3 + 2) = 2 px
    # auto: nothing up to the images' 100 px leaves 4 px at the third scale; 128 does (128 / 32).
    assert resolve_patch_size(scaled, [(100, 100)]) == 128
    with pytest.raises(ValueError, match="dcgan discriminator has one scale"):
        AugmentConfig.model_validate({"model": "dcgan", "discriminator": {"scales": 2}})
