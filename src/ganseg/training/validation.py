"""Validation: mean per-image Dice (and loss) of a segmenter over in-memory pairs, each image
segmented whole at its own size by the sliding window evaluate and predict use.

Shared by the train stage and the adversarial fine-tuning stage. Under DDP every process
scores its own slice of the images and the sums are all-reduced, so every process returns the
same numbers and takes the same best-checkpoint / early-stopping decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ganseg.inference import segment_each
from ganseg.metrics.segmentation import dice_per_image
from ganseg.models.model_file import bare_module
from ganseg.runtime import autocast
from ganseg.training.distributed import DistInfo, all_reduce_sum

MIN_VALIDATION_IMAGES = 10  # a subset smaller than this ranks checkpoints on too few images


def validation_subset(sizes: Sequence[tuple[int, int]], share: float, seed: int) -> list[int]:
    """Indices (sorted) of the validation images a validation during training scores: the
    images in a seeded random order, taken until they hold ``share`` of the pixels (the count
    whose pixels come nearest), at least :data:`MIN_VALIDATION_IMAGES` (or all). Fixed for a
    run, so every validation ranks the checkpoints on the same images."""
    if share >= 1 or not sizes:
        return list(range(len(sizes)))
    order = np.random.default_rng(seed).permutation(len(sizes))
    pixels = np.cumsum([sizes[i][0] * sizes[i][1] for i in order], dtype=np.float64)
    wanted = share * pixels[-1]
    count = int(np.argmin(np.abs(pixels - wanted))) + 1
    count = min(len(order), max(count, MIN_VALIDATION_IMAGES))
    return sorted(int(i) for i in order[:count])


def subset_pixel_share(sizes: Sequence[tuple[int, int]], indices: Sequence[int]) -> float:
    total = sum(h * w for h, w in sizes)
    return sum(sizes[i][0] * sizes[i][1] for i in indices) / total if total else 1.0


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 64,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 logits (N, K, H, W) on the CPU, model in eval mode."""
    network = bare_module(model)
    was_training = network.training
    network.eval()
    outputs = []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True).float().div_(255.0)
            batch = batch.contiguous(memory_format=memory_format)
            with autocast(device, dtype):
                outputs.append(network(batch).float().cpu())
    finally:
        network.train(was_training)
    return torch.cat(outputs)


@torch.no_grad()
def evaluate_dice(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    *,
    num_classes: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 64,
    tile: int | None = None,
    overlap: float = 0.25,
    criterion: Callable | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    dist_info: DistInfo | None = None,
    prefix: str = "val/",
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """``{prefix}dice`` (mean per-image Dice, :func:`ganseg.metrics.segmentation.dice_per_image`:
    the number evaluate reports as ``dice``) and, with a ``criterion``, ``{prefix}loss`` (its
    mean over images).

    Every image (uint8 (C, H, W), any size; labels (H, W), IGNORE outside the region of
    interest) is segmented whole, at its own size, by the sliding window evaluate and predict
    use (:func:`ganseg.inference.segment_each`, tiles of ``tile``, ``batch_size`` tiles per
    forward pass; ``tile`` None = one window per image). The loss is taken on the blended
    probabilities (as logits: their logit, or log for softmax), since windows blend
    probabilities, not logits. ``names`` (the image files) name an image too large for memory
    at this tile in the error.
    """
    info = dist_info or DistInfo()
    mine = range(info.rank, len(images), info.world_size)
    totals = torch.zeros(3, dtype=torch.float64)  # dice sum, loss sum, image count
    network = bare_module(model)
    was_training = network.training
    network.eval()
    try:
        probabilities = segment_each(
            lambda tiles: network(tiles.contiguous(memory_format=memory_format)),
            [images[i] for i in mine], tile=tile, names=[names[i] for i in mine] if names else None,
            num_classes=num_classes, overlap=overlap,
            batch_size=batch_size, device=device, dtype=dtype)
        for index, probs in zip(mine, probabilities):
            truth = masks[index][None]
            labels = probs[None, 0] > 0.5 if num_classes == 1 else probs[None].argmax(dim=1)
            totals[0] += float(dice_per_image(labels.to(torch.uint8), truth, num_classes).sum())
            if criterion is not None:
                loss, _ = criterion(probabilities_as_logits(probs[None]), truth.long())
                totals[1] += float(loss)
            totals[2] += 1
    finally:
        network.train(was_training)
    if info.enabled:
        reduce_device = device if device.type == "cuda" else torch.device("cpu")
        totals = all_reduce_sum(totals.to(reduce_device)).cpu()
    count = max(float(totals[2]), 1.0)
    result = {f"{prefix}dice": float(totals[0]) / count}
    if criterion is not None:
        result[f"{prefix}loss"] = float(totals[1]) / count
    return result


def probabilities_as_logits(probs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, K, H, W) probabilities -> logits that give them back: logit (K = 1) or log (softmax)."""
    probs = probs.clamp(eps, 1 - eps)
    return torch.logit(probs) if probs.shape[1] == 1 else probs.log()


def overlay_grid(images: Sequence[torch.Tensor], truth: Sequence[torch.Tensor], predicted: Sequence[torch.Tensor],
                 columns: int = 4) -> np.ndarray:
    """uint8 (C, H, W) images (sizes may differ) with their true and predicted labels -> one
    (H', W', 3) uint8.

    Each tile is the image beside its error overlay (correct green, false positive orange,
    missed blue, wrong class magenta; pixels outside the region of interest grey), tiles laid
    out ``columns`` to a row, each cell as large as the largest tile (white around smaller ones).
    """
    from ganseg.evaluation.overlays import error_overlay, to_rgb

    tiles = []
    for image, true_labels, pred_labels in zip(images, truth, predicted):
        hwc = image.permute(1, 2, 0).numpy()
        overlay = error_overlay(hwc, pred_labels.numpy(), true_labels.numpy())
        gap = np.full((hwc.shape[0], 2, 3), 255, dtype=np.uint8)
        tiles.append(np.concatenate([to_rgb(hwc).astype(np.uint8), gap, overlay], axis=1))
    if not tiles:
        raise ValueError("overlay_grid needs at least one image")
    height, width = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // columns)
    pad = 4
    grid = np.full((rows * (height + pad) - pad, min(columns, len(tiles)) * (width + pad) - pad, 3), 255, np.uint8)
    for position, tile in enumerate(tiles):
        top, left = (position // columns) * (height + pad), (position % columns) * (width + pad)
        grid[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return grid
