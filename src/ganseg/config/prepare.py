"""The ``prepare`` block: where pairs come from, how they are checked, sized and split."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ganseg.config.base import StrictModel


class SyntheticSourceConfig(StrictModel):
    """Procedural microscopy-like images with exact masks (see docs/data.md)."""

    num_images: int = Field(160, ge=3, le=100_000)
    nuclei_min: int = Field(3, ge=0, description="Fewest nuclei in one image.")
    nuclei_max: int = Field(14, ge=1, description="Most nuclei in one image.")
    radius_min: float = Field(0.05, gt=0, lt=0.5, description="Smallest nucleus radius, fraction of side.")
    radius_max: float = Field(0.12, gt=0, lt=0.5, description="Largest nucleus radius, fraction of side.")
    touching_fraction: float = Field(0.3, ge=0, le=1, description="Share of nuclei placed against another.")
    debris_max: int = Field(4, ge=0, description="Unlabelled bright specks per image, at most.")
    illumination: float = Field(0.45, ge=0, le=1, description="Strength of the uneven background.")
    contrast_min: float = Field(0.15, gt=0, le=1, description="Dimmest nucleus over background.")
    blur_sigma: float = Field(1.4, ge=0, description="Optical blur, pixels at 64 px side.")
    noise_std: float = Field(0.09, ge=0, le=1, description="Sensor noise, fraction of full scale.")
    seed: int | None = Field(
        0, description="Seed of the generated data set, independent of common.seed so that runs of "
        "several seeds see the same images; null = common.seed."
    )

    @model_validator(mode="after")
    def _ordered(self) -> SyntheticSourceConfig:
        if self.nuclei_min > self.nuclei_max:
            raise ValueError("nuclei_min must not exceed nuclei_max")
        if self.radius_min > self.radius_max:
            raise ValueError("radius_min must not exceed radius_max")
        return self


class FolderSourceConfig(StrictModel):
    """A user's folders of images and masks, matched by file stem."""

    images_dir: Path | None = None
    masks_dir: Path | None = None
    unlabeled_dir: Path | None = Field(None, description="Optional images without masks.")
    roi_dir: Path | None = Field(
        None, description="Optional regions of interest, named as the masks (white = inside): pixels "
        "outside count in no loss and no metric (a retina's field of view, an invalid border).",
    )
    binarize: bool = Field(
        True, description="Binarise masks by the documented rule; false = masks must be 0/1 or 0/255."
    )
    threshold: int = Field(127, ge=0, le=254, description="Mask value > threshold is foreground.")
    invert: bool = Field(False, description="Swap foreground and background after binarising.")
    class_colors: list[tuple[int, int, int]] | None = Field(
        None, description="Multi-class RGB masks: colour of class i at index i (0 = background)."
    )
    ignore_value: int | None = Field(
        255, description="Multi-class: label value mapped to background (VOC's border 255)."
    )


class SplitConfig(StrictModel):
    train: float = Field(0.7, ge=0, le=1)
    val: float = Field(0.15, ge=0, le=1)
    test: float = Field(0.15, ge=0, le=1)
    unlabeled: float = Field(
        0.0, ge=0, le=1, description="Share of the labelled pairs written without masks to <out>/unlabeled "
        "(with prepare.folder.unlabeled_dir's images) for semi-supervised fine-tuning; dealt from the "
        "non-test part, so the test split does not depend on it.",
    )
    strata: int = Field(4, ge=1, le=20, description="Foreground-fraction bins to stratify over.")
    test_seed: int | None = Field(
        0, description="Seed of the test split, independent of common.seed so that runs of several "
        "seeds share one test split; null = common.seed (the test split then moves with the seed)."
    )
    test_list: Path | None = Field(
        None, description="A text file of ids (one per line) that form the test split."
    )

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test + self.unlabeled
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test + unlabeled must sum to 1, they sum to {total:g}")
        if self.train <= 0:
            raise ValueError("train must be > 0")
        return self


class ValidationConfig(StrictModel):
    foreground_min: float = Field(0.0, ge=0, le=1, description="Critical: least foreground per mask.")
    foreground_max: float = Field(0.95, ge=0, le=1, description="Critical: most foreground per mask.")
    warn_empty_masks: bool = Field(True, description="Soft: warn when a mask has no foreground.")
    min_side: int = Field(16, ge=1, description="Critical: smallest accepted image side, pixels.")

    @model_validator(mode="after")
    def _ordered(self) -> ValidationConfig:
        if self.foreground_min > self.foreground_max:
            raise ValueError("foreground_min must not exceed foreground_max")
        return self


class PrepareConfig(StrictModel):
    source: Literal["synthetic", "folder"] = "synthetic"
    synthetic: SyntheticSourceConfig = SyntheticSourceConfig()
    folder: FolderSourceConfig = FolderSourceConfig()
    resize_mode: Literal["native", "resize", "pad_crop"] = Field(
        "native",
        description="native: every image keeps its own size (times prepare.scale); resize: squash to "
        "common.image_size square (bilinear image, nearest mask); pad_crop: centre crop when larger, "
        "pad (reflect image, zero mask) when smaller.",
    )
    scale: float = Field(
        1.0, gt=0, le=4,
        description="native: one factor for every image, aspect ratio kept (0.5 halves each side: "
        "objects far larger than a patch, or a slow machine).",
    )
    split: SplitConfig = SplitConfig()
    validation: ValidationConfig = ValidationConfig()

    @model_validator(mode="after")
    def _folder_paths(self) -> PrepareConfig:
        if self.source == "folder" and (self.folder.images_dir is None or self.folder.masks_dir is None):
            raise ValueError("source 'folder' needs folder.images_dir and folder.masks_dir")
        if self.scale != 1.0 and self.resize_mode != "native":
            raise ValueError(f"scale {self.scale:g} applies to resize_mode native only (resize_mode is "
                             f"{self.resize_mode})")
        return self
