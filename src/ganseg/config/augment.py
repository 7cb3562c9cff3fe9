"""The ``augment`` block: the GAN that synthesises labelled pairs, and how it is trained.

``GanObjectiveConfig`` (loss and stabilisers) and ``DiscriminatorConfig`` are separate
models so that adversarial fine-tuning can embed the same blocks in its own params.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ganseg.config.base import StrictModel
from ganseg.errors import ConfigError

NormName = Literal["batch", "instance", "none"]


class GanObjectiveConfig(StrictModel):
    """Adversarial loss and discriminator stabilisers (see docs/augment.md for choices)."""

    loss: Literal["bce", "lsgan", "hinge", "wgan", "wgan_gp"] = Field(
        "bce", description="bce = vanilla / non-saturating; lsgan; hinge; wgan (weight clipping); "
        "wgan_gp (gradient penalty)."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="One-sided: real target = 1 - this (0.1 -> 0.9). bce, lsgan."
    )
    gradient_penalty: float | None = Field(
        None, ge=0, description="WGAN-GP weight on interpolates; null = 10 for wgan_gp, else off."
    )
    r1_gamma: float = Field(0.0, ge=0, description="R1 penalty on real inputs; 0 = off.")
    r1_interval: int = Field(1, ge=1, description="Lazy R1: apply every k steps, scaled by k.")
    weight_penalty: float = Field(0.0, ge=0, description="L2 on discriminator weights; 0 = off.")
    weight_clip: float | None = Field(
        None, ge=0, description="Clamp D parameters to +-c after each step; null = 0.01 for wgan, else off."
    )
    spectral_norm: bool = Field(False, description="Spectral normalisation of every D layer.")
    instance_noise: float = Field(
        0.0, ge=0, le=2, description="Std of noise on D inputs at step 0, annealed to 0; 0 = off."
    )
    image_pool: int = Field(0, ge=0, description="History pool of past fakes for D; 0 = off (pix2pix: 50).")
    minibatch_std: bool = Field(False, description="Minibatch-stddev feature in D (against mode collapse).")
    d_steps_per_g: int = Field(1, ge=1, description="Discriminator steps per generator step (WGAN: 5).")
    diffaugment: tuple[Literal["color", "translation", "cutout"], ...] = Field(
        (), description="DiffAugment policy: differentiable transforms of every D input, real and fake, "
        "in this order (color: image channels only; translation, cutout: the whole stack); [] = off."
    )
    ada_target: float | None = Field(
        None, gt=0, lt=1, description="Adaptive probability (StyleGAN2-ADA): raise p while E[sign D(real)] "
        "is above this (0.6), lower it below; null = every transform on every input (plain DiffAugment)."
    )
    ada_interval: int = Field(4, ge=1, description="Discriminator steps between adjustments of p.")
    ada_ramp_images: int = Field(
        5000, ge=1, description="Real images it takes p to go from 0 to 1 at most (StyleGAN2-ADA: 500k, "
        "for runs of millions of images)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> GanObjectiveConfig:
        if len(set(self.diffaugment)) < len(self.diffaugment):
            raise ValueError(f"diffaugment lists a policy twice: {self.diffaugment}; name each once")
        if self.ada_target is not None and not self.diffaugment:
            raise ValueError("ada_target adapts the probability of the diffaugment policy, which is empty; "
                             "list policies in diffaugment or set ada_target to null")
        if self.label_smoothing and self.loss not in ("bce", "lsgan"):
            raise ValueError(f"label_smoothing applies to bce and lsgan, not {self.loss}; set it to 0")
        if self.loss == "wgan_gp" and self.gradient_penalty == 0:
            raise ValueError("loss wgan_gp needs gradient_penalty > 0 (or null for 10)")
        if self.loss == "wgan" and self.weight_clip == 0:
            raise ValueError("loss wgan needs weight_clip > 0 (or null for 0.01); use wgan_gp for a penalty")
        return self

    @property
    def gradient_penalty_weight(self) -> float:
        if self.gradient_penalty is not None:
            return self.gradient_penalty
        return 10.0 if self.loss == "wgan_gp" else 0.0

    @property
    def weight_clip_limit(self) -> float:
        if self.weight_clip is not None:
            return self.weight_clip
        return 0.01 if self.loss == "wgan" else 0.0


class DiscriminatorConfig(StrictModel):
    base_channels: int = Field(16, ge=4, le=512, description="Width of the first conv.")
    layers: int = Field(3, ge=1, le=6, description="PatchGAN stride-2 convs (3 = 70x70 patches).")
    norm: NormName = Field("instance", description="instance | batch | none (none or instance for penalties).")
    scales: int = Field(
        1, ge=1, le=4, description="PatchGANs on the input downsampled by 2 per scale, losses averaged "
        "(pix2pixHD: 2-3); 1 = one PatchGAN.",
    )


class Pix2PixConfig(StrictModel):
    base_channels: int = Field(16, ge=4, le=512, description="U-Net generator width at full size.")
    depth: int | None = Field(None, ge=2, le=10, description="Down-samplings; null = log2(size) - 2.")
    norm: NormName = "instance"
    dropout: float = Field(0.5, ge=0, lt=1, description="Decoder dropout (pix2pix's noise source).")
    upsample: Literal["transpose", "resize"] = Field(
        "resize",
        description="resize: nearest x2 + conv3x3 (no checkerboard artifacts, about 1.8x the generator's "
        "FLOPs); transpose: conv-transpose 4x4/2 (pix2pix).",
    )
    lambda_l1: float = Field(100.0, ge=0, description="Weight of the L1 pixel loss.")
    feature_matching: float = Field(
        0.0, ge=0, description="Weight of the discriminator feature-matching L1 (pix2pixHD: 10); 0 = off."
    )


class SpadeConfig(StrictModel):
    """SPADE generator (ganseg.gan.spade); the discriminator, mask sampler and task are pix2pix's."""

    base_channels: int = Field(
        8, ge=4, le=512, description="Generator width at full size (8: the U-Net's 16 at each resolution "
        "below, as the U-Net's first conv already halves the size).",
    )
    upsamplings: int | None = Field(None, ge=1, le=10, description="Up-samplings; null = log2(size) - 2.")
    latent_dim: int = Field(16, ge=0, le=512, description="Noise channels per image; 0 = one image per mask.")
    hidden_channels: int = Field(32, ge=4, le=512, description="Width of the conv that reads the mask per block.")
    norm: Literal["instance", "batch"] = Field("instance", description="The parameter-free norm SPADE modulates.")
    lambda_l1: float = Field(10.0, ge=0, description="Weight of the L1 pixel loss (SPADE: none; 100 drowns the noise).")
    feature_matching: float = Field(10.0, ge=0, description="Weight of the discriminator feature-matching L1 (SPADE: 10).")


