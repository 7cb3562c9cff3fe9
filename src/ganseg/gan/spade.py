"""SPADE (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization"):
a generator that paints an image for a mask by modulating every normalisation with the mask.

Follows NVlabs/SPADE (``models/networks/normalization.py`` ``SPADE``,
``architecture.py`` ``SPADEResnetBlock``, ``generator.py`` ``SPADEGenerator``), simplified for
small data on a CPU:

- widths follow the U-Net generator's rule (``base_channels * min(2**level, 8)``, level 0 at
  full size) instead of SPADE's 16 x ngf at the bottom; SPADE's hidden width of 128 (for
  ngf 64) becomes ``hidden_channels``;
- the number of up-samplings is set like the U-Net's depth (4 px at the start for 64 px);
- no encoder (SPADE's VAE option): the noise is a ``latent_dim`` vector per image, appended to
  the mask as constant channels wherever a SPADE layer reads the mask (as OASIS, Schonfeld et
  al. 2021, feeds 3-D noise): a constant input to the start conv would be erased by the first
  parameter-free norm, but a constant input to the modulation changes every layer's scale and
  shift, so different noise paints a different image for the same mask;
- each block reads the mask once (conv3x3-ReLU) for both of its SPADE layers, and gamma and
  beta come from one 1x1 conv of 2C outputs on that (SPADE: a 3x3 conv each); the learned
  shortcut is a plain conv1x1; no spectral norm in G.

Up-sampling is nearest x2 (SPADE's ``nn.Upsample``) followed by the next block's 3x3 convs:
no transposed convs, no checkerboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ganseg.gan.layers import assert_shape, init_weights


@dataclass(frozen=True)
class SpadeGeneratorConfig:
    in_channels: int  # mask channels: 1 when binary, K one-hot channels when multi-class
    out_channels: int  # image channels
    base_channels: int = 8  # width at full size; level l (H / 2**l) has base * min(2**l, 8)
    upsamplings: int = 4  # the first block runs at H / 2**upsamplings
    latent_dim: int = 16  # noise channels appended to the mask; 0 = deterministic
    hidden_channels: int = 32  # width of the conv net that reads the mask in every SPADE layer
    norm: Literal["instance", "batch"] = "instance"  # the parameter-free norm


def param_free_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation without a learned scale or shift: SPADE supplies both."""
    if kind == "instance":
        # GroupNorm with one channel per group is instance norm (faster CPU kernel, layers.norm_layer).
        return nn.GroupNorm(channels, channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    raise ValueError(f"unknown SPADE norm {kind!r}; expected instance or batch")


class Spade(nn.Module):
    """x (B, C, h, w), mask features (B, hidden, h, w) -> norm(x) * (1 + gamma) + beta.

    gamma and beta (B, C, h, w) come from one conv on the features the block read from the
    mask (SPADE's ``mlp_gamma`` / ``mlp_beta`` on ``mlp_shared``'s output).
    """

    def __init__(self, channels: int, hidden_channels: int, norm: str):
        super().__init__()
        self.norm = param_free_norm(norm, channels)
        # 1x1 where SPADE has 3x3: the block's mask reader already sees 3x3 of the mask, and the
        # 3x3 version doubled the generator's FLOPs at the default size (benchmarks in docs/augment.md).
        self.gamma_beta = nn.Conv2d(hidden_channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.gamma_beta(mask_features).chunk(2, dim=1)  # (B, C, h, w) each
        return self.norm(x) * (1 + gamma) + beta


class SpadeResBlock(nn.Module):
    """SPADE-LeakyReLU-conv3x3 twice, plus the input (through a conv1x1 when the width
    changes): SPADEResnetBlock, norm before conv.

    Simplified for cost: the block reads the mask once (conv3x3-ReLU on the condition resized
    to its size, nearest: labels stay labels) for both of its SPADE layers, where SPADE reads it
    in each, and the learned shortcut is a plain conv1x1 without its own SPADE layer.
    """

    def __init__(self, in_channels: int, out_channels: int, cfg: SpadeGeneratorConfig):
        super().__init__()
        middle = min(in_channels, out_channels)
        self.read_mask = nn.Sequential(
            nn.Conv2d(cfg.in_channels + cfg.latent_dim, cfg.hidden_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.norm_0 = Spade(in_channels, cfg.hidden_channels, cfg.norm)
        self.conv_0 = nn.Conv2d(in_channels, middle, 3, padding=1)
        self.norm_1 = Spade(middle, cfg.hidden_channels, cfg.norm)
        self.conv_1 = nn.Conv2d(middle, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels \
            else nn.Identity()

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        condition = F.interpolate(condition, size=x.shape[-2:], mode="nearest")  # (B, Cm + Z, h, w)
        mask_features = self.read_mask(condition)  # (B, hidden, h, w)
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, mask_features), 0.2))  # (B, middle, h, w)
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, mask_features), 0.2))  # (B, out, h, w)
        return self.shortcut(x) + dx


class SpadeGenerator(nn.Module):
    """Mask (B, in, H, W) in [-1, 1] [, noise (B, latent_dim)] -> image (B, out, H, W) in [-1, 1].

    ``start`` convolves the mask resized to H / 2**upsamplings (SPADE without an encoder);
    ``head`` is a block at that size; each of ``ups`` doubles the size (nearest) and runs a
    block that narrows towards ``base_channels``; ``to_image`` is LeakyReLU-conv3x3-tanh.
    Without ``noise`` the generator draws it from the global torch RNG (seeded by the caller,
    so a resumed run draws what an uninterrupted one would).
    """

    def __init__(self, cfg: SpadeGeneratorConfig):
        super().__init__()
        self.cfg = cfg
        width = [cfg.base_channels * min(2**level, 8) for level in range(cfg.upsamplings + 1)]
        top = width[cfg.upsamplings]
        self.start = nn.Conv2d(cfg.in_channels + cfg.latent_dim, top, 3, padding=1)
        self.head = SpadeResBlock(top, top, cfg)
        self.ups = nn.ModuleList(
            SpadeResBlock(width[level + 1], width[level], cfg) for level in reversed(range(cfg.upsamplings))
        )
        self.to_image = nn.Conv2d(width[0], cfg.out_channels, 3, padding=1)
        init_weights(self)

    def forward(self, masks: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, height, width = masks.shape
        assert_shape(masks, (None, self.cfg.in_channels, None, None), "SpadeGenerator input")
        factor = 2**self.cfg.upsamplings
        if height % factor or width % factor:
            raise ValueError(f"SpadeGenerator: size {height}x{width} not divisible by 2**{self.cfg.upsamplings}")
        if noise is None:
            noise = torch.randn(batch, self.cfg.latent_dim, device=masks.device)
        assert_shape(noise, (batch, self.cfg.latent_dim), "SpadeGenerator noise")
        planes = noise.to(masks.dtype)[:, :, None, None].expand(-1, -1, height, width)
        condition = torch.cat([masks, planes], dim=1)  # (B, Cm + Z, H, W)
        x = F.interpolate(condition, size=(height // factor, width // factor), mode="nearest")
        x = self.start(x)  # (B, w_top, H / 2**ups, W / 2**ups)
        x = self.head(x, condition)
        for up in self.ups:
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, w, 2h, 2w)
            x = up(x, condition)  # (B, w_level, 2h, 2w)
        images = torch.tanh(self.to_image(F.leaky_relu(x, 0.2)))  # (B, out, H, W)
        assert_shape(images, (batch, self.cfg.out_channels, height, width), "SpadeGenerator output")
        return images
