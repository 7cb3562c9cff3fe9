"""Make labelled pairs with a trained generator, deterministically from the seed.

- pix2pix, spade: each new mask comes from the :class:`MaskSampler` (sample ``i`` depends only
  on ``(seed, i)``), and the generator, in eval mode (no dropout), paints its image; SPADE's
  noise for sample ``i`` is drawn from a generator seeded by ``(seed, i)`` too.
- dcgan: sample ``i`` decodes noise drawn from a generator seeded by ``(seed, i)``; its mask
  is the thresholded (binary) or arg-max (multi-class) mask channels.

Both return plain uint8 arrays and a description per pair; writing files is the stage's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ganseg.gan.data import decode_masks, encode_masks, images_to_uint8
from ganseg.gan.mask_sampler import MaskSampler
from ganseg.progress import Progress
from ganseg.runtime import autocast


@dataclass(frozen=True)
class SyntheticPair:
    index: int
    image: np.ndarray  # (C, H, W) uint8
    mask: np.ndarray  # (H, W) uint8 labels
    source_index: int | None  # training mask the layout came from (pix2pix)
    donor_index: int | None  # training mask objects were pasted from (pix2pix)
    transform: str


@torch.no_grad()
def paint_masks(
    generator: nn.Module, labels: torch.Tensor, num_classes: int, device: torch.device,
    dtype: torch.dtype = torch.float32, memory_format=torch.contiguous_format,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, H, W) labels [, (B, Z) noise for SPADE] -> (B, C, H, W) uint8 images from a
    mask-conditioned generator."""
    masks = encode_masks(labels.to(device), num_classes).contiguous(memory_format=memory_format)
    with autocast(device, dtype):
        images = generator(masks) if noise is None else generator(masks, noise.to(device))
        return images_to_uint8(images).cpu()


def pix2pix_pairs(
    generator: nn.Module, sampler: MaskSampler, count: int, num_classes: int,
    device: torch.device, dtype: torch.dtype = torch.float32, batch_size: int = 32,
    memory_format=torch.contiguous_format, label: str | None = "synthesis (pix2pix)",
    latent_dim: int = 0, seed: int = 0,
) -> Iterator[SyntheticPair]:
    """``count`` pairs, painted ``batch_size`` at a time; ``label``: progress name, None = silent.

    ``latent_dim`` > 0 (spade): the generator takes noise, row ``i`` from ``(seed, i)``.
    """
    generator.eval()
    with _pair_progress(count, label) as progress:
        for start in range(0, count, batch_size):
            indices = range(start, min(start + batch_size, count))
            sampled = [sampler.sample(i) for i in indices]
            labels = torch.from_numpy(np.stack([s.labels for s in sampled]))
            noise = noise_for(indices, latent_dim, seed) if latent_dim else None
            images = paint_masks(generator, labels, num_classes, device, dtype, memory_format, noise).numpy()
            for offset, item in enumerate(sampled):
                yield SyntheticPair(start + offset, images[offset], item.labels, item.source_index,
                                    item.donor_index, item.transform)
            progress.update(len(sampled))


def noise_for(indices: range, latent_dim: int, seed: int) -> torch.Tensor:
    """(len(indices), latent_dim) noise; row ``i`` depends only on ``(seed, i)``."""
    rows = [torch.randn(latent_dim, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))
            for i in indices]
    return torch.stack(rows)


@torch.no_grad()
def decode_stacks(stacks: torch.Tensor, channels: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C + Cm, H, W) generator output -> (B, C, H, W) uint8 images, (B, H, W) uint8 labels."""
    return images_to_uint8(stacks[:, :channels]).cpu(), decode_masks(stacks[:, channels:], num_classes).cpu()


def dcgan_pairs(
    generator: nn.Module, count: int, latent_dim: int, channels: int, num_classes: int, seed: int,
    device: torch.device, dtype: torch.dtype = torch.float32, batch_size: int = 32,
    label: str | None = "synthesis (dcgan)",
) -> Iterator[SyntheticPair]:
    """``count`` pairs decoded ``batch_size`` at a time; ``label``: progress name, None = silent."""
    generator.eval()
    with _pair_progress(count, label) as progress:
        for start in range(0, count, batch_size):
            indices = range(start, min(start + batch_size, count))
            with torch.no_grad(), autocast(device, dtype):
                stacks = generator(noise_for(indices, latent_dim, seed).to(device))
            images, labels = decode_stacks(stacks, channels, num_classes)
            for offset, index in enumerate(indices):
                yield SyntheticPair(index, images[offset].numpy(), labels[offset].numpy(), None, None, "noise")
            progress.update(len(indices))


def _pair_progress(count: int, label: str | None) -> Progress:
    # Counted once the caller has taken a batch's pairs (written them, say): "done" means done.
    return Progress(count, label or "", unit="pair", enabled=label is not None)