class DcganConfig(StrictModel):
    latent_dim: int = Field(64, ge=1, le=1024)
    base_channels: int = Field(32, ge=4, le=512, description="Generator width at full size.")
    residual_blocks: int = Field(0, ge=0, le=8, description="Residual blocks per resolution (G and D).")
    norm: NormName = Field("batch", description="Generator norm (DCGAN: batch).")


class MaskSamplerConfig(StrictModel):
    flips: bool = Field(True, description="Random flips and 90-degree rotations.")
    affine_p: float = Field(0.7, ge=0, le=1)
    scale: tuple[float, float] = Field((0.85, 1.15), description="Affine zoom range.")
    rotate: float = Field(45.0, ge=0, le=180, description="Affine rotation, degrees either way.")
    translate: float = Field(0.1, ge=0, le=0.5, description="Affine shift, fraction of the side.")
    elastic_p: float = Field(0.5, ge=0, le=1)
    elastic_alpha: float = Field(1.0, ge=0, description="Elastic displacement, fraction of the side.")
    elastic_sigma: float = Field(0.08, gt=0, description="Elastic smoothness, fraction of the side.")
    crop_p: float = Field(0.2, ge=0, le=1)
    crop_scale: tuple[float, float] = Field((0.6, 1.0), description="Area kept by the random crop.")
    paste_p: float = Field(0.5, ge=0, le=1, description="Chance to paste objects from a donor mask.")
    paste_max: int = Field(3, ge=0, le=100, description="Most objects pasted into one mask.")

    @model_validator(mode="after")
    def _ranges(self) -> MaskSamplerConfig:
        for name in ("scale", "crop_scale"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be [low, high] with 0 < low <= high")
        if self.crop_scale[1] > 1:
            raise ValueError("crop_scale must not exceed 1")
        return self


class GuardConfig(StrictModel):
    max_restarts: int = Field(3, ge=0, description="Restores from the last checkpoint before giving up.")
    lr_factor: float = Field(0.5, gt=0, lt=1, description="Both learning rates times this per restore.")
    collapse_window: int = Field(
        0, ge=0, description="Steps of near-perfect D accuracy that count as collapse; 0 = off."
    )
    collapse_accuracy: float = Field(0.99, gt=0.5, le=1)


class ConsistencyConfig(StrictModel):
    """The reference segmenter behind ``mask_consistency_dice`` (see docs/augment.md)."""

    steps: int = Field(200, ge=0, description="Training steps on the real pairs; 0 = no consistency score.")
    base_channels: int = Field(8, ge=4, le=256)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(2e-3, gt=0)


class FilterConfig(StrictModel):
    """Which synthetic pairs are written: those the reference segmenter finds on their masks."""

    min_relative_dice: float = Field(
        0.5, ge=0, le=1, description="Drop a pair whose consistency Dice (reference segmenter's prediction on "
        "its image vs its mask) is below this fraction of the segmenter's Dice on real validation patches "
        "(reference_val_dice); 0 = keep every pair.",
    )


class QualityConfig(StrictModel):
    """FID / KID of the synthetic images against the real training images (metrics library)."""

    fid_kid: bool = Field(True, description="false = skip FID and KID (Inception on CPU is slow).")
    max_images: int = Field(100, ge=2, description="At most this many images per side (seeded); N is reported.")
    kid_subset_size: int = Field(50, ge=2, description="KID subset size (capped at the smaller N).")
    kid_subsets: int = Field(50, ge=1)
    batch_size: int = Field(25, ge=1, description="Images per Inception forward pass.")


# "auto" patch sizes stop here: beyond it a step costs more than the context it adds buys (issue 16).
AUTO_PATCH_CAP = 256
# num_samples "auto": this many synthetic pairs per labelled training image (the issue asks for a
# pool of at least 20x the labelled set), at most AUTO_SAMPLES_CAP (disk, and the train stage
# keeps the pool in memory: 10,000 pairs of 256 px grayscale are 1.3 GB).
AUTO_SAMPLES_PER_IMAGE = 20
AUTO_SAMPLES_CAP = 10_000


class AugmentConfig(StrictModel):
    model: Literal["pix2pix", "spade", "dcgan"] = "pix2pix"
    patch_size: Annotated[int, Field(ge=8, le=4096)] | Literal["auto"] = Field(
        "auto", description="Side of the square patches the GAN trains on and synthesises; auto = the "
        "largest size the networks take that fits the median shorter side of the training images, at "
        f"most {AUTO_PATCH_CAP}.",
    )
    foreground_share: float = Field(
        0.33, ge=0, le=1, description="Share of training patches centred on a foreground pixel (nnU-Net: 0.33)."
    )
    num_samples: Annotated[int, Field(ge=1, le=1_000_000)] | Literal["auto"] = Field(
        "auto", description=f"Synthetic pairs to synthesise and score (the filter writes those that fit); auto = "
        f"{AUTO_SAMPLES_PER_IMAGE} x the training pairs, at most {AUTO_SAMPLES_CAP}.",
    )
    steps: int = Field(600, ge=1, description="Training iterations (one batch each).")
    batch_size: int = Field(16, ge=1, le=4096)
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas for G and D.")
    ema_decay: float = Field(0.99, ge=0, lt=1, description="EMA of G used for samples; 0 = last weights.")
    augment_real: bool = Field(True, description="Random flips / 90-degree turns of real pairs in training.")
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="Memory layout of conv tensors; auto = on for CUDA only."
    )
    log_interval: int = Field(10, ge=1, description="Steps per logged mean (MLflow, plots file).")
    sample_interval: int = Field(100, ge=0, description="Steps between sample grids; 0 = none.")
    checkpoint_interval: int = Field(100, ge=1, description="Steps between resumable checkpoints.")
    grid_samples: int = Field(16, ge=1, le=256, description="Fixed masks / noise shown in each grid.")
    pix2pix: Pix2PixConfig = Pix2PixConfig()
    spade: SpadeConfig = SpadeConfig()
    dcgan: DcganConfig = DcganConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    # DiffAugment on by default here (a few dozen training images), off in finetune's copy.
    objective: GanObjectiveConfig = GanObjectiveConfig(diffaugment=("color", "translation", "cutout"))
    guard: GuardConfig = GuardConfig()
    mask_sampler: MaskSamplerConfig = MaskSamplerConfig()
    consistency: ConsistencyConfig = ConsistencyConfig()
    filter: FilterConfig = FilterConfig()
    quality: QualityConfig = QualityConfig()

    @model_validator(mode="after")
    def _intervals(self) -> AugmentConfig:
        for name in ("sample_interval", "checkpoint_interval"):
            value = getattr(self, name)
            if value % self.log_interval:
                raise ValueError(f"{name} ({value}) must be a multiple of log_interval ({self.log_interval})")
        if self.model == "dcgan" and self.discriminator.scales > 1:
            raise ValueError("discriminator.scales > 1 stacks PatchGANs (pix2pix, spade); the dcgan "
                             "discriminator has one scale: set it to 1")
        needs_independent = self.objective.gradient_penalty_weight > 0 or self.objective.r1_gamma > 0
        if needs_independent and self.discriminator.norm == "batch":
            raise ValueError(
                "discriminator.norm batch mixes samples, which breaks per-sample gradient "
                "penalties; use instance or none"
            )
        if self.filter.min_relative_dice > 0 and self.consistency.steps == 0:
            raise ValueError("filter.min_relative_dice scores pairs with the reference segmenter, which "
                             "consistency.steps: 0 switches off; set consistency.steps > 0 or the filter to 0")
        return self

    def check_against(self, patch_size: int) -> None:
        """Settings that depend on the patch size; raises ConfigError naming the key."""
        problem = self.size_problem(patch_size)
        if problem is not None:
            raise ConfigError(problem)

    def size_problem(self, patch_size: int) -> str | None:
        """Why the networks cannot take ``patch_size`` px patches, or None when they can."""
        if self.mask_conditioned:
            depth = self.generator_depth(patch_size)
            key = "augment.pix2pix.depth" if self.model == "pix2pix" else "augment.spade.upsamplings"
            if patch_size % 2**depth:
                return (f"{key}: {depth} {'down' if self.model == 'pix2pix' else 'up'}-samplings need "
                        f"augment.patch_size divisible by {2**depth}, got {patch_size}")
            scales = self.discriminator.scales
            if patch_size // 2 ** (self.discriminator.layers + scales - 1) < 4:
                at_scale = f" at the coarsest of {scales} scales" if scales > 1 else ""
                return (f"augment.discriminator.layers: {self.discriminator.layers} halvings leave "
                        f"under 4 px of a {patch_size} px patch{at_scale}; use fewer layers"
                        f"{' or scales' if scales > 1 else ''} or a larger augment.patch_size")
            return None
        if patch_size < 8 or patch_size & (patch_size - 1):
            return f"augment.model dcgan needs a power-of-two augment.patch_size >= 8, got {patch_size}"
        return None

    @property
    def mask_conditioned(self) -> bool:
        """Whether the generator paints masks (pix2pix, spade: mask sampler, PatchGAN, L1)."""
        return self.model in ("pix2pix", "spade")

    @property
    def latent_dim(self) -> int:
        """Noise values per sample the generator takes: spade's and dcgan's; 0 for pix2pix."""
        return {"spade": self.spade.latent_dim, "dcgan": self.dcgan.latent_dim}.get(self.model, 0)

    @property
    def pixel_weights(self) -> tuple[float, float]:
        """(lambda_l1, feature_matching) of the mask-conditioned model in use."""
        block = self.spade if self.model == "spade" else self.pix2pix
        return block.lambda_l1, block.feature_matching

    def unet_depth(self, image_size: int) -> int:
        return self.pix2pix.depth or max(2, int(math.log2(image_size)) - 2)

    def spade_upsamplings(self, image_size: int) -> int:
        return self.spade.upsamplings or max(2, int(math.log2(image_size)) - 2)

    def generator_depth(self, image_size: int) -> int:
        """Halvings the mask-conditioned generator needs the patch side divisible by."""
        return self.spade_upsamplings(image_size) if self.model == "spade" else self.unet_depth(image_size)


