"""Building blocks shared by the GAN networks: norms, minibatch stddev, residual blocks.

Networks here are plain ``nn.Module``s: they never touch files, optimizers or loggers.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

NormKind = Literal["batch", "instance", "none"]


def norm_layer(kind: NormKind, channels: int) -> nn.Module:
    """A 2-d normalisation of ``channels`` features, or identity.

    ``instance`` keeps samples independent (required by per-sample gradient penalties and by
    judging real and fake in one batch); ``batch`` is the DCGAN / original pix2pix choice.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        # GroupNorm with one channel per group is instance norm with a per-channel affine,
        # the same function as InstanceNorm2d(affine=True); its CPU kernel is ~3x faster.
        return nn.GroupNorm(channels, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected batch, instance or none")


class MinibatchStdDev(nn.Module):
    """Append one feature map: the mean standard deviation across a group of samples.

    A discriminator that sees how varied a group is can tell a collapsed generator (all
    samples alike) from real data (Karras et al. 2018). Groups are *consecutive* samples, so
    a batch made of B real then B fake samples (B divisible by the group size) never mixes
    real and fake inside one group.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        group = min(self.group_size, batch)
        while batch % group:  # largest group size <= requested that divides the batch
            group -= 1
        grouped = x.float().reshape(batch // group, group, channels, height, width)
        std = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt()  # (B/G, C, H, W)
        stat = std.mean(dim=(1, 2, 3), keepdim=True)  # (B/G, 1, 1, 1)
        stat = stat.repeat_interleave(group, dim=0).expand(batch, 1, height, width)
        return torch.cat([x, stat.to(x.dtype)], dim=1)  # (B, C + 1, H, W)


class ResBlock(nn.Module):
    """conv3x3-norm-act-conv3x3-norm plus the identity: same channels, same size."""

    def __init__(self, channels: int, norm: NormKind, activation: nn.Module):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none"),
            norm_layer(norm, channels),
            activation,
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none"),
            norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral-normalise every conv and linear weight of ``module`` in place (Miyato 2018)."""
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            apply_spectral_norm(child)
    return module


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN / pix2pix initialisation: N(0, 0.02) convs, N(1, 0.02) norm scales, zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, std)
            nn.init.zeros_(layer.bias)


def assert_shape(tensor: torch.Tensor, expected: tuple[int | None, ...], where: str) -> None:
    """Check a tensor's shape at a module boundary; ``None`` matches any size."""
    if tensor.ndim != len(expected) or any(
        want is not None and got != want for got, want in zip(tensor.shape, expected)
    ):
        raise ValueError(f"{where}: expected shape {expected}, got {tuple(tensor.shape)}")
