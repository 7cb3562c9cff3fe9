"""Shapes, ranges and structural promises of the GAN networks."""

from __future__ import annotations

import pytest
import torch

from ganseg.gan.dcgan import (
    DcganDiscriminator,
    DcganDiscriminatorConfig,
    DcganGenerator,
    DcganGeneratorConfig,
)
from ganseg.gan.layers import MinibatchStdDev
from ganseg.gan.pix2pix import (
    PatchDiscriminator,
    PatchDiscriminatorConfig,
    UNetGenerator,
    UNetGeneratorConfig,
)


@pytest.mark.parametrize("in_channels,out_channels", [(1, 1), (3, 3)])
def test_unet_generator_maps_masks_to_images_in_tanh_range(in_channels, out_channels):
    generator = UNetGenerator(UNetGeneratorConfig(in_channels, out_channels, base_channels=8, depth=3))
    images = generator(torch.randn(2, in_channels, 32, 32))
    assert images.shape == (2, out_channels, 32, 32)
    assert images.abs().max() <= 1.0


def test_unet_generator_skips_carry_the_mask_layout():
    # The U-Net's skips reach the output: changing one input pixel changes output pixels near it.
    generator = UNetGenerator(UNetGeneratorConfig(1, 1, base_channels=8, depth=3, dropout=0.0)).eval()
    masks = -torch.ones(1, 1, 32, 32)
    edited = masks.clone()
    edited[0, 0, 4, 4] = 1
    delta = (generator(edited) - generator(masks)).abs()[0, 0]
    assert delta[:8, :8].sum() > delta[24:, 24:].sum()


def test_unet_generator_rejects_sizes_its_depth_cannot_halve():
    generator = UNetGenerator(UNetGeneratorConfig(1, 1, base_channels=8, depth=3))
    with pytest.raises(ValueError, match="not divisible"):
        generator(torch.randn(1, 1, 36, 36))


def test_patch_discriminator_judges_any_stack_patch_by_patch():
    disc = PatchDiscriminator(PatchDiscriminatorConfig(in_channels=4, base_channels=8, layers=3))
    logits = disc(torch.randn(3, 4, 64, 64))
    assert logits.shape == (3, 1, 6, 6)  # 64 / 2**3 = 8, two stride-1 4x4 convs: 8 -> 7 -> 6
    with pytest.raises(ValueError, match="expected shape"):
        disc(torch.randn(3, 2, 64, 64))


def test_patch_discriminator_with_instance_norm_keeps_samples_independent():
    disc = PatchDiscriminator(PatchDiscriminatorConfig(in_channels=2, base_channels=8, layers=2)).train()
    batch = torch.randn(4, 2, 32, 32)
    changed = batch.clone()
    changed[1:] = torch.randn(3, 2, 32, 32)
    assert torch.allclose(disc(batch)[0], disc(changed)[0], atol=1e-6)


def test_spectral_norm_wraps_every_conv():
    disc = PatchDiscriminator(PatchDiscriminatorConfig(in_channels=2, base_channels=8, spectral_norm=True))
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(c, "parametrizations") and "weight" in c.parametrizations for c in convs)
    disc(torch.randn(2, 2, 32, 32))  # power iteration runs
    for conv in convs:  # largest singular value of the reshaped weight ~ 1 after normalisation
        weight = conv.weight.reshape(conv.weight.shape[0], -1)
        assert float(torch.linalg.matrix_norm(weight.detach(), ord=2)) == pytest.approx(1.0, abs=0.15)


def test_minibatch_stddev_appends_the_group_mean_std():
    layer = MinibatchStdDev(group_size=2)
    x = torch.tensor([0.0, 2.0, 1.0, 1.0]).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    out = layer(x)
    assert out.shape == (4, 2, 2, 2)
    # groups are consecutive samples: (0, 2) has std 1, (1, 1) has std ~0
    assert out[:2, 1].flatten().tolist() == pytest.approx([1.0] * 8, abs=1e-4)
    assert out[2:, 1].flatten().tolist() == pytest.approx([0.0] * 8, abs=1e-3)


