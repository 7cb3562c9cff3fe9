"""The ``evaluate`` block: which models are compared, how intervals are drawn, how synthetic
images are judged and how the model registry is updated."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ganseg.config.base import StrictModel

VARIANT_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class BootstrapConfig(StrictModel):
    """Percentile bootstrap over test images (the unit of replication is the image)."""

    resamples: int = Field(2000, ge=100, le=1_000_000, description="Bootstrap resamples.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Two-sided interval level.")


class OverlayConfig(StrictModel):
    count: int = Field(4, ge=0, le=64, description="Best and worst test images shown per model (0 = none).")


class SyntheticQualityConfig(StrictModel):
    """Quality of the augment stage's synthetic images against the real training images."""

    enabled: bool = Field(True, description="false = skip FID/KID/IS/mask consistency.")
    max_images: int = Field(
        64, ge=2, le=100_000,
        description="N cap: the synthetic, real train and real held-out sides are each drawn (seeded) to one "
        "N = min(their sizes, max_images), the same N for the synthetic and the reference row; N is reported.",
    )
    kid_subset_size: int = Field(50, ge=2, description="KID subset size (capped at the smaller N).")
    kid_subsets: int = Field(50, ge=1, description="KID subsets averaged.")
    inception_score: bool = Field(True, description="Try IS; reported as not computed (with reason) when it cannot be.")
    batch_size: int = Field(25, ge=1, description="Images per Inception forward pass.")
    inception_weights: Path | None = Field(
        None,
        description="torch-fidelity's Inception weights file (needed for IS); null = its torch hub cache "
        "copy if present, else the offline fid-helper copy (FID/KID only).",
    )


class RegistryConfig(StrictModel):
    enabled: bool = Field(True, description="false = never touch the registry aliases.")
    model_name: str = Field("ganseg-unet", min_length=1, description="Registered model whose aliases are managed.")
    champion_alias: str = Field("champion", min_length=1)
    challenger_alias: str = Field("challenger", min_length=1)
    min_improvement: float = Field(
        0.0, ge=-1, le=1,
        description="Promote only when the lower end of the interval of candidate − champion test Dice "
        "(paired, same images) is above this; 0 = the interval must exclude 0.",
    )


class EvaluateConfig(StrictModel):
    variants: list[str] = Field(
        ["real", "synthetic"],
        min_length=1,
        description="Models to compare, read from models/unet_<variant>.pt, in this order.",
    )
    on_missing: Literal["error", "skip"] = Field(
        "error", description="A listed variant without a model file: stop (error) or report it as missing (skip)."
    )
    baseline: str = Field("real", description="The variant the others are compared with first.")
    threshold: float = Field(0.5, gt=0, lt=1, description="Binary: foreground when sigmoid probability > threshold.")
    batch_size: int = Field(
        32, ge=1, description="Windows per forward pass: test images of the model's patch size or smaller are one "
        "window each; a larger image is covered by overlapping windows.",
    )
    mirror: bool = Field(
        True, description="Test-time mirroring (nnU-Net's): average the probabilities of each window over its "
        "four flips (none, left-right, up-down, both); 4x the forward passes.",
    )
    bootstrap: BootstrapConfig = BootstrapConfig()
    overlays: OverlayConfig = OverlayConfig()
    synthetic_quality: SyntheticQualityConfig = SyntheticQualityConfig()
    registry: RegistryConfig = RegistryConfig()

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not VARIANT_PATTERN.match(name):
                raise ValueError(f"variant {name!r} must be lower-case letters, digits or _ (it names models/unet_<variant>.pt)")
        if len(set(value)) != len(value):
            raise ValueError("variants must not repeat")
        return value

    @model_validator(mode="after")
    def _baseline_listed(self) -> EvaluateConfig:
        if self.baseline not in self.variants:
            raise ValueError(f"baseline {self.baseline!r} must be one of variants {self.variants}")
        return self

