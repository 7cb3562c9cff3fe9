"""The ``train`` block: the U-Net, its loss and optimiser, augmentation, speed and resume.

See docs/training.md for what each knob does and how the defaults were chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ganseg.config.base import StrictModel


class ModelConfig(StrictModel):
    encoder: Literal["unet", "resnet18", "resnet34", "resnet50"] = Field(
        "unet", description="unet = the plain U-Net encoder; resnetXX = a torchvision ResNet encoder."
    )
    depth: int = Field(4, ge=1, le=8, description="Down-sampling steps of the plain U-Net.")
    base_width: int = Field(16, ge=2, le=512, description="Channels at full resolution; x2 per level.")
    upsampling: Literal["bilinear", "transpose"] = "bilinear"
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the bottleneck.")
    pretrained: bool = Field(
        False,
        description="ResNet encoders: start from ImageNet weights found in pretrained_path or the "
        "torch cache (never downloaded); none found = a warning and training from scratch.",
    )
    pretrained_path: Path | None = Field(None, description="A torchvision ResNet state dict file.")

    @model_validator(mode="after")
    def _pretrained_needs_resnet(self) -> ModelConfig:
        if (self.pretrained or self.pretrained_path is not None) and self.encoder == "unet":
            raise ValueError("pretrained weights need a ResNet encoder (set encoder: resnet18)")
        return self


class AffineConfig(StrictModel):
    p: float = Field(0.3, ge=0, le=1, description="Probability per sample.")
    scale: tuple[float, float] = Field((0.9, 1.1), description="Zoom range.")
    rotate: float = Field(15.0, ge=0, le=180, description="Rotation range, +/- degrees.")
    translate: float = Field(0.05, ge=0, le=0.5, description="Shift range, +/- fraction of the side.")


class ElasticConfig(StrictModel):
    p: float = Field(0.25, ge=0, le=1)
    alpha: float = Field(20.0, ge=0, description="Displacement scale, pixels (albumentations alpha).")
    sigma: float = Field(5.0, ge=1, description="Smoothness of the displacement field, pixels.")


class BrightnessContrastConfig(StrictModel):
    p: float = Field(0.5, ge=0, le=1)
    brightness: float = Field(0.15, ge=0, le=1, description="+/- fraction of full scale.")
    contrast: float = Field(0.15, ge=0, le=1, description="+/- fraction.")


class NoiseConfig(StrictModel):
    p: float = Field(0.25, ge=0, le=1)
    std: float = Field(0.03, ge=0, le=1, description="Gaussian noise std, fraction of full scale.")


class AugmentationConfig(StrictModel):
    """Applied identically to image and mask (geometry) or to the image only (intensity)."""

    hflip: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip.")
    vflip: float = Field(0.5, ge=0, le=1, description="Probability of a vertical flip.")
    rotate90: float = Field(0.5, ge=0, le=1, description="Probability of a random multiple of 90 deg.")
    affine: AffineConfig = AffineConfig()
    elastic: ElasticConfig = ElasticConfig()
    brightness_contrast: BrightnessContrastConfig = BrightnessContrastConfig()
    noise: NoiseConfig = NoiseConfig()


class PlateauConfig(StrictModel):
    patience: int = Field(4, ge=0, description="Epochs without val Dice gain before the LR drops.")
    factor: float = Field(0.5, gt=0, lt=1)


class EarlyStoppingConfig(StrictModel):
    patience: int = Field(12, ge=0, description="Epochs without val Dice gain before stopping; 0 = off.")
    min_delta: float = Field(0.001, ge=0, description="Smallest val Dice gain that counts.")


Auto = Literal["auto"]


class TrainConfig(StrictModel):
    model: ModelConfig = ModelConfig()
    patch_size: int | Auto = Field(
        "auto", description="Side of the square patches cut from the full-size images for training; auto = "
        "planned from prepare's data fingerprint and the device (ganseg.planning).",
    )
    foreground_share: float = Field(
        0.33, ge=0, le=1, description="Share of patches centred on a foreground pixel (nnU-Net: one third).",
    )
    epochs: int = Field(40, ge=1, le=100_000, description="Passes over the training pairs (when steps is null).")
    steps: int | Auto | None = Field(
        "auto",
        description="Length in optimizer steps, whatever the number of images; auto = as many as "
        "time_budget_minutes allows on this device (measured); null = epochs x batches per epoch.",
    )
    val_interval: int | Auto | None = Field(
        "auto",
        description="Steps between validations (best model, early stopping, LR schedule, checkpoint); "
        "auto = planned with the steps; null = one epoch.",
    )
    val_share: Annotated[float, Field(gt=0, le=1)] | Auto = Field(
        "auto", description="Share of the validation pixels each validation scores (a fixed seeded subset, >= 10 "
        "images); auto = all unless that leaves < 10 validations in 20% of the budget (docs/training.md).",
    )
    time_budget_minutes: float = Field(
        2.0, gt=0, le=100_000, description="With steps auto: the training time to plan for, validations included.",
    )
    batch_size: int | Auto = Field("auto", description="Per process (DDP: per GPU); auto = planned for the device.")
    loss: Literal["bce", "dice", "bce_dice"] = Field(
        "bce_dice",
        description="bce = the cross-entropy term (sigmoid BCE when binary, softmax CE when "
        "multi-class); dice = soft Dice; bce_dice = their sum.",
    )
    optimizer: Literal["adam", "adamw", "rmsprop"] = "adamw"
    lr: float = Field(3e-3, gt=0, le=10)
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["cosine", "plateau", "none"] = Field(
        "cosine", description="cosine: anneal to lr/100 over the steps; plateau: drop on stalled val Dice."
    )
    plateau: PlateauConfig = PlateauConfig()
    grad_clip: float | None = Field(1.0, gt=0, description="Max global grad norm; null = no clipping.")
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    synthetic_ratio: float = Field(
        0.5,
        ge=0,
        le=100,
        description="With --synthetic DIR: synthetic pairs drawn per real pair in every epoch "
        "(0.5 = each epoch sees all real pairs plus half as many synthetic ones). 0 = real only.",
    )
    synthetic_schedule: Literal["mixed", "pretrain"] = Field(
        "mixed",
        description="With --synthetic DIR: mixed = synthetic pairs in every epoch at synthetic_ratio; pretrain = "
        "the first pretrain_share of the steps on synthetic pairs only, the rest on real pairs only (same "
        "epoch length, plan and validations as mixed).",
    )
    pretrain_share: float = Field(
        0.5, gt=0, lt=1, description="synthetic_schedule pretrain: share of the optimizer steps on synthetic pairs.",
    )
    augmentation: AugmentationConfig = AugmentationConfig()
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes; 0 = in-process.")
    val_batch_size: int = Field(64, ge=1)
    channels_last: Literal["auto"] | bool = Field(
        "auto", description="auto = true on CUDA, false on CPU (measured slower there, see benchmarks/)."
    )
    compile: bool = Field(False, description="torch.compile the model (minutes of warm-up on CPU).")
    cudnn_benchmark: bool = Field(True, description="CUDA only: let cuDNN pick the fastest kernels.")
    resume: bool = Field(True, description="Continue from checkpoints/train_<variant>/ if it matches.")
    overlay_images: int = Field(8, ge=0, le=64, description="Validation images in the MLflow overlay grid.")

    @model_validator(mode="after")
    def _ordered_ranges(self) -> TrainConfig:
        for key in ("patch_size", "steps", "val_interval", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, int) and value < (16 if key == "patch_size" else 1):
                raise ValueError(f"{key} must be auto or an integer >= {16 if key == 'patch_size' else 1}")
        if isinstance(self.steps, int) and isinstance(self.val_interval, int) and self.steps < self.val_interval:
            raise ValueError(f"steps ({self.steps}) is smaller than val_interval ({self.val_interval}): "
                             "the run would end before its first validation")
        low, high = self.augmentation.affine.scale
        if not 0 < low <= high:
            raise ValueError("augmentation.affine.scale must be [low, high] with 0 < low <= high")
        return self
