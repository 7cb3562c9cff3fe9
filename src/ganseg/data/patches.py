"""Random training patches from images of any size, a share of them centred on foreground.

nnU-Net's recipe: a network trains on fixed-size patches cut from the full-resolution images,
and one patch in three is centred on a foreground pixel, so that rare, small objects are seen
often enough however large the background around them. Twenty images then give thousands of
distinct samples, and no image is squashed to fit the network.

- ``foreground_share`` of the windows (drawn per sample) are centred on a foreground pixel
  (any label other than 0 and IGNORE) of the image, shifted as little as needed to lie inside
  it; the rest are uniform over the positions inside the image. An image without foreground
  always gets a uniform window.
- An axis shorter than the patch is padded, centred: the image by reflection (as the sliding
  window pads at inference, :mod:`ganseg.inference.sliding_window`), the mask with IGNORE, so the padding counts in no loss.
- Foreground locations are found once per image (at most ``MAX_LOCATIONS``, a seeded subset)
  rather than per sample: a 1388x1040 mask costs milliseconds to scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ganseg.data.pairs import IGNORE

MAX_LOCATIONS = 20_000


def foreground_locations(mask: torch.Tensor, seed: int = 0, limit: int = MAX_LOCATIONS) -> np.ndarray:
    """(M, 2) int32 (row, col) of foreground pixels of an (H, W) label map, at most ``limit``."""
    labels = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    rows, cols = np.nonzero((labels != 0) & (labels != IGNORE))
    found = np.stack([rows, cols], axis=1).astype(np.int32)
    if len(found) > limit:
        found = found[np.random.default_rng(seed).choice(len(found), limit, replace=False)]
    return found


def _start(length: int, size: int, centre: int | None, rng: np.random.Generator) -> int:
    """First row (or column) of a window of ``size`` along an axis of ``length``; negative when
    the axis is padded."""
    if length <= size:
        return -((size - length) // 2)
    if centre is None:
        return int(rng.integers(0, length - size + 1))
    return int(np.clip(centre - size // 2, 0, length - size))


@dataclass(frozen=True)
class PatchPlan:
    """Where patches of ``size`` (height, width) come from, for a list of label maps."""

    size: tuple[int, int]
    foreground_share: float
    image_sizes: list[tuple[int, int]]
    locations: list[np.ndarray]

    @classmethod
    def for_masks(cls, masks: Sequence[torch.Tensor], size: int | tuple[int, int], foreground_share: float,
                  seed: int = 0) -> PatchPlan:
        size_hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return cls(
            size=size_hw,
            foreground_share=foreground_share,
            image_sizes=[tuple(mask.shape[-2:]) for mask in masks],
            locations=[foreground_locations(mask, seed + index) for index, mask in enumerate(masks)],
        )

    @classmethod
    def uniform(cls, images: Sequence[torch.Tensor], size: int | tuple[int, int]) -> PatchPlan:
        """Uniform windows over images without masks (unlabeled images)."""
        size_hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return cls(size=size_hw, foreground_share=0.0, image_sizes=[tuple(image.shape[-2:]) for image in images],
                   locations=[np.zeros((0, 2), np.int32)] * len(images))

    @property
    def padded(self) -> list[int]:
        """Indices of the images smaller than the patch along an axis (they are padded)."""
        return [i for i, (h, w) in enumerate(self.image_sizes) if h < self.size[0] or w < self.size[1]]

    def window(self, index: int, rng: np.random.Generator) -> tuple[int, int]:
        """(top, left) of one random window in image ``index``; negative = padding."""
        height, width = self.image_sizes[index]
        centre = (None, None)
        locations = self.locations[index]
        if len(locations) and rng.random() < self.foreground_share:
            centre = locations[int(rng.integers(len(locations)))]
        return (_start(height, self.size[0], None if centre[0] is None else int(centre[0]), rng),
                _start(width, self.size[1], None if centre[1] is None else int(centre[1]), rng))


def cut(tensor: torch.Tensor, top: int, left: int, size: tuple[int, int], fill: int | None) -> torch.Tensor:
    """The window of ``size`` at (top, left) of a (..., H, W) tensor. Where it reaches outside,
    the tensor is padded: with ``fill`` (a constant), or by reflection when ``fill`` is None."""
    height, width = tensor.shape[-2:]
    pad_top, pad_left = max(-top, 0), max(-left, 0)
    pad_bottom, pad_right = max(top + size[0] - height, 0), max(left + size[1] - width, 0)
    if not (pad_top or pad_left or pad_bottom or pad_right):
        return tensor[..., top : top + size[0], left : left + size[1]]
    inside = tensor[..., max(top, 0) : top + size[0], max(left, 0) : left + size[1]].numpy()
    widths = [(0, 0)] * (inside.ndim - 2) + [(pad_top, pad_bottom), (pad_left, pad_right)]
    if fill is None:  # as the sliding window pads: numpy reflects repeatedly when the padding is wider
        padded = inside
        for axis in (-2, -1):  # a 1-pixel axis has nothing to reflect: repeat it
            axis_widths = [(0, 0)] * inside.ndim
            axis_widths[axis] = widths[axis]
            padded = np.pad(padded, axis_widths, mode="reflect" if padded.shape[axis] > 1 else "edge")
    else:
        padded = np.pad(inside, widths, mode="constant", constant_values=fill)
    return torch.from_numpy(np.ascontiguousarray(padded))


def cut_pair(image: torch.Tensor, mask: torch.Tensor, top: int, left: int, size: tuple[int, int]
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, H, W) image and (H, W) labels -> the window of both; padding reflects the image and
    labels the mask IGNORE."""
    return cut(image, top, left, size, fill=None), cut(mask, top, left, size, fill=IGNORE)