def test_minibatch_stddev_enters_the_discriminator_head():
    disc = PatchDiscriminator(PatchDiscriminatorConfig(in_channels=2, base_channels=8, layers=2, minibatch_std=True))
    assert disc(torch.randn(4, 2, 32, 32)).shape == (4, 1, 6, 6)


@pytest.mark.parametrize("residual_blocks", [0, 1])
def test_dcgan_generates_image_and_mask_stacks(residual_blocks):
    generator = DcganGenerator(DcganGeneratorConfig(latent_dim=8, out_channels=2, image_size=32, base_channels=8,
                                                    residual_blocks=residual_blocks))
    stacks = generator(torch.randn(3, 8))
    assert stacks.shape == (3, 2, 32, 32) and stacks.abs().max() <= 1
    disc = DcganDiscriminator(DcganDiscriminatorConfig(in_channels=2, image_size=32, base_channels=8,
                                                       residual_blocks=residual_blocks, minibatch_std=True))
    assert disc(stacks).shape == (3, 1, 1, 1)
    if residual_blocks:
        assert any(type(m).__name__ == "ResBlock" for m in generator.modules())


def test_dcgan_needs_a_power_of_two_size():
    with pytest.raises(ValueError, match="power-of-two"):
        DcganGenerator(DcganGeneratorConfig(latent_dim=8, out_channels=2, image_size=48))


