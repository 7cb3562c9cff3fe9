"""Tensors the GAN trains on: value ranges, mask encoding, and an in-memory patch sampler.

Images enter the networks in [-1, 1]. Masks enter as channels in {-1, 1}: one channel for a
binary mask (foreground = 1), K one-hot channels for K classes. :data:`~ganseg.data.pairs.IGNORE`
pixels (outside the region of interest, or padding) enter as background: the networks need
some mask everywhere, and the generator's pixel loss leaves them out (``Batch.valid``).

Pairs are decoded once (:func:`ganseg.data.pairs.load_pairs`), at their own sizes, and kept on
the device as uint8; a batch is a square patch of each of ``batch_size`` images
(:mod:`ganseg.data.patches`: a share centred on foreground), a cast and, optionally, a random
flip / 90-degree rotation applied alike to image and mask.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ganseg.data.pairs import IGNORE
from ganseg.data.patches import PatchPlan, cut_pair


def mask_channels(num_classes: int) -> int:
    return 1 if num_classes == 1 else num_classes


def encode_masks(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) integer labels -> (B, Cm, H, W) float in {-1, 1}; IGNORE counts as background."""
    labels = torch.where(labels == IGNORE, 0, labels)
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
    labels: torch.Tensor  # (B, H, W) uint8, IGNORE where a pixel counts in no loss
    valid: torch.Tensor | None = None  # (B, 1, H, W) float, 1 where a pixel counts; None = every pixel

    def __len__(self) -> int:
        return self.images.shape[0]


def dihedral(tensor: torch.Tensor, flip_h: torch.Tensor, flip_v: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
    """Per-sample flips and transposition of (B, ..., H, W): the 8 symmetries of a square."""
    view = (-1,) + (1,) * (tensor.ndim - 1)
    tensor = torch.where(flip_h.view(view), tensor.flip(-1), tensor)
    tensor = torch.where(flip_v.view(view), tensor.flip(-2), tensor)
    return torch.where(transpose.view(view), tensor.transpose(-1, -2), tensor)


def pad_to_patch(image: torch.Tensor, mask: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, H, W) image and (H, W) labels, each axis shorter than ``size`` padded to it, centred
    (the image by reflection, the mask with IGNORE): every window then lies inside."""
    height, width = mask.shape
    if height >= size and width >= size:
        return image, mask
    padded = (max(height, size), max(width, size))
    return cut_pair(image, mask, -((padded[0] - height) // 2), -((padded[1] - width) // 2), padded)


def fixed_patches(images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], size: int,
                  foreground_share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One seeded ``size`` window of each pair -> (N, C, P, P) images, (N, P, P) labels: the
    fixed real patches of sample grids and of the consistency reference."""
    plan = PatchPlan.for_masks(labels, size, foreground_share, seed)
    rng = np.random.default_rng(seed)
    windows = [cut_pair(image.cpu(), mask.cpu(), *plan.window(i, rng), plan.size)
           for i, (image, mask) in enumerate(zip(images, labels))]
    return torch.stack([image for image, _ in windows]), torch.stack([mask for _, mask in windows])


def padding_warning(sizes: Sequence[tuple[int, int]], patch_size: int, what: str) -> str | None:
    """The one stderr line when images are smaller than the patch (they are padded), else None."""
    small = sum(1 for height, width in sizes if height < patch_size or width < patch_size)
    if not small:
        return None
    return (f"warning: {what}: {small} of {len(sizes)} images are smaller than the {patch_size} px patch "
            "along a side; they are padded (reflected image, ignored mask)")


class PairSampler:
    """Endless batches of ``patch_size`` patches of the training pairs, resumable from its state.

    Every epoch visits each image once in a new order (as whole images were visited before
    patches); each visit cuts one window of that image (:class:`~ganseg.data.patches.PatchPlan`:
    ``foreground_share`` of them centred on a foreground pixel). Windows are drawn from a
    generator seeded by ``(seed, batch number)``, so the state is the shuffle generator, the
    epoch order, the seed and the batch count. Images smaller than the patch are padded once, up front
    (one stderr line, named by ``label``, says how many; None = the caller has said it). When
    every image already has the patch's size each window is the whole image and a batch is
    what whole-image sampling gave.

    ``augment`` applies a random flip / transposition per sample (valid for microscopy,
    whose content has no preferred orientation): 8x the distinct views of a small set, which
    slows the discriminator's memorisation of the real images.
    """

    def __init__(
        self,
        images: Sequence[torch.Tensor],  # N x (C, H, W) uint8, any sizes
        labels: Sequence[torch.Tensor],  # N x (H, W) uint8
        num_classes: int,
        batch_size: int,
        seed: int,
        device: torch.device,
        patch_size: int,
        foreground_share: float = 0.33,
        augment: bool = True,
        channels_last: bool = False,
        label: str | None = "augment",
    ):
        if len(images) == 0:
            raise ValueError("PairSampler needs at least one pair")
        warning = padding_warning([tuple(mask.shape) for mask in labels], patch_size, label or "")
        if warning and label is not None:
            print(warning, file=sys.stderr)
        padded = [pad_to_patch(image.cpu(), mask.cpu(), patch_size) for image, mask in zip(images, labels)]
        self.plan = PatchPlan.for_masks([mask for _, mask in padded], patch_size, foreground_share, seed)
        self.images = [image.to(device) for image, _ in padded]
        self.labels = [mask.to(device) for _, mask in padded]
        # Checked once here, not per batch (a device sync): without IGNORE pixels every pixel counts.
        self.has_ignore = any(bool((mask == IGNORE).any()) for _, mask in padded)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.patch_size = patch_size
        self.window_seed = seed
        self.augment = augment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(self.images), generator=self.generator)
        self.position = 0
        self.batches_drawn = 0

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

    def _patches(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, P, P) images and (B, P, P) labels: one window of each indexed image."""
        windows = np.random.default_rng([self.window_seed, self.batches_drawn])
        size = self.patch_size
        images, labels = [], []
        for i in index.tolist():
            top, left = self.plan.window(i, windows)  # never negative: small images are padded
            images.append(self.images[i][:, top : top + size, left : left + size])
            labels.append(self.labels[i][top : top + size, left : left + size])
        return torch.stack(images), torch.stack(labels)

    def next(self) -> Batch:
        images, labels = self._patches(self._indices())  # (B, C, P, P), (B, P, P)
        self.batches_drawn += 1
        if self.augment:
            flips = torch.rand(3, len(images), generator=self.generator) < 0.5
            flips = flips.to(images.device)
            images = dihedral(images, *flips)
            labels = dihedral(labels, *flips)
        valid = (labels != IGNORE).unsqueeze(1).float() if self.has_ignore else None
        return Batch(
            images=images_to_unit(images).contiguous(memory_format=self.memory_format),
            masks=encode_masks(labels, self.num_classes).contiguous(memory_format=self.memory_format),
            labels=labels,
            valid=valid,
        )

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position,
                "window_seed": self.window_seed, "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.position = int(state["position"])
        self.window_seed = int(state["window_seed"])
        self.batches_drawn = int(state["batches_drawn"])
