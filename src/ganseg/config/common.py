"""The shared block: settings every stage reads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ganseg.config.base import StrictModel


class CommonConfig(StrictModel):
    seed: int = Field(42, ge=0, description="Seed for every random choice of every stage.")
    image_size: int = Field(
        64, ge=16, le=4096,
        description="Side of the embedded procedural images; with prepare.resize_mode resize or pad_crop, "
        "the square side every image is brought to. Native-size data ignore it.",
    )
    channels: Literal[1, 3] = Field(1, description="Image channels after prepare (gray or RGB).")
    num_classes: int = Field(
        1,
        ge=1,
        le=255,
        description="1 = binary (foreground vs background, one sigmoid output); K >= 2 = label "
        "maps with values 0..K-1, 0 = background, K softmax outputs.",
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = fp32 on CPU, bf16 (or fp16) autocast on CUDA."
    )
    tracking_required: bool = Field(
        False,
        description="If true a stage fails when MLflow is unreachable; if false it warns once "
        "and carries on, its own outputs intact.",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda", "mps") or (
            value.startswith("cuda:") and value[5:].isdigit()
        ):
            return value
        raise ValueError("must be auto, cpu, cuda or cuda:N")

    @property
    def binary(self) -> bool:
        return self.num_classes == 1
