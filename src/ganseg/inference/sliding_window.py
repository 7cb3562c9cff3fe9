"""Sliding-window segmentation of whole images at their native size: the one inference path
of validation, evaluate and predict.

MONAI's ``sliding_window_inference`` does the tiling. Tiles of side T step by
``int(T * (1 - overlap))``, the last one flush with the image's far edge; they run through the
network ``batch_size`` at a time on the network's device (tiles of several images share a
batch), and their probabilities are added, weighted, into the full-size map on the CPU::

    image:   |.................................................|
    tile 0:  [ low | high weight | low ]
    tile 1:               [ low | high weight | low ]
    tile 2:                                  [ low | high weight | low ]   <- flush with the edge

- ``blend="gaussian"`` (default): a tile's probabilities are weighted by a Gaussian centred on
  the tile (sigma = T / 8, MONAI's default; the weight at the tile's edge is clamped to 1e-3
  of the centre's), so a pixel's value comes mostly from the tile in which it is most central,
  where the network saw the most context, and there are no seams. ``"constant"``: the plain
  mean of the overlapping tiles. MONAI offers no linear ramp, so neither does this.
- The border of a large image is not padded: tiles stay inside the image, and border pixels
  see the same zero padding of the network's convolutions as in whole-image inference. A
  network whose output at a pixel depends only on that pixel therefore gives the whole-image
  result exactly; a wider receptive field differs only within its radius of an inner tile edge,
  where the Gaussian weight is small (``tests/inference/test_sliding_window.py`` measures it).
- An axis shorter than the tile is mirror-padded (centred) to the tile and cropped back, so a
  small image is one window, as at training time; an image of the tile's size is exactly one
  forward pass.
- Probabilities: sigmoid of one logit channel (binary), softmax over K >= 2 channels. Tiles are
  blended as probabilities (a weighted mean), so a multi-class map still sums to 1.

Memory: the float32 map (N, K, H, W), MONAI's weight sum (H, W) and the float image copy
(N, C, H, W) live on the CPU, however small the device. Before they are allocated the need is
compared with ``memory_limit`` (default: half the RAM available at that moment); an image that
does not fit is a :class:`~ganseg.errors.DataError` naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
import psutil
import torch

from ganseg.errors import DataError
from ganseg.runtime import autocast

Blend = Literal["gaussian", "constant"]
# network: float (B, C, T, T) in [0, 1] on ``device`` -> logits (B, K, T, T): an nn.Module or any callable.
Network = Callable[[torch.Tensor], torch.Tensor]
GIB = 2**30
# Test-time mirroring: the spatial flips whose predictions are averaged, each undone after.
MIRROR_FLIPS = ((), (-1,), (-2,), (-2, -1))


@torch.no_grad()
def segment_probabilities(
    network: Network,
    images: torch.Tensor,
    *,
    num_classes: int,
    tile: int | tuple[int, int],
    overlap: float = 0.25,
    blend: Blend = "gaussian",
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    name: str = "image",
    memory_limit: int | None = None,
    mirror: bool = False,
) -> torch.Tensor:
    """Probabilities at the images' own size: (C, H, W) -> (K, H, W), (N, C, H, W) -> (N, K, H, W).

    ``images`` are uint8 (scaled by 1/255, as in training) or float already in [0, 1], on the
    CPU. ``num_classes`` is K (1 = one sigmoid map); ``tile`` the window side (or (height,
    width)); ``overlap`` the fraction of a window shared with each neighbour, in [0, 1);
    ``device`` where the network runs, ``dtype`` its autocast dtype (float32 = none); ``name``
    the image (its file) in error messages; ``memory_limit`` the bytes the CPU-side maps may
    take (None = half the available RAM); ``mirror`` averages each window's probabilities over
    its four flips (none, left-right, up-down, both), nnU-Net's test-time mirroring, at 4x the
    forward passes. Returns float32 probabilities on the CPU.
    """
    if images.ndim not in (3, 4):
        raise ValueError(f"{name}: expected (C, H, W) or (N, C, H, W), got shape {tuple(images.shape)}")
    single = images.ndim == 3
    batch = images[None] if single else images  # (N, C, H, W)
    count, channels, height, width = batch.shape
    tile_hw = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    check_memory(name, (height, width), channels, num_classes, tile_hw, count, memory_limit)
    pixels = batch.float().div(255.0) if batch.dtype == torch.uint8 else batch.float()
    pixels = _mirror_pad_to(pixels.cpu(), tile_hw)  # (N, C, H', W'), H' >= tile
    device = torch.device(device)

    flips = MIRROR_FLIPS if mirror else ((),)

    def predict(tiles: torch.Tensor) -> torch.Tensor:  # (B, C, T, T) on device -> (B, K, T, T) float32
        total = None
        for dims in flips:  # probabilities, not logits, are averaged (as nnU-Net does)
            with autocast(device, dtype):
                logits = network(tiles.flip(dims) if dims else tiles)
            if logits.shape[1] != num_classes:
                raise ValueError(f"network gave {logits.shape[1]} channels, expected num_classes {num_classes}")
            logits = logits.float()
            probs = torch.sigmoid(logits) if num_classes == 1 else torch.softmax(logits, dim=1)
            probs = probs.flip(dims) if dims else probs
            total = probs if total is None else total + probs
        return total / len(flips)

    sliding_window_inference, compute_importance_map = _monai()
    weights = None  # (T, T) window weights; None = MONAI's own (constant)
    if blend == "gaussian":
        # The product of two 1-D Gaussians, each clamped at 1e-3 of its peak. MONAI clamps the 2-D
        # map instead, which flattens every tile's first and last rows to the same 1e-3: along the
        # image border a tile's edge pixel would then count as much as a neighbour's centre.
        rows, cols = (compute_importance_map((side,), mode="gaussian", device=device) for side in tile_hw)
        weights = torch.outer(rows, cols)
    probs = sliding_window_inference(
        pixels, roi_size=tile_hw, sw_batch_size=batch_size, predictor=predict, overlap=overlap,
        mode=blend, roi_weight_map=weights, sw_device=device, device=torch.device("cpu"),
    )  # (N, K, H', W') on the CPU
    top, left = max(tile_hw[0] - height, 0) // 2, max(tile_hw[1] - width, 0) // 2  # _mirror_pad_to's split
    if probs.shape[-2:] != (height, width):
        probs = probs[..., top : top + height, left : left + width].contiguous()
    return probs[0] if single else probs


def segment_each(network: Network, images: Sequence[torch.Tensor], *, tile: int | tuple[int, int] | None,
                 names: Sequence[str] | None = None, group_pixels: int = 2**25, **options
                 ) -> Iterator[torch.Tensor]:
    """Probabilities (K, H, W) of each image of a list (sizes may differ), in order, through
    :func:`segment_probabilities` with ``options``. Consecutive images of one size share a call
    (their tiles share batches), up to ``group_pixels`` pixels at a time so that the maps held at
    once stay bounded. ``tile`` None = each image's own size (whole-image inference)."""
    start = 0
    while start < len(images):
        size = tuple(images[start].shape[-2:])
        stop = start + 1
        while (stop < len(images) and tuple(images[stop].shape[-2:]) == size
               and (stop - start + 1) * size[0] * size[1] <= group_pixels):
            stop += 1
        name = names[start] if names is not None and stop == start + 1 else (
            f"{names[start]} .. {names[stop - 1]}" if names is not None else "image")
        probs = segment_probabilities(network, torch.stack(list(images[start:stop])), tile=tile or size,
                                      name=name, **options)
        yield from probs.unbind(0)
        start = stop


