"""Overlap-tile inference (Ronneberger et al. 2015, Fig. 2): segment an image of any size with
a network trained on small squares, without squashing it.

Along each axis longer than the tile, tiles of side T step by S = T - O (O = overlap pixels)::

    padded:  |c| image ........................................ |pad|
    tile 0:  [ctx| blend |   centre   | blend |ctx]
    tile 1:                     [ctx| blend |   centre   | blend |ctx]

- The image is mirror-padded (reflection, as in the paper) so that border pixels also see
  context and every tile is full-sized.
- Each tile's prediction is weighted by a separable window: 0 in the outer ``c = O // 4``
  pixels (context only: that is where the network saw zero padding, not image), a linear
  ramp over the rest of the overlap, 1 in the centre. Overlapping tiles are blended by the
  weighted mean of their probabilities, so there are no seams. Every image pixel gets
  weight > 0 from at least one tile (``c`` is at most half the overlap).
- For a network whose receptive-field radius is at most ``c`` the blended result equals the
  whole-image prediction away from the image border (tested with a small conv net).

An axis not longer than the tile is mirror-padded to T and predicted in one piece, exactly
as at training time; masks come back at the input size. Probabilities are accumulated on
the CPU in float32, so the image size is bounded by host memory, not by the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

# logits_fn: float (B, C, T, T) on the CPU -> logits (B, K, T, T); it moves tensors to its device.
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AxisPlan:
    """How one axis of length ``length`` is covered by tiles of side ``tile``."""

    length: int
    tile: int
    pad_before: int
    pad_after: int
    starts: tuple[int, ...]  # tile offsets in the padded axis
    weights: np.ndarray  # (tile,) blending window along this axis


def plan_axis(length: int, tile: int, overlap: int) -> AxisPlan:
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be positive, got {length} and {tile}")
    if length <= tile:
        before = (tile - length) // 2
        return AxisPlan(length, tile, before, tile - length - before, (0,), np.ones(tile))
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    context = overlap // 4
    stride = tile - overlap
    count = int(np.ceil(max(length + 2 * context - tile, 0) / stride)) + 1
    pad_after = (count - 1) * stride + tile - length - context
    return AxisPlan(
        length, tile, context, pad_after, tuple(k * stride for k in range(count)), blend_window(tile, overlap)
    )


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """(tile,) weights: 0 over the outer ``overlap // 4``, a ramp, then 1 (see module doc)."""
    context = overlap // 4
    ramp = overlap - 2 * context + 1
    distance = np.minimum(np.arange(tile), np.arange(tile)[::-1])  # to the nearest tile edge
    return np.clip((distance - context + 1) / ramp, 0.0, 1.0)


def mirror_pad(image: np.ndarray, plan_y: AxisPlan, plan_x: AxisPlan) -> np.ndarray:
    """(C, H, W) -> (C, H', W') by reflection (repeated for pads longer than the image)."""
    widths = ((0, 0), (plan_y.pad_before, plan_y.pad_after), (plan_x.pad_before, plan_x.pad_after))
    return np.pad(image, widths, mode="reflect" if min(image.shape[1:]) > 1 else "edge")


def logits_to_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits -> probabilities: sigmoid when K == 1, softmax over K otherwise."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


@torch.no_grad()
def predict_tiled(
    logits_fn: LogitsFn,
    image: torch.Tensor,
    tile: int,
    overlap: float,
    batch_size: int = 16,
) -> torch.Tensor:
    """Probabilities (K, H, W) for one float image (C, H, W) of any size.

    ``overlap`` is the fraction of the tile shared with each neighbour (0 <= overlap < 1).
    """
    if image.ndim != 3:
        raise ValueError(f"expected one image (C, H, W), got shape {tuple(image.shape)}")
    overlap_px = round(overlap * tile)
    _, height, width = image.shape
    plan_y, plan_x = plan_axis(height, tile, overlap_px), plan_axis(width, tile, overlap_px)
    padded = torch.from_numpy(mirror_pad(image.float().cpu().numpy(), plan_y, plan_x))
    window = torch.from_numpy(np.outer(plan_y.weights, plan_x.weights)).float()  # (T, T)

    positions = [(y, x) for y in plan_y.starts for x in plan_x.starts]
    total: torch.Tensor | None = None  # (K, H', W') weighted probability sums
    weight = torch.zeros(padded.shape[1:])  # (H', W')
    for first in range(0, len(positions), batch_size):
        chunk = positions[first : first + batch_size]
        tiles = torch.stack([padded[:, y : y + tile, x : x + tile] for y, x in chunk])  # (B, C, T, T)
        probs = logits_to_probabilities(logits_fn(tiles)).cpu()  # (B, K, T, T)
        if total is None:
            total = torch.zeros((probs.shape[1], *padded.shape[1:]))
        for (y, x), prob in zip(chunk, probs):
            total[:, y : y + tile, x : x + tile] += prob * window
            weight[y : y + tile, x : x + tile] += window
    assert total is not None
    top, left = plan_y.pad_before, plan_x.pad_before
    total = total[:, top : top + height, left : left + width]
    weight = weight[top : top + height, left : left + width]
    assert bool((weight > 0).all()), "tile plan left pixels uncovered"
    return total / weight