def resolve_num_samples(cfg: AugmentConfig, num_train: int) -> int:
    """``augment.num_samples``, with "auto" resolved: :data:`AUTO_SAMPLES_PER_IMAGE` x the
    ``num_train`` training pairs, at most :data:`AUTO_SAMPLES_CAP`. An explicit int wins."""
    if cfg.num_samples != "auto":
        return cfg.num_samples
    return max(1, min(AUTO_SAMPLES_PER_IMAGE * num_train, AUTO_SAMPLES_CAP))


def resolve_patch_size(cfg: AugmentConfig, image_sizes: Sequence[tuple[int, int]]) -> int:
    """``augment.patch_size``, with "auto" resolved from the training images' (height, width).

    auto: the largest side the networks take (:meth:`AugmentConfig.size_problem`: a multiple
    of 2^depth for pix2pix, a power of two for dcgan) that is at most the median shorter side
    of the images and :data:`AUTO_PATCH_CAP`; when even the smallest valid side exceeds that,
    the smallest valid side (images smaller than it are padded). An explicit int is returned
    as it is (``check_against`` judges it).
    """
    if cfg.patch_size != "auto":
        return cfg.patch_size
    limit = min(int(statistics.median(min(size) for size in image_sizes)), AUTO_PATCH_CAP)
    fitting = [side for side in range(limit, 7, -1) if cfg.size_problem(side) is None]
    if fitting:
        return fitting[0]
    return next(side for side in range(limit + 1, 4 * AUTO_PATCH_CAP) if cfg.size_problem(side) is None)
