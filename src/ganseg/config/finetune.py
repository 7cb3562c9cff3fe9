"""The ``finetune`` block: adversarial fine-tuning of a trained U-Net (docs/finetune.md).

The U-Net becomes the generator of a segmentation GAN. Its loss is

    seg_weight x segmentation loss (BCE + Dice) + adv_weight x adversarial loss
    [+ unlabeled.adv_weight x adversarial loss on unlabeled images
     + unlabeled.self_training_weight x self-training loss on the pixels D trusts]

The GAN objective and the discriminator stabilisers are the augment stage's blocks
(:class:`GanObjectiveConfig`), embedded here so both stages read the same keys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ganseg.config.augment import DiscriminatorConfig, GanObjectiveConfig
from ganseg.config.base import StrictModel
from ganseg.config.train import AugmentationConfig, EarlyStoppingConfig, PlateauConfig
from ganseg.errors import ConfigError


class FinetuneDiscriminatorConfig(DiscriminatorConfig):
    """The augment stage's discriminator keys plus which network judges the pairs."""

    base_channels: int = Field(16, ge=4, le=512, description="Width of the first conv.")
    kind: Literal["patchgan", "pixel"] = Field(
        "patchgan",
        description="patchgan = one logit per patch of the (image, mask) pair (pix2pix); pixel = a "
        "fully convolutional confidence map, one logit per pixel (Hung et al. 2018).",
    )


class UnlabeledConfig(StrictModel):
    """Semi-supervised mode: images without masks teach the U-Net through the discriminator."""

    enabled: bool = Field(True, description="Use unlabeled images (adversarial + self-training losses).")
    source: Literal["auto", "folder", "train"] = Field(
        "auto",
        description="folder = prepare's unlabeled folder (data/prepared/unlabeled); train = the "
        "training images with their labels hidden; auto = folder when it exists, else train.",
    )
    labeled_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of the training pairs that keep their masks (seeded choice); the others "
        "lose them and join the unlabeled pool. 1 = every pair stays labelled.",
    )
    batch_size: int | None = Field(None, ge=1, description="Unlabeled images per step; null = finetune.batch_size.")
    adv_weight: float = Field(0.001, ge=0, description="Adversarial loss on unlabeled predictions (lambda_semi_adv).")
    self_training_weight: float = Field(
        0.1, ge=0, description="Cross-entropy towards the U-Net's own hard labels on trusted pixels (lambda_semi)."
    )
    confidence_threshold: float = Field(
        0.2, ge=0, le=1, description="A pixel is trusted when the discriminator's confidence exceeds this (T_semi)."
    )
    warmup_steps: int = Field(
        50, ge=0, description="Labelled-only steps before the unlabeled terms switch on (D learns first)."
    )


class FinetuneConfig(StrictModel):
    patch_size: int | Literal["auto"] = Field(
        "auto", description="Side of the training patches; auto = the patch the starting model was trained at.",
    )
    foreground_share: float = Field(0.33, ge=0, le=1, description="Share of patches centred on foreground, as train's.")
    epochs: int = Field(3, ge=0, le=100_000, description="0 = only score the starting model and keep it.")
    steps: int | None = Field(
        300, ge=0, le=100_000_000, description="Length in optimizer steps (as train.steps); null = epochs."
    )
    val_interval: int | None = Field(
        50, ge=1, description="Steps between validations (as train.val_interval); null = one epoch."
    )
    batch_size: int = Field(16, ge=1, description="Labelled pairs per step.")
    loss: Literal["bce", "dice", "bce_dice"] = Field("bce_dice", description="The segmentation loss (as train.loss).")
    seg_weight: float = Field(1.0, ge=0, description="Weight of the segmentation loss.")
    adv_weight: float = Field(
        0.01,
        ge=0,
        description="lambda_adv: weight of the adversarial loss. The seed design's 'adversarial + "
        "100 x pixel-wise' is seg_weight 100, adv_weight 1, the same direction as 1 / 0.01.",
    )
    optimizer: Literal["adam", "adamw", "rmsprop"] = Field("adamw", description="U-Net optimiser.")
    lr: float = Field(3e-4, gt=0, le=10, description="U-Net learning rate (a tenth of train.lr: it continues).")
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["cosine", "plateau", "none"] = Field("cosine", description="U-Net LR schedule, as train.scheduler.")
    plateau: PlateauConfig = PlateauConfig()
    grad_clip: float | None = Field(1.0, gt=0, description="Max global grad norm of the U-Net; null = off.")
    lr_d: float = Field(1e-4, gt=0, le=10, description="Discriminator learning rate (Adam).")
    betas_d: tuple[float, float] = Field((0.5, 0.999), description="Discriminator Adam betas.")
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig(patience=0)
    discriminator: FinetuneDiscriminatorConfig = FinetuneDiscriminatorConfig()
    objective: GanObjectiveConfig = GanObjectiveConfig()
    unlabeled: UnlabeledConfig = UnlabeledConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes; 0 = in-process.")
    val_batch_size: int = Field(64, ge=1)
    channels_last: Literal["auto"] | bool = Field("auto", description="As train.channels_last.")
    resume: bool = Field(True, description="Continue from checkpoints/finetune_<variant>/ if it matches.")
    overlay_images: int = Field(8, ge=0, le=64, description="Validation images in the overlay grid.")

    @model_validator(mode="after")
    def _consistent(self) -> FinetuneConfig:
        low, high = self.betas_d
        if not (0 <= low < 1 and 0 <= high < 1):
            raise ValueError("betas_d must be two numbers in [0, 1)")
        needs_independent = self.objective.gradient_penalty_weight > 0 or self.objective.r1_gamma > 0
        if needs_independent and self.discriminator.norm == "batch":
            raise ValueError(
                "discriminator.norm batch mixes samples, which breaks per-sample gradient "
                "penalties; use instance or none"
            )
        if self.objective.minibatch_std and self.discriminator.kind == "pixel":
            raise ValueError("objective.minibatch_std applies to the patchgan discriminator only")
        if self.discriminator.scales > 1 and self.discriminator.kind == "pixel":
            raise ValueError("discriminator.scales > 1 applies to the patchgan discriminator only")
        return self

    def check_against(self, patch_size: int) -> None:
        """Settings that depend on the patch side; raises ConfigError naming the key."""
        side = patch_size // 2 ** (self.discriminator.layers + self.discriminator.scales - 1)
        smallest = 4 if self.discriminator.kind == "patchgan" else 1
        if side < smallest:
            raise ConfigError(
                f"finetune.discriminator.layers: {self.discriminator.layers} halvings leave {side} px "
                f"of a {patch_size} px patch; use fewer layers"
            )

    @model_validator(mode="after")
    def _patch(self) -> FinetuneConfig:
        if isinstance(self.patch_size, int) and self.patch_size < 16:
            raise ValueError("patch_size must be auto or an integer >= 16")
        return self
