"""The ``predict`` block: segmenting new images of any size with a trained model."""

from __future__ import annotations

from pydantic import Field

from ganseg.config.base import StrictModel


class PredictConfig(StrictModel):
    """Segmenting new images of any size with a trained model (``python -m pipelines predict``)."""

    tile_size: int | None = Field(
        None, ge=16, le=4096,
        description="Tile side, pixels; null = the patch size the model was trained on (its image size for "
        "older models).",
    )
    overlap: float = Field(
        0.25, ge=0, lt=1,
        description="Fraction of the tile shared with each neighbour; overlapping tiles are blended with "
        "Gaussian weights (the tile centre counts most).",
    )
    scale: float = Field(
        1.0,
        gt=0,
        le=8,
        description="Resize inputs by this factor before segmenting (masks come back at the input size); "
        "e.g. 0.25 when training images were shrunk 4x by prepare's resize.",
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="Binary: foreground when probability > threshold.")
    mirror: bool = Field(
        True, description="Test-time mirroring (nnU-Net's): average the probabilities of each window over its "
        "four flips (none, left-right, up-down, both); 4x the forward passes.",
    )
    batch_size: int = Field(16, ge=1, description="Tiles per forward pass.")
    overlays: bool = Field(True, description="Also write an overlay PNG per image.")
