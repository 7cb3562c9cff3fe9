"""Running a loaded model on test images or on single images of any size, through the one
sliding window of :mod:`ganseg.inference`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganseg.evaluation.models import SegmentationModel, images_to_float
from ganseg.inference import segment_probabilities


@torch.no_grad()
def predict_probabilities(
    model: SegmentationModel, images: torch.Tensor, batch_size: int, tile: int | None = None, overlap: float = 0.25
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float probabilities (N, K, H, W) at native size.

    ``tile`` defaults to the size the model was trained at (else the images' own size): an
    image no larger than that is one window, exactly whole-image inference; a larger one is
    covered by overlapping windows. Windows of all images share batches of ``batch_size``.
    """
    height, width = images.shape[-2:]
    return segment_probabilities(
        model.network, images, num_classes=model.num_classes, tile=tile or model.image_size or (height, width),
        overlap=overlap, batch_size=batch_size, device=model.device, dtype=model.dtype,
        name=f"test images for {model.source}",
    )


def probabilities_to_labels(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """(..., K, H, W) -> uint8 labels (..., H, W): ``p > threshold`` when K == 1, argmax otherwise."""
    if probs.shape[-3] == 1:
        return (probs[..., 0, :, :] > threshold).to(torch.uint8)
    return probs.argmax(dim=-3).to(torch.uint8)


@torch.no_grad()
def segment_image(
    model: SegmentationModel,
    image: torch.Tensor,
    tile: int,
    overlap: float,
    scale: float = 1.0,
    batch_size: int = 16,
    name: str = "image",
) -> torch.Tensor:
    """One uint8 image (C, H, W) of any size -> probabilities (K, H, W) at its own size.

    With ``scale != 1`` the image is resized first (antialiased when shrinking) and the
    probabilities are resized back, so the network sees objects at its training scale.
    """
    height, width = image.shape[-2:]
    pixels = images_to_float(image[None])  # (1, C, H, W)
    if scale != 1.0:
        pixels = F.interpolate(
            pixels, size=scaled_size((height, width), scale), mode="bilinear", align_corners=False, antialias=scale < 1
        )
    probs = segment_probabilities(
        model.network, pixels[0], num_classes=model.num_classes, tile=tile, overlap=overlap,
        batch_size=batch_size, device=model.device, dtype=model.dtype, name=name,
    )
    if probs.shape[-2:] != (height, width):
        probs = F.interpolate(probs[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return probs


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(height, width) the network sees after resizing by ``scale`` (at least 1 pixel)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
