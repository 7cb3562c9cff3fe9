"""Running a loaded model on test images or on single images of any size, through the one
sliding window of :mod:`ganseg.inference`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ganseg.errors import DataError
from ganseg.evaluation.models import SegmentationModel, images_to_float
from ganseg.inference import check_memory, segment_each, segment_probabilities


@torch.no_grad()
def predict_labels(
    model: SegmentationModel,
    images: Sequence[torch.Tensor],
    batch_size: int,
    threshold: float,
    overlap: float = 0.25,
    names: Sequence[str] | None = None,
    mirror: bool = False,
) -> list[torch.Tensor]:
    """uint8 (C, H, W) per image, sizes differing -> uint8 labels (H, W) per image, at its size.

    Windows are the model's patch size (else each image's own size: whole-image inference): an
    image no larger is one window, exactly as at training time; a larger one is covered by
    overlapping windows, ``batch_size`` per forward pass. Only one group of same-size images
    has probability maps at a time; what is kept are the labels. ``names`` (the image files)
    name an image in errors; ``mirror`` turns on test-time mirroring (4 flips averaged).
    """
    probabilities = segment_each(
        model.network, images, tile=model.patch_size, names=names, num_classes=model.num_classes,
        overlap=overlap, batch_size=batch_size, device=model.device, dtype=model.dtype, mirror=mirror,
    )
    return [probabilities_to_labels(probs, threshold) for probs in probabilities]


def check_images_fit(model: SegmentationModel, images: Sequence[torch.Tensor], names: Sequence[str]) -> None:
    """One DataError naming the first image (and counting the others) whose probability map at
    the model's windows would not fit in memory, before any image is segmented."""
    problems = []
    for image, name in zip(images, names):
        size = tuple(image.shape[-2:])
        tile = (model.patch_size, model.patch_size) if model.patch_size else size
        try:
            check_memory(name, size, image.shape[0], model.num_classes, tile)
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        more = f"; {len(problems) - 1} more test image(s) too large" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more}")


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
    mirror: bool = False,
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
        batch_size=batch_size, device=model.device, dtype=model.dtype, name=name, mirror=mirror,
    )
    if probs.shape[-2:] != (height, width):
        probs = F.interpolate(probs[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return probs


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(height, width) the network sees after resizing by ``scale`` (at least 1 pixel)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
