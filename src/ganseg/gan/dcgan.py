"""DCGAN (Radford et al. 2016) that draws an image and its mask together from noise.

The generator's output stacks the image channels and the mask channels (1 when binary, K
when multi-class), all through tanh; the discriminator judges such stacks. Real stacks are
(image, mask encoded in {-1, 1}). Optional residual blocks deepen each resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from ganseg.gan.layers import (
    MinibatchStdDev,
    NormKind,
    ResBlock,
    apply_spectral_norm,
    assert_shape,
    init_weights,
    norm_layer,
)


@dataclass(frozen=True)
class DcganGeneratorConfig:
    latent_dim: int
    out_channels: int  # image channels + mask channels
    image_size: int  # a power of two >= 8
    base_channels: int = 32  # width at full resolution; doubles per halving, at most 16x
    residual_blocks: int = 0  # per resolution, after each up-sampling
    norm: NormKind = "batch"


def _widths(base: int, image_size: int) -> list[int]:
    """Widths from the 4x4 start up to full size, e.g. 64 px -> [8b, 8b, 4b, 2b, b]."""
    levels = int(math.log2(image_size)) - 2  # 4 -> image_size takes `levels` doublings
    return [base * min(2 ** (levels - i), 16) for i in range(levels + 1)]


def _check_size(image_size: int) -> None:
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"DCGAN needs a power-of-two image size >= 8, got {image_size}")


class DcganGenerator(nn.Module):
    """z (B, latent) -> stacked image and mask (B, out, S, S) in [-1, 1].

    project: transposed conv 1x1 -> 4x4; then one ``up`` block per doubling (transposed
    conv4x4 stride 2, norm, ReLU, optional residual blocks); ``head`` conv3x3 + tanh.
    """

    def __init__(self, cfg: DcganGeneratorConfig):
        super().__init__()
        _check_size(cfg.image_size)
        self.cfg = cfg
        widths = _widths(cfg.base_channels, cfg.image_size)
        self.project = nn.Sequential(
            nn.ConvTranspose2d(cfg.latent_dim, widths[0], 4, stride=1, padding=0, bias=False),
            norm_layer(cfg.norm, widths[0]),
            nn.ReLU(inplace=True),
        )
        ups = []
        for wide, narrow in pairwise(widths):
            block: list[nn.Module] = [
                nn.ConvTranspose2d(wide, narrow, 4, stride=2, padding=1, bias=cfg.norm == "none"),
                norm_layer(cfg.norm, narrow),
                nn.ReLU(inplace=True),
            ]
            block += [ResBlock(narrow, cfg.norm, nn.ReLU()) for _ in range(cfg.residual_blocks)]
            ups.append(nn.Sequential(*block))
        self.ups = nn.Sequential(*ups)
        self.head = nn.Sequential(nn.Conv2d(widths[-1], cfg.out_channels, 3, padding=1), nn.Tanh())
        init_weights(self)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        assert_shape(noise, (None, self.cfg.latent_dim), "DcganGenerator input")
        x = self.project(noise[:, :, None, None])  # (B, w0, 4, 4)
        x = self.ups(x)  # (B, base, S, S)
        out = self.head(x)  # (B, out, S, S)
        assert_shape(out, (noise.shape[0], self.cfg.out_channels, self.cfg.image_size, self.cfg.image_size),
                     "DcganGenerator output")
        return out


@dataclass(frozen=True)
class DcganDiscriminatorConfig:
    in_channels: int
    image_size: int
    base_channels: int = 32
    residual_blocks: int = 0
    norm: NormKind = "instance"
    spectral_norm: bool = False
    minibatch_std: bool = False


class DcganDiscriminator(nn.Module):
    """Stacked image and mask (B, in, S, S) -> one logit per sample (B, 1, 1, 1).

    ``stem`` conv4x4 stride 2 (no norm); ``downs`` halve to 4x4 (conv4x4 stride 2, norm,
    LeakyReLU, optional residual blocks); ``head`` (minibatch stddev,) conv4x4 valid -> 1.
    """

    def __init__(self, cfg: DcganDiscriminatorConfig):
        super().__init__()
        _check_size(cfg.image_size)
        self.cfg = cfg
        widths = list(reversed(_widths(cfg.base_channels, cfg.image_size)))[1:]  # S/2 .. 4
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))
        downs = []
        for narrow, wide in pairwise(widths):
            block: list[nn.Module] = [
                nn.Conv2d(narrow, wide, 4, stride=2, padding=1, bias=cfg.norm == "none"),
                norm_layer(cfg.norm, wide),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            block += [ResBlock(wide, cfg.norm, nn.LeakyReLU(0.2)) for _ in range(cfg.residual_blocks)]
            downs.append(nn.Sequential(*block))
        self.downs = nn.Sequential(*downs)
        self.minibatch_std = MinibatchStdDev() if cfg.minibatch_std else nn.Identity()
        self.head = nn.Conv2d(widths[-1] + int(cfg.minibatch_std), 1, 4, stride=1, padding=0)
        init_weights(self)
        if cfg.spectral_norm:
            apply_spectral_norm(self)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        size = self.cfg.image_size
        assert_shape(inputs, (None, self.cfg.in_channels, size, size), "DcganDiscriminator input")
        x = self.stem(inputs)  # (B, w, S/2, S/2)
        x = self.downs(x)  # (B, w', 4, 4)
        return self.head(self.minibatch_std(x))  # (B, 1, 1, 1)
