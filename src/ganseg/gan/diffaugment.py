"""Differentiable augmentation of every discriminator input (DiffAugment, Zhao et al. 2020),
with an optional adaptive probability (ADA, Karras et al. 2020).

A discriminator trained on a few hundred images memorises them and its feedback to the
generator becomes noise. Augmenting its inputs gives it more to learn from; augmenting only
the reals would teach the generator to draw the augmentations, so DiffAugment applies the same
random transforms to *every* input (reals, fakes for D, fakes for G's loss) with differentiable
ops, and the generator's gradient flows back through them.

Policies, as in the official ``DiffAugment_pytorch.py`` (inputs in [-1, 1]):

- ``color``: brightness + U(-0.5, 0.5), saturation x U(0, 2) about the mean over channels (a
  no-op on grey images), contrast x U(0.5, 1.5) about the sample's mean. Image channels only:
  mask channels are labels, and a brightened label means nothing.
- ``translation``: shift by up to 1/8 of each side, zero fill.
- ``cutout``: zero a box of half of each side at a uniform centre.

Geometric transforms move every channel of a stack together, so a (mask, image) pair stays
aligned and the discriminator still judges whether the image fits its mask.

Each transform is applied to each sample with probability ``p``: always (plain DiffAugment),
or as :class:`AdaptiveProbability` sets it. Draws come from the global torch RNG, which the
checkpoint saves, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

Stats = dict[str, torch.Tensor]


def _applied(stack: torch.Tensor, p: torch.Tensor | None) -> torch.Tensor:
    """(B,) 1.0 where a sample gets the transform, 0.0 where it is left alone."""
    batch = stack.shape[0]
    if p is None:  # plain DiffAugment: every sample, no draw
        return torch.ones(batch, device=stack.device, dtype=stack.dtype)
    return (torch.rand(batch, device=stack.device) < p).to(stack.dtype)


def _draw(stack: torch.Tensor, low: float, high: float, neutral: float, p: torch.Tensor | None) -> torch.Tensor:
    """One value per sample, (B, 1, 1, 1): U(low, high), or ``neutral`` where it is left alone."""
    value = low + (high - low) * torch.rand(stack.shape[0], 1, 1, 1, device=stack.device, dtype=stack.dtype)
    return neutral + (value - neutral) * _applied(stack, p).view(-1, 1, 1, 1)


def color(stack: torch.Tensor, image_channels: slice, p: torch.Tensor | None) -> torch.Tensor:
    start, stop, _ = image_channels.indices(stack.shape[1])
    images = stack[:, start:stop]  # (B, C, H, W)
    images = images + _draw(stack, -0.5, 0.5, 0.0, p)  # brightness
    mean = images.mean(dim=1, keepdim=True)
    images = mean + (images - mean) * _draw(stack, 0.0, 2.0, 1.0, p)  # saturation
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = mean + (images - mean) * _draw(stack, 0.5, 1.5, 1.0, p)  # contrast
    return torch.cat([stack[:, :start], images, stack[:, stop:]], dim=1)


def translation(stack: torch.Tensor, image_channels: slice, p: torch.Tensor | None,
                ratio: float = 0.125) -> torch.Tensor:
    batch, channels, height, width = stack.shape
    reach_y, reach_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    applied = _applied(stack, p).long()
    shift_y = torch.randint(-reach_y, reach_y + 1, (batch, 1), device=stack.device) * applied[:, None]
    shift_x = torch.randint(-reach_x, reach_x + 1, (batch, 1), device=stack.device) * applied[:, None]
    # Indices that fall outside land on the zero border of the padded stack.
    rows = (torch.arange(height, device=stack.device) + shift_y + 1).clamp(0, height + 1)  # (B, H)
    cols = (torch.arange(width, device=stack.device) + shift_x + 1).clamp(0, width + 1)  # (B, W)
    padded = F.pad(stack, (1, 1, 1, 1))  # (B, C, H + 2, W + 2)
    # Rows, then columns: two gathers cost a third of one 2-D advanced index, backward included.
    moved = padded.gather(2, rows[:, None, :, None].expand(batch, channels, height, width + 2))
    return moved.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))  # (B, C, H, W)


def cutout(stack: torch.Tensor, image_channels: slice, p: torch.Tensor | None,
           ratio: float = 0.5) -> torch.Tensor:
    batch, _, height, width = stack.shape
    box_h, box_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    # The box's centre is uniform over the image (odd sides one short), as in the official code.
    top = torch.randint(0, height + (1 - box_h % 2), (batch, 1, 1), device=stack.device) - box_h // 2
    left = torch.randint(0, width + (1 - box_w % 2), (batch, 1, 1), device=stack.device) - box_w // 2
    rows = torch.arange(height, device=stack.device)[None, :, None]
    cols = torch.arange(width, device=stack.device)[None, None, :]
    inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)  # (B, H, W)
    cut = inside.to(stack.dtype) * _applied(stack, p).view(-1, 1, 1)
    return stack * (1 - cut)[:, None]


Transform = Callable[[torch.Tensor, slice, torch.Tensor | None], torch.Tensor]
POLICIES: dict[str, Transform] = {"color": color, "translation": translation, "cutout": cutout}


class AdaptiveProbability:
    """StyleGAN2-ADA's heuristic for ``p``, generic over objectives.

    The overfitting signal is ``r_t = E[sign(confidence(D(real)) - 0.5)]`` over ``interval``
    discriminator steps (StyleGAN2-ADA: ``E[sign(D(real))]`` for its logistic loss): near 1
    when D is sure of every real, the training set is memorised. Every ``interval`` steps,
    ``p += sign(r_t - target) * images / ramp_images`` (images: reals seen in the interval),
    kept in [0, 1]: at most ``ramp_images`` reals take ``p`` from 0 to 1. StyleGAN2-ADA uses
    500k for runs of millions of images; runs here see thousands, so the ramp is a param.
    ``p`` starts at 0 and stays a tensor on the device: no sync per step.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, ramp_images: int = 5000):
        self.target, self.interval, self.ramp_images = target, interval, ramp_images
        self.p = torch.zeros(())
        self.sign_sum = torch.zeros(())  # sum of per-step r over the current interval
        self.steps = 0  # discriminator steps into the current interval
        self.images = 0  # reals seen in the current interval

    def observe(self, real_confidence: torch.Tensor) -> Stats:
        """One D step's confidence on its reals (B, ...) in [0, 1] -> stats; adjusts ``p``."""
        signs = torch.sign(real_confidence.detach().float() - 0.5).mean()
        self.p, self.sign_sum = self.p.to(signs.device), self.sign_sum.to(signs.device)
        stats = {"ada_p": self.p, "d_sign_real": signs}  # the p this step's inputs were drawn with
        self.sign_sum = self.sign_sum + signs
        self.steps += 1
        self.images += real_confidence.shape[0]
        if self.steps == self.interval:
            r_t = self.sign_sum / self.steps
            self.p = (self.p + torch.sign(r_t - self.target) * self.images / self.ramp_images).clamp(0, 1)
            self.sign_sum, self.steps, self.images = torch.zeros_like(self.sign_sum), 0, 0
        return stats

    def state_dict(self) -> dict:
        return {"p": float(self.p), "sign_sum": float(self.sign_sum), "steps": self.steps, "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.p, self.sign_sum = torch.tensor(state["p"]), torch.tensor(state["sign_sum"])
        self.steps, self.images = state["steps"], state["images"]


class DiffAugment:
    """The ``policy``'s transforms in order, each per sample with the current probability."""

    def __init__(self, policy: Sequence[str], adaptive: AdaptiveProbability | None = None):
        unknown = sorted(set(policy) - set(POLICIES))
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {unknown}; expected names from {sorted(POLICIES)}")
        self.policy, self.adaptive = list(policy), adaptive

    def __call__(self, stack: torch.Tensor, image_channels: slice) -> torch.Tensor:
        """(B, C, H, W) stack -> the same shape; ``image_channels``: which ones colour may touch."""
        p = None if self.adaptive is None else self.adaptive.p.to(stack.device)
        for name in self.policy:
            stack = POLICIES[name](stack, image_channels, p)
        return stack

    def observe(self, real_confidence: torch.Tensor) -> Stats:
        return {} if self.adaptive is None else self.adaptive.observe(real_confidence)

    def state_dict(self) -> dict:
        return {"adaptive": None if self.adaptive is None else self.adaptive.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.adaptive is not None and state.get("adaptive") is not None:
            self.adaptive.load_state_dict(state["adaptive"])


@contextmanager
def replayed_draws(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Rewind the global RNG after the block: the next stack of the same shape is augmented
    with the same draws. Feature matching compares D's features of a fake and of its real
    pair position by position; independent translations would compare misaligned maps."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=enabled):
        yield


class AugmentedDiscriminator(nn.Module):
    """D after the augmentation: the critic the objectives actually train.

    Penalties differentiate this one, as StyleGAN2-ADA computes R1 through its augment pipe:
    a penalty on D's raw inputs would constrain a function the losses never look at.
    """

    def __init__(self, discriminator: nn.Module, augment: DiffAugment, image_channels: slice):
        super().__init__()
        self.discriminator, self.augment, self.image_channels = discriminator, augment, image_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.discriminator(self.augment(inputs, self.image_channels))
