"""What the generator makes and what the discriminator judges, per model.

A task is the only part of GAN training that knows the meaning of the tensors. It answers:

- ``generate(generator, batch)``: the generator's output for this batch;
- ``real_inputs(batch)`` / ``fake_inputs(batch, generated)``: the stacks the discriminator
  judges as real and as fake;
- ``image_channels(batch)``: which channels of those stacks are image channels (colour
  augmentation of D's inputs, ``ganseg.gan.diffaugment``, must leave mask channels alone);
- ``generator_loss(batch, generated) -> (loss, stats)``: the non-adversarial part of the
  generator's loss (pix2pix's L1; a segmentation loss for adversarial fine-tuning).

The objective, the stabilisers and the loop are the same for every task.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from ganseg.gan.data import Batch
from ganseg.gan.losses import PixelLoss, Stats


class GanTask(Protocol):
    def generate(self, generator: nn.Module, batch: Batch) -> torch.Tensor: ...

    def real_inputs(self, batch: Batch) -> torch.Tensor: ...

    def fake_inputs(self, batch: Batch, generated: torch.Tensor) -> torch.Tensor: ...

    def image_channels(self, batch: Batch) -> slice: ...

    def generator_loss(self, batch: Batch, generated: torch.Tensor) -> tuple[torch.Tensor, Stats]: ...


class Pix2PixTask:
    """Mask -> image. The discriminator judges (mask, image) stacks, mask channels first."""

    def __init__(self, pixel_loss: PixelLoss):
        self.pixel_loss = pixel_loss

    def generate(self, generator, batch):
        return generator(batch.masks)  # (B, C, H, W)

    def real_inputs(self, batch):
        return torch.cat([batch.masks, batch.images], dim=1)  # (B, Cm + C, H, W)

    def fake_inputs(self, batch, generated):
        return torch.cat([batch.masks, generated], dim=1)

    def image_channels(self, batch):
        return slice(batch.masks.shape[1], None)

    def generator_loss(self, batch, generated):
        return self.pixel_loss(generated, batch.images, batch.valid)  # L1 off IGNORE pixels


class DcganTask:
    """Noise -> (image, mask) stack. The discriminator judges (image, mask) stacks."""

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    def generate(self, generator, batch):
        noise = torch.randn(len(batch), self.latent_dim, device=batch.images.device)
        return generator(noise)  # (B, C + Cm, H, W)

    def real_inputs(self, batch):
        return torch.cat([batch.images, batch.masks], dim=1)

    def fake_inputs(self, batch, generated):
        return generated

    def image_channels(self, batch):
        return slice(0, batch.images.shape[1])

    def generator_loss(self, batch, generated):
        return generated.new_zeros(()), {}
