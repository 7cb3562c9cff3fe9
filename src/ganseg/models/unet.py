"""U-Net (Ronneberger et al., 2015) built from named parts; ``forward`` reads like the diagram.

    x ─ DoubleConv ──────────────────────────────────── Up ─ OutConv ─ logits
            └ Down ─────────────────────────────── Up ┘
                  └ Down ────────────────────── Up ┘
                        └ Down (bottleneck) ──┘

Each ``Down`` halves the side and doubles the width; each ``Up`` doubles the side, joins the
skip connection of the same level and halves the width. Any input side works: pooling floors
odd sides and ``Up`` pads the up-sampled map back to its skip's size. The network only maps
tensors to tensors; it never touches files, optimisers or loggers.

Input: float (B, C, H, W), images scaled to [0, 1]. Output: logits (B, K, H, W), K = 1 for
binary segmentation (sigmoid) and K = num_classes for multi-class (softmax).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild the network; stored in every model file."""

    in_channels: int = 1
    num_classes: int = 1  # 1 = binary (one logit map); K >= 2 = K logit maps
    depth: int = 4  # number of Down (and Up) steps
    base_width: int = 32  # channels of the first DoubleConv; doubles at every Down
    upsampling: Literal["bilinear", "transpose"] = "bilinear"
    batch_norm: bool = True
    dropout: float = 0.0  # dropout probability inside the bottleneck's DoubleConv
    encoder: Literal["unet", "resnet18", "resnet34", "resnet50"] = "unet"

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def out_channels(self) -> int:
        return 1 if self.num_classes == 1 else self.num_classes

    @property
    def down_samplings(self) -> int:
        """Halvings of the side on the way down: a patch side divisible by 2**this keeps every
        skip connection aligned (a ResNet encoder halves five times)."""
        return self.depth if self.encoder == "unet" else 5


def assert_shape(tensor: torch.Tensor, expected: tuple[int | None, ...], where: str) -> None:
    """Fail early, naming the block, when a tensor's shape is not what the next block needs."""
    if tensor.ndim != len(expected) or any(
        want is not None and have != want for have, want in zip(tensor.shape, expected)
    ):
        raise ValueError(f"{where}: expected shape {expected} (None = any), got {tuple(tensor.shape)}")


class DoubleConv(nn.Sequential):
    """(3x3 conv -> [batch norm] -> ReLU) x 2; keeps the spatial size."""

    def __init__(self, in_ch: int, out_ch: int, batch_norm: bool = True, dropout: float = 0.0):
        layers: list[nn.Module] = []
        for conv_in in (in_ch, out_ch):
            # A bias before batch norm is cancelled by its mean subtraction: leave it out.
            layers.append(nn.Conv2d(conv_in, out_ch, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.insert(len(layers) // 2, nn.Dropout2d(dropout))
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max-pool then DoubleConv: (B, in, H, W) -> (B, out, H // 2, W // 2)."""

    def __init__(self, in_ch: int, out_ch: int, batch_norm: bool = True, dropout: float = 0.0):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch, batch_norm, dropout))


class Up(nn.Module):
    """Up-sample ``below``, pad it to ``skip``'s size, concatenate, DoubleConv.

    ``below``: (B, in_ch, h, w) from the level below; ``skip``: (B, skip_ch, H, W) with
    H in {2h, 2h + 1}. Output: (B, out_ch, H, W).
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, mode: str, batch_norm: bool = True):
        super().__init__()
        if mode == "bilinear":
            # Parameter-free up-sampling; a 1x1 conv halves the width as the transpose would.
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_ch, in_ch // 2, kernel_size=1, bias=False),
            )
        elif mode == "transpose":
            self.up = nn.ConvTranspose2d(in_ch, in_ch // 2, kernel_size=2, stride=2)
        else:
            raise ValueError(f"upsampling must be 'bilinear' or 'transpose', got {mode!r}")
        self.conv = DoubleConv(in_ch // 2 + skip_ch, out_ch, batch_norm)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        below = self.up(below)  # (B, in_ch // 2, 2h, 2w)
        dy, dx = skip.shape[-2] - below.shape[-2], skip.shape[-1] - below.shape[-1]
        if dy or dx:  # odd side at this level: pooling floored it, pad back symmetrically
            below = F.pad(below, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, below], dim=1))  # (B, out_ch, H, W)


class OutConv(nn.Conv2d):
    """1x1 conv to one logit map per output class."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(in_ch, out_ch, kernel_size=1)


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        if config.encoder != "unet":
            raise ValueError("UNet is the plain encoder; use build_unet() for a ResNet encoder")
        if config.depth < 1:
            raise ValueError(f"depth must be >= 1, got {config.depth}")
        self.config = config
        widths = [config.base_width * 2**level for level in range(config.depth + 1)]
        bn = config.batch_norm
        self.inc = DoubleConv(config.in_channels, widths[0], bn)
        self.downs = nn.ModuleList(
            Down(widths[level], widths[level + 1], bn, config.dropout if level == config.depth - 1 else 0.0)
            for level in range(config.depth)
        )
        # Up at level l joins the map from level l + 1 with the skip of level l.
        self.ups = nn.ModuleList(
            Up(widths[level + 1], widths[level], widths[level], config.upsampling, bn)
            for level in reversed(range(config.depth))
        )
        self.outc = OutConv(widths[0], config.out_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert_shape(images, (None, self.config.in_channels, None, None), "UNet input")
        x = self.inc(images)  # (B, w, H, W)
        skips = [x]
        for down in self.downs:  # level l: (B, w * 2^l, H / 2^l, W / 2^l)
            x = down(x)
            skips.append(x)
        skips.pop()  # the bottleneck is not a skip
        for up in self.ups:  # back up: x = up(x, skip of the level above)
            x = up(x, skips.pop())
        return self.outc(x)  # (B, K, H, W) logits