def check_memory(
    name: str,
    size: tuple[int, int],
    channels: int,
    num_classes: int,
    tile_hw: tuple[int, int],
    count: int = 1,
    memory_limit: int | None = None,
) -> None:
    """DataError naming ``name`` when the CPU-side maps of :func:`segment_probabilities` for
    ``count`` images of ``size`` (height, width) would exceed ``memory_limit`` bytes (None =
    half the RAM available now). Predict calls it for every file before writing anything."""
    height, width = size
    padded = max(height, tile_hw[0]) * max(width, tile_hw[1])
    need = 4 * padded * (count * num_classes + 1 + count * channels)  # float32 map, weight sum, image
    limit = psutil.virtual_memory().available // 2 if memory_limit is None else memory_limit
    allowed = "half the free RAM" if memory_limit is None else "the memory limit"
    if need > limit:
        images = f"a {height}x{width} px image needs" if count == 1 else f"{count} {height}x{width} px images need"
        raise DataError(
            f"{name}: {images} {_readable(need)} for the {num_classes}-class probability map at tile "
            f"{tile_hw[0]}x{tile_hw[1]}, more than the {_readable(limit)} allowed ({allowed}); "
            "segment it smaller (predict.scale) or on a machine with more memory"
        )


def _readable(size: int) -> str:
    return f"{size / GIB:.1f} GiB" if size >= GIB else f"{size / 2**20:.0f} MiB"


def _mirror_pad_to(pixels: torch.Tensor, tile_hw: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> axes shorter than the tile reflected (repeatedly if need be) to its size, centred."""
    widths = [(0, 0), (0, 0)]
    for length, side in zip(pixels.shape[-2:], tile_hw):
        missing = max(side - length, 0)
        widths.append((missing // 2, missing - missing // 2))
    if widths == [(0, 0)] * 4:
        return pixels
    padded = pixels.numpy()
    for axis in (2, 3):  # a 1-pixel axis has nothing to reflect: repeat it
        axis_widths = [widths[a] if a == axis else (0, 0) for a in range(4)]
        padded = np.pad(padded, axis_widths, mode="reflect" if padded.shape[axis] > 1 else "edge")
    return torch.from_numpy(padded)


def _monai() -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    """MONAI's ``sliding_window_inference`` and ``compute_importance_map``, imported on first use: ``import monai`` loads all of
    MONAI (about 3 s, mlflow among its optional handlers, so it must come after the stage runner
    switched telemetry off) and replaces ``warnings.showwarning`` process-wide, which is put back."""
    shown = warnings.showwarning
    try:
        from monai.data.utils import compute_importance_map
        from monai.inferers import sliding_window_inference
    finally:
        warnings.showwarning = shown
    return sliding_window_inference, compute_importance_map
