"""Build the GAN's parts from the typed config blocks: networks, objective, stabilisers.

The factories take config models (as nanoGPT's model takes ``GPTConfig``), so the stage stays
a thin caller and adversarial fine-tuning can build the same objective and penalties from the
:class:`~ganseg.config.augment.GanObjectiveConfig` it embeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganseg.config.augment import AugmentConfig, DiscriminatorConfig, GanObjectiveConfig
from ganseg.gan.data import mask_channels
from ganseg.gan.dcgan import (
    DcganDiscriminator,
    DcganDiscriminatorConfig,
    DcganGenerator,
    DcganGeneratorConfig,
)
from ganseg.gan.diffaugment import AdaptiveProbability, DiffAugment
from ganseg.gan.losses import FeatureMatchingLoss, GanObjective, PixelLoss, build_objective
from ganseg.gan.pix2pix import (
    MultiScaleDiscriminator,
    PatchDiscriminator,
    PatchDiscriminatorConfig,
    UNetGenerator,
    UNetGeneratorConfig,
)
from ganseg.gan.pool import ImagePool
from ganseg.gan.regularisers import (
    GradientPenalty,
    InstanceNoise,
    Penalty,
    R1Penalty,
    WeightClip,
    WeightPenalty,
)
from ganseg.gan.spade import SpadeGenerator, SpadeGeneratorConfig
from ganseg.gan.tasks import DcganTask, GanTask, Pix2PixTask
from ganseg.gan.trainer import GuardSettings, LoopSettings


@dataclass
class Stabilisers:
    """Everything ``GanObjectiveConfig`` switches on besides the objective itself."""

    penalties: list[Penalty]
    constraints: list[WeightClip]
    instance_noise: InstanceNoise | None
    pool: ImagePool | None
    augment: DiffAugment | None


def build_stabilisers(cfg: GanObjectiveConfig, total_steps: int) -> Stabilisers:
    penalties: list[Penalty] = []
    if cfg.gradient_penalty_weight > 0:
        penalties.append(GradientPenalty(cfg.gradient_penalty_weight))
    if cfg.r1_gamma > 0:
        penalties.append(R1Penalty(cfg.r1_gamma, cfg.r1_interval))
    if cfg.weight_penalty > 0:
        penalties.append(WeightPenalty(cfg.weight_penalty))
    constraints = [WeightClip(cfg.weight_clip_limit)] if cfg.weight_clip_limit > 0 else []
    noise = InstanceNoise(cfg.instance_noise, total_steps) if cfg.instance_noise > 0 else None
    pool = ImagePool(cfg.image_pool) if cfg.image_pool > 0 else None
    augment = None
    if cfg.diffaugment:
        adaptive = None
        if cfg.ada_target is not None:
            adaptive = AdaptiveProbability(cfg.ada_target, cfg.ada_interval, cfg.ada_ramp_images)
        augment = DiffAugment(cfg.diffaugment, adaptive)
    return Stabilisers(penalties, constraints, noise, pool, augment)


def build_gan_objective(cfg: GanObjectiveConfig) -> GanObjective:
    return build_objective(cfg.loss, cfg.label_smoothing)


def build_feature_matching(cfg: AugmentConfig) -> FeatureMatchingLoss | None:
    """The generator's feature-matching term of the mask-conditioned model; None when off."""
    weight = cfg.pixel_weights[1] if cfg.mask_conditioned else 0.0
    return FeatureMatchingLoss(weight) if weight > 0 else None


def build_patch_discriminator(
    in_channels: int, disc: DiscriminatorConfig, objective: GanObjectiveConfig
) -> PatchDiscriminator | MultiScaleDiscriminator:
    """The PatchGAN judging ``in_channels`` stacked inputs (mask + image, or image + mask);
    ``disc.scales`` > 1: that many, on the input halved per scale (a list of logit maps)."""
    cfg = PatchDiscriminatorConfig(
        in_channels=in_channels,
        base_channels=disc.base_channels,
        layers=disc.layers,
        norm=disc.norm,
        spectral_norm=objective.spectral_norm,
        minibatch_std=objective.minibatch_std,
    )
    return PatchDiscriminator(cfg) if disc.scales == 1 else MultiScaleDiscriminator(cfg, disc.scales)


