"""Running a loaded model: batches of test images, and single images of any size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganseg.evaluation.models import SegmentationModel, images_to_float
from ganseg.evaluation.tiling import logits_to_probabilities, predict_tiled


@torch.no_grad()
def predict_probabilities(model: SegmentationModel, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float probabilities (N, K, H, W), whole images at once."""
    chunks = [
        logits_to_probabilities(model.logits(images_to_float(images[start : start + batch_size])))
        for start in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks)


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
) -> torch.Tensor:
    """One uint8 image (C, H, W) of any size -> probabilities (K, H, W) at its own size.

    With ``scale != 1`` the image is resized first (antialiased when shrinking) and the
    probabilities are resized back, so the network sees objects at its training scale.
    """
    height, width = image.shape[-2:]
    pixels = images_to_float(image[None])  # (1, C, H, W)
    if scale != 1.0:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    probs = predict_tiled(model.logits, pixels[0], tile=tile, overlap=overlap, batch_size=batch_size)
    if probs.shape[-2:] != (height, width):
        probs = F.interpolate(probs[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return probs
