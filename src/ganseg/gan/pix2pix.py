"""pix2pix (Isola et al. 2017): a U-Net generator that paints an image for a mask, and a
PatchGAN discriminator that judges pairs patch by patch.

The discriminator does not know what it judges: it takes ``in_channels`` stacked inputs. The
augment stage feeds it (mask one-hot, image); adversarial fine-tuning feeds it (image, soft
mask). Both reuse this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ganseg.gan.layers import (
    MinibatchStdDev,
    NormKind,
    apply_spectral_norm,
    assert_shape,
    init_weights,
    norm_layer,
)


@dataclass(frozen=True)
class UNetGeneratorConfig:
    in_channels: int  # mask channels: 1 when binary, K one-hot channels when multi-class
    out_channels: int  # image channels
    base_channels: int = 32
    depth: int = 4  # down-samplings; the bottleneck is H / 2**depth
    norm: NormKind = "instance"
    dropout: float = 0.5  # in the three decoder blocks nearest the bottleneck (pix2pix's noise)
    upsample: Literal["transpose", "resize"] = "transpose"  # resize: nearest x2 + conv3x3


class Down(nn.Module):
    """conv4x4 stride 2 -> norm -> LeakyReLU(0.2): halves H and W."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormKind):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=norm == "none"),
            norm_layer(norm, out_channels),
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def upsampler(in_channels: int, out_channels: int, mode: str, bias: bool) -> nn.Module:
    """Double H and W: a transposed conv4x4 stride 2 (pix2pix), or nearest-neighbour resize
    then conv3x3, which avoids the transposed conv's checkerboard (Odena et al. 2016)."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)
    if mode == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                             nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias))
    raise ValueError(f"unknown upsample {mode!r}; expected transpose or resize")


class Up(nn.Module):
    """upsample x2 -> norm -> dropout -> ReLU, then concatenate the skip."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormKind, dropout: float,
                 upsample: str = "transpose"):
        super().__init__()
        self.block = nn.Sequential(
            upsampler(in_channels, out_channels, upsample, bias=norm == "none"),
            norm_layer(norm, out_channels),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.block(x)  # (B, out, 2h, 2w)
        return torch.cat([x, skip], dim=1)  # (B, out + skip, 2h, 2w)


class UNetGenerator(nn.Module):
    """Mask (B, in, H, W) in [-1, 1] -> image (B, out, H, W) in [-1, 1] (tanh).

    Encoder ``Down`` blocks keep their outputs as skips; decoder ``Up`` blocks double the size
    and concatenate the skip of the same size; ``head`` brings the last features to the image.
    """

    def __init__(self, cfg: UNetGeneratorConfig):
        super().__init__()
        self.cfg = cfg
        widths = [cfg.base_channels * min(2**level, 8) for level in range(cfg.depth)]
        self.downs = nn.ModuleList()
        previous = cfg.in_channels
        for level, width in enumerate(widths):
            # No norm on the raw input; none at the bottleneck, which may be 1x1.
            norm = "none" if level in (0, cfg.depth - 1) else cfg.norm
            self.downs.append(Down(previous, width, norm))
            previous = width
        self.ups = nn.ModuleList()
        for index, level in enumerate(reversed(range(cfg.depth - 1))):
            dropout = cfg.dropout if index < 3 else 0.0
            self.ups.append(Up(previous, widths[level], cfg.norm, dropout, cfg.upsample))
            previous = widths[level] * 2  # upsampled features + skip
        self.head = nn.Sequential(upsampler(previous, cfg.out_channels, cfg.upsample, bias=True), nn.Tanh())
        init_weights(self)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = masks.shape
        assert_shape(masks, (None, self.cfg.in_channels, None, None), "UNetGenerator input")
        if height % 2**self.cfg.depth or width % 2**self.cfg.depth:
            raise ValueError(f"UNetGenerator: size {height}x{width} not divisible by 2**{self.cfg.depth}")
        skips = []
        x = masks
        for down in self.downs:
            x = down(x)  # (B, w_level, H / 2**(level+1), W / 2**(level+1))
            skips.append(x)
        for up, skip in zip(self.ups, reversed(skips[:-1])):
            x = up(x, skip)
        images = self.head(x)  # (B, out, H, W)
        assert_shape(images, (batch, self.cfg.out_channels, height, width), "UNetGenerator output")
        return images


@dataclass(frozen=True)
class PatchDiscriminatorConfig:
    in_channels: int  # channels of the stacked inputs it judges, e.g. mask + image
    base_channels: int = 32
    layers: int = 3  # stride-2 convs; with 3 each logit sees a 70x70 receptive field
    norm: NormKind = "instance"
    spectral_norm: bool = False
    minibatch_std: bool = False


class PatchDiscriminator(nn.Module):
    """Stacked inputs (B, in, H, W) -> a grid of logits (B, 1, h, w), one per patch.

    C64 - C128 - C256 (stride 2) - C512 (stride 1) - 1, as in pix2pix, with widths from
    ``base_channels``. Minibatch stddev, when on, enters before the last two convs.
    """

    def __init__(self, cfg: PatchDiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.base_channels
        blocks: list[nn.Module] = [
            nn.Conv2d(cfg.in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for level in range(1, cfg.layers):
            wider = cfg.base_channels * min(2**level, 8)
            blocks += [
                nn.Conv2d(width, wider, 4, stride=2, padding=1, bias=cfg.norm == "none"),
                norm_layer(cfg.norm, wider),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = wider
        self.features = nn.Sequential(*blocks)
        self.minibatch_std = MinibatchStdDev() if cfg.minibatch_std else nn.Identity()
        wider = cfg.base_channels * min(2**cfg.layers, 8)
        self.head = nn.Sequential(
            nn.Conv2d(width + int(cfg.minibatch_std), wider, 4, stride=1, padding=1, bias=cfg.norm == "none"),
            norm_layer(cfg.norm, wider),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(wider, 1, 4, stride=1, padding=1),
        )
        init_weights(self)
        if cfg.spectral_norm:
            apply_spectral_norm(self)

    def forward(self, inputs: torch.Tensor, features: bool = False):
        """Logits; with ``features``, ``(logits, [every LeakyReLU's output])`` for feature matching
        (``layers + 1`` maps, as pix2pixHD's intermediate outputs)."""
        assert_shape(inputs, (None, self.cfg.in_channels, None, None), "PatchDiscriminator input")
        taps: list[torch.Tensor] = []
        x = _tapped(self.features, inputs, taps)  # (B, w, H / 2**layers, W / 2**layers)
        x = self.minibatch_std(x)  # (B, w [+1], ...)
        logits = _tapped(self.head, x, taps)  # (B, 1, H / 2**layers - 2, W / 2**layers - 2)
        return (logits, taps) if features else logits


def _tapped(layers: nn.Sequential, x: torch.Tensor, taps: list[torch.Tensor]) -> torch.Tensor:
    """Run ``layers``, appending each activation's output to ``taps``."""
    for layer in layers:
        x = layer(x)
        if isinstance(layer, nn.LeakyReLU):
            taps.append(x)
    return x


class MultiScaleDiscriminator(nn.Module):
    """pix2pixHD's multi-scale discriminator: ``scales`` PatchGANs of one config, scale ``s``
    judging the input average-pooled ``s`` times by 2 (3x3 stride 2, as pix2pixHD).

    Returns a list of logit maps, finest first; the objectives (``ganseg.gan.losses``) average
    their losses over the list, so every scale counts equally whatever its number of patches.
    With ``features``, ``(logits list, features of every scale, finest first)``.
    """

    def __init__(self, cfg: PatchDiscriminatorConfig, scales: int):
        super().__init__()
        self.cfg = cfg
        self.scales = nn.ModuleList(PatchDiscriminator(cfg) for _ in range(scales))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, inputs: torch.Tensor, features: bool = False):
        logits: list[torch.Tensor] = []
        taps: list[torch.Tensor] = []
        x = inputs
        for index, scale in enumerate(self.scales):
            if index:
                x = self.downsample(x)  # (B, in, ceil(h / 2), ceil(w / 2))
            scale_logits, scale_taps = scale(x, features=True)
            logits.append(scale_logits)
            taps.extend(scale_taps)
        return (logits, taps) if features else logits