@dataclass
class GanNetworks:
    generator: nn.Module
    discriminator: nn.Module
    task: GanTask
    generator_config: dict  # what rebuilds the generator: {"kind": ..., **constructor args}


def build_networks(cfg: AugmentConfig, image_size: int, channels: int, num_classes: int) -> GanNetworks:
    mask_ch = mask_channels(num_classes)
    if cfg.model == "pix2pix":
        g_cfg = UNetGeneratorConfig(
            in_channels=mask_ch,
            out_channels=channels,
            base_channels=cfg.pix2pix.base_channels,
            depth=cfg.unet_depth(image_size),
            norm=cfg.pix2pix.norm,
            dropout=cfg.pix2pix.dropout,
            upsample=cfg.pix2pix.upsample,
        )
        generator, kind = UNetGenerator(g_cfg), "pix2pix_unet"
    elif cfg.model == "spade":
        g_cfg = SpadeGeneratorConfig(
            in_channels=mask_ch,
            out_channels=channels,
            base_channels=cfg.spade.base_channels,
            upsamplings=cfg.spade_upsamplings(image_size),
            latent_dim=cfg.spade.latent_dim,
            hidden_channels=cfg.spade.hidden_channels,
            norm=cfg.spade.norm,
        )
        generator, kind = SpadeGenerator(g_cfg), "spade"
    else:
        g_cfg = DcganGeneratorConfig(
            latent_dim=cfg.dcgan.latent_dim,
            out_channels=channels + mask_ch,
            image_size=image_size,
            base_channels=cfg.dcgan.base_channels,
            residual_blocks=cfg.dcgan.residual_blocks,
            norm=cfg.dcgan.norm,
        )
        generator, kind = DcganGenerator(g_cfg), "dcgan"
        discriminator = DcganDiscriminator(
            DcganDiscriminatorConfig(
                in_channels=channels + mask_ch,
                image_size=image_size,
                base_channels=cfg.discriminator.base_channels,
                residual_blocks=cfg.dcgan.residual_blocks,
                norm=cfg.discriminator.norm,
                spectral_norm=cfg.objective.spectral_norm,
                minibatch_std=cfg.objective.minibatch_std,
            )
        )
        task: GanTask = DcganTask(cfg.dcgan.latent_dim)
    if kind != "dcgan":
        # An image drawn from the mask: pix2pix's PatchGAN and task, with the L1 weight of the generator's own
        # block (cfg.pix2pix or cfg.spade). Built after the generator: the init order fixes what a seed gives.
        discriminator = build_patch_discriminator(mask_ch + channels, cfg.discriminator, cfg.objective)
        task = Pix2PixTask(PixelLoss(getattr(cfg, cfg.model).lambda_l1))
    return GanNetworks(generator, discriminator, task, {"kind": kind, **vars(g_cfg)})


def generator_from_config(config: dict) -> nn.Module:
    """Rebuild a generator from ``GanNetworks.generator_config`` (e.g. read from JSON)."""
    args = {k: v for k, v in config.items() if k != "kind"}
    if config["kind"] == "pix2pix_unet":
        return UNetGenerator(UNetGeneratorConfig(**args))
    if config["kind"] == "spade":
        return SpadeGenerator(SpadeGeneratorConfig(**args))
    if config["kind"] == "dcgan":
        return DcganGenerator(DcganGeneratorConfig(**args))
    raise ValueError(f"unknown generator kind {config['kind']!r}")


def build_optimizers(
    generator: nn.Module, discriminator: nn.Module, cfg: AugmentConfig
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    betas = tuple(cfg.betas)
    return (
        torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=betas),
        torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=betas),
    )


def build_loop_settings(cfg: AugmentConfig) -> LoopSettings:
    return LoopSettings(
        steps=cfg.steps,
        log_interval=cfg.log_interval,
        sample_interval=cfg.sample_interval,
        checkpoint_interval=cfg.checkpoint_interval,
        g_interval=cfg.objective.d_steps_per_g,
        guard=GuardSettings(**cfg.guard.model_dump()),
    )
