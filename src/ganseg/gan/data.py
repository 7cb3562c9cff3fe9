"""Tensors the GAN trains on: value ranges, mask encoding, and an in-memory batch sampler.

Images enter the networks in [-1, 1]. Masks enter as channels in {-1, 1}: one channel for a
binary mask (foreground = 1), K one-hot channels for K classes. Pairs are decoded once
(:func:`ganseg.data.pairs.load_pairs`) and kept on the device as uint8; a batch is an index,
a cast and, optionally, a random flip / 90-degree rotation applied alike to image and mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def mask_channels(num_classes: int) -> int:
    return 1 if num_classes == 1 else num_classes


def encode_masks(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) integer labels -> (B, Cm, H, W) float in {-1, 1}."""
    if num_classes == 1:
        return (labels > 0).float().unsqueeze(1) * 2 - 1
    one_hot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2)  # (B, K, H, W)
    return one_hot.float() * 2 - 1


def decode_masks(encoded: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, Cm, H, W) in [-1, 1] -> (B, H, W) uint8 labels (threshold 0, or argmax)."""
    if num_classes == 1:
        return (encoded[:, 0] > 0).to(torch.uint8)
    return encoded.argmax(dim=1).to(torch.uint8)


def images_to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded."""
    return ((images.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


@dataclass
class Batch:
    images: torch.Tensor  # (B, C, H, W) float in [-1, 1]
    masks: torch.Tensor  # (B, Cm, H, W) float in {-1, 1}
    labels: torch.Tensor  # (B, H, W) uint8

    def __len__(self) -> int:
        return self.images.shape[0]


def dihedral(tensor: torch.Tensor, flip_h: torch.Tensor, flip_v: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
    """Per-sample flips and transposition of (B, ..., H, W): the 8 symmetries of a square."""
    view = (-1,) + (1,) * (tensor.ndim - 1)
    tensor = torch.where(flip_h.view(view), tensor.flip(-1), tensor)
    tensor = torch.where(flip_v.view(view), tensor.flip(-2), tensor)
    return torch.where(transpose.view(view), tensor.transpose(-1, -2), tensor)


class PairSampler:
    """Endless batches of training pairs, reshuffled every epoch, resumable from its state.

    ``augment`` applies a random flip / transposition per sample (valid for microscopy,
    whose content has no preferred orientation): 8x the distinct views of a small set, which
    slows the discriminator's memorisation of the real images.
    """

    def __init__(
        self,
        images: torch.Tensor,  # (N, C, H, W) uint8
        labels: torch.Tensor,  # (N, H, W) uint8
        num_classes: int,
        batch_size: int,
        seed: int,
        device: torch.device,
        augment: bool = True,
        channels_last: bool = False,
    ):
        if images.shape[0] == 0:
            raise ValueError("PairSampler needs at least one pair")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.augment = augment and images.shape[-1] == images.shape[-2]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(self.images), generator=self.generator)
        self.position = 0

    def __len__(self) -> int:
        return len(self.images)

    def _indices(self) -> torch.Tensor:
        picked = []
        needed = self.batch_size
        while needed:
            if self.position >= len(self.order):
                self.order = torch.randperm(len(self.images), generator=self.generator)
                self.position = 0
            take = min(needed, len(self.order) - self.position)
            picked.append(self.order[self.position : self.position + take])
            self.position += take
            needed -= take
        return torch.cat(picked)

    def next(self) -> Batch:
        index = self._indices().to(self.images.device)
        images, labels = self.images[index], self.labels[index]  # (B, C, H, W), (B, H, W)
        if self.augment:
            flips = torch.rand(3, len(index), generator=self.generator) < 0.5
            flips = flips.to(self.images.device)
            images = dihedral(images, *flips)
            labels = dihedral(labels, *flips)
        return Batch(
            images=images_to_unit(images).contiguous(memory_format=self.memory_format),
            masks=encode_masks(labels, self.num_classes).contiguous(memory_format=self.memory_format),
            labels=labels,
        )

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.position = int(state["position"])
