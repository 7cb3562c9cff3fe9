"""Validation: mean per-image Dice (and loss) of a segmenter over in-memory pairs.

Shared by the train stage and the adversarial fine-tuning stage. Under DDP every process
scores its own slice of the images and the sums are all-reduced, so every process returns the
same numbers and takes the same best-checkpoint / early-stopping decisions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ganseg.metrics.segmentation import dice_per_image
from ganseg.models.model_file import bare_module
from ganseg.runtime import autocast
from ganseg.training.dice import logits_to_labels
from ganseg.training.distributed import DistInfo, all_reduce_sum


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
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    num_classes: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 64,
    criterion: Callable | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    dist_info: DistInfo | None = None,
    prefix: str = "val/",
) -> dict[str, float]:
    """``{prefix}dice`` (mean per-image Dice, :func:`ganseg.metrics.segmentation.dice_per_image`:
    the number evaluate reports as ``dice``) and, with a ``criterion``, ``{prefix}loss`` (its
    mean over images)."""
    info = dist_info or DistInfo()
    shard = slice(info.rank, None, info.world_size)
    my_images, my_masks = images[shard], masks[shard]
    totals = torch.zeros(3, dtype=torch.float64)  # dice sum, loss sum, image count
    if len(my_images):
        logits = predict_logits(model, my_images, device=device, dtype=dtype, batch_size=batch_size,
                                memory_format=memory_format)
        totals[0] = dice_per_image(logits_to_labels(logits), my_masks, num_classes).sum()
        if criterion is not None:
            for start in range(0, len(logits), batch_size):
                part = logits[start : start + batch_size]
                loss, _ = criterion(part, my_masks[start : start + batch_size].long())
                totals[1] += float(loss) * len(part)
        totals[2] = len(my_images)
    if info.enabled:
        reduce_device = device if device.type == "cuda" else torch.device("cpu")
        totals = all_reduce_sum(totals.to(reduce_device)).cpu()
    count = max(float(totals[2]), 1.0)
    result = {f"{prefix}dice": float(totals[0]) / count}
    if criterion is not None:
        result[f"{prefix}loss"] = float(totals[1]) / count
    return result


def overlay_grid(images: torch.Tensor, truth: torch.Tensor, predicted: torch.Tensor, columns: int = 4) -> np.ndarray:
    """(N, C, H, W) uint8 images with their true and predicted labels -> one (H', W', 3) uint8.

    Each tile is the image beside its error overlay (correct green, false positive orange,
    missed blue, wrong class magenta), tiles laid out ``columns`` to a row.
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
    height, width = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    pad = 4
    grid = np.full((rows * (height + pad) - pad, min(columns, len(tiles)) * (width + pad) - pad, 3), 255, np.uint8)
    for position, tile in enumerate(tiles):
        top, left = (position // columns) * (height + pad), (position % columns) * (width + pad)
        grid[top : top + height, left : left + width] = tile
    return grid