def test_resize_upsampling_has_no_transposed_convs_and_keeps_shapes():
    generator = UNetGenerator(UNetGeneratorConfig(2, 1, base_channels=8, depth=3, upsample="resize"))
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in generator.modules())
    assert generator(torch.randn(2, 2, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="unknown upsample"):
        UNetGenerator(UNetGeneratorConfig(1, 1, base_channels=8, depth=3, upsample="bicubic"))


# -- multi-scale discriminator and feature matching (pix2pixHD) -------------------------------
def multi_scale(scales: int = 3, **overrides):
    from ganseg.gan.pix2pix import MultiScaleDiscriminator

    torch.manual_seed(0)
    cfg = PatchDiscriminatorConfig(**{"in_channels": 2, "base_channels": 8, "layers": 2, **overrides})
    return MultiScaleDiscriminator(cfg, scales)


def test_multi_scale_discriminator_returns_one_map_per_scale_on_halved_inputs():
    disc = multi_scale(3)
    inputs = torch.randn(2, 2, 64, 64)
    logits = disc(inputs)
    # scale s sees 64 / 2**s px; two halvings then two stride-1 4x4 convs: n / 4 - 2.
    assert [tuple(m.shape) for m in logits] == [(2, 1, 14, 14), (2, 1, 6, 6), (2, 1, 2, 2)]
    half = torch.nn.functional.avg_pool2d(inputs, 3, stride=2, padding=1, count_include_pad=False)
    assert torch.allclose(logits[1], disc.scales[1](half))
    maps, features = disc(inputs, features=True)
    assert len(features) == 3 * (2 + 1)  # layers + 1 activations per scale
    assert all(torch.equal(a, b) for a, b in zip(maps, logits))


def test_multi_scale_losses_weight_every_scale_equally():
    from ganseg.gan.losses import NonSaturatingLoss

    objective = NonSaturatingLoss()
    fine, coarse = torch.full((2, 1, 8, 8), 2.0), torch.full((2, 1, 2, 2), -1.0)  # 64 vs 4 patches
    loss, stats = objective.g_loss([fine, coarse])
    expected = 0.5 * (objective.g_loss(fine)[0] + objective.g_loss(coarse)[0])
    assert torch.allclose(loss, expected)
    assert torch.allclose(stats["g_adv"], expected)
    d_loss, d_stats = objective.d_loss([fine, coarse], [coarse, fine])
    assert torch.allclose(d_loss, 0.5 * (objective.d_loss(fine, coarse)[0] + objective.d_loss(coarse, fine)[0]))
    assert torch.allclose(d_stats["d_acc_real"], torch.tensor(0.5))  # all right at one scale, all wrong at the other


def test_penalties_see_the_scale_average_of_a_multi_scale_discriminator():
    from ganseg.gan.regularisers import R1Penalty, per_sample_score

    disc = multi_scale(2)
    inputs = torch.randn(3, 2, 32, 32)
    maps = disc(inputs)
    expected = torch.stack([m.flatten(1).mean(1) for m in maps]).mean(0)
    assert torch.allclose(per_sample_score(disc, inputs), expected)
    penalty, stats = R1Penalty(1.0)(disc, inputs, inputs)
    assert torch.isfinite(penalty) and stats["d_r1"] > 0


def test_build_patch_discriminator_stacks_scales_only_when_asked():
    from ganseg.config.augment import DiscriminatorConfig, GanObjectiveConfig
    from ganseg.gan.build import build_patch_discriminator
    from ganseg.gan.pix2pix import MultiScaleDiscriminator

    objective = GanObjectiveConfig(spectral_norm=True)
    single = build_patch_discriminator(3, DiscriminatorConfig(base_channels=8), objective)
    assert isinstance(single, PatchDiscriminator)  # today's network and state-dict keys
    double = build_patch_discriminator(3, DiscriminatorConfig(base_channels=8, scales=2), objective)
    assert isinstance(double, MultiScaleDiscriminator) and len(double.scales) == 2
    assert len(double(torch.randn(1, 3, 64, 64))) == 2


def test_feature_matching_is_zero_for_identical_stacks_and_positive_otherwise():
    from ganseg.gan.losses import FeatureMatchingLoss

    disc = multi_scale(2)
    matching = FeatureMatchingLoss(10.0)
    stacks = torch.randn(2, 2, 32, 32)
    _, features = disc(stacks, features=True)
    assert matching(features, features)[0] == 0
    _, other = disc(stacks + 0.5, features=True)
    loss, stats = matching(other, features)
    assert loss > 0 and torch.allclose(loss, 10 * stats["g_feature_matching"])


def test_feature_matching_gradients_reach_the_generator_only():
    from ganseg.gan.data import Batch
    from ganseg.gan.losses import FeatureMatchingLoss, GanLoss, NonSaturatingLoss, PixelLoss
    from ganseg.gan.tasks import Pix2PixTask

    torch.manual_seed(0)
    generator = UNetGenerator(UNetGeneratorConfig(1, 1, base_channels=4, depth=3, dropout=0.0))
    disc = multi_scale(2)
    images = torch.rand(2, 1, 32, 32) * 2 - 1
    masks = torch.randn(2, 1, 32, 32).sign()
    batch = Batch(images.requires_grad_(True), masks, (masks[:, 0] > 0).to(torch.uint8))
    without = GanLoss(Pix2PixTask(PixelLoss(0.0)), NonSaturatingLoss())
    with_fm = GanLoss(Pix2PixTask(PixelLoss(0.0)), NonSaturatingLoss(), feature_matching=FeatureMatchingLoss(10.0))
    inputs = with_fm.prepare(generator, batch, 0, grad=True)
    disc.requires_grad_(False)  # as the G phase runs it
    loss, stats = with_fm.g_main(disc, inputs)
    adversarial, _ = without.g_main(disc, inputs)
    assert torch.allclose(loss, adversarial + 10 * stats["g_feature_matching"])
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters() if p.ndim > 1)
    # The real stack is a target: nothing flows into it (the L1 term, weighted 0, adds zeros).
    assert images.grad is None or not images.grad.any()
    assert all(p.grad is None for p in disc.parameters())
