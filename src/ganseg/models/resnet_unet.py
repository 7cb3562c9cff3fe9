"""U-Net with a torchvision ResNet encoder (the "ResNet-UNet" of many segmentation kits).

The ResNet's stem and four stages replace the plain encoder; the decoder is the same named
``Up`` parts as :mod:`ganseg.models.unet`, joined to the stem (1/2) and stages 1-3 (1/4, 1/8,
1/16), then one last up-sampling back to full size. Pretrained ImageNet weights come only
from a file the caller hands in (see :func:`ganseg.models.pretrained`): this module never
downloads anything and never touches files.

Input: float (B, C, H, W) in [0, 1], any side (odd levels are padded like the plain U-Net).
Output: logits (B, K, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tv_models

from ganseg.models.unet import DoubleConv, OutConv, UNetConfig, Up, assert_shape

# Width of the stem and of stages 1-4 for each encoder.
ENCODER_WIDTHS = {
    "resnet18": (64, 64, 128, 256, 512),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
}


class ResNetUNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        if config.encoder not in ENCODER_WIDTHS:
            raise ValueError(f"unknown encoder {config.encoder!r}; choose from {sorted(ENCODER_WIDTHS)}")
        self.config = config
        resnet = getattr(tv_models, config.encoder)(weights=None)
        if config.in_channels != 3:
            resnet.conv1 = nn.Conv2d(config.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)  # (B, 64, H/2, W/2)
        self.pool = resnet.maxpool
        self.stage1, self.stage2 = resnet.layer1, resnet.layer2  # 1/4, 1/8
        self.stage3, self.stage4 = resnet.layer3, resnet.layer4  # 1/16, 1/32 (bottleneck)
        self.dropout = nn.Dropout2d(config.dropout) if config.dropout > 0 else nn.Identity()

        stem_w, w1, w2, w3, w4 = ENCODER_WIDTHS[config.encoder]
        bn, mode = config.batch_norm, config.upsampling
        dec = [config.base_width * 2**level for level in range(4)]  # decoder widths, fine to coarse
        self.up4 = Up(w4, w3, dec[3], mode, bn)  # 1/32 -> 1/16
        self.up3 = Up(dec[3], w2, dec[2], mode, bn)  # -> 1/8
        self.up2 = Up(dec[2], w1, dec[1], mode, bn)  # -> 1/4
        self.up1 = Up(dec[1], stem_w, dec[0], mode, bn)  # -> 1/2
        self.head = DoubleConv(dec[0], dec[0], bn)  # refines after the last x2 up-sampling
        self.outc = OutConv(dec[0], config.out_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert_shape(images, (None, self.config.in_channels, None, None), "ResNetUNet input")
        x0 = self.stem(images)  # (B, 64, H/2, W/2)
        x1 = self.stage1(self.pool(x0))  # (B, w1, H/4, W/4)
        x2 = self.stage2(x1)  # (B, w2, H/8, W/8)
        x3 = self.stage3(x2)  # (B, w3, H/16, W/16)
        x4 = self.dropout(self.stage4(x3))  # (B, w4, H/32, W/32)
        x = self.up4(x4, x3)
        x = self.up3(x, x2)
        x = self.up2(x, x1)
        x = self.up1(x, x0)  # (B, dec0, H/2, W/2)
        x = F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return self.outc(self.head(x))  # (B, K, H, W)

    def load_encoder_state(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """Load torchvision ResNet weights into the encoder; returns the keys left unused.

        A 1-channel input keeps the pretrained first conv by summing its RGB filters, the
        usual way to reuse ImageNet weights on grayscale images.
        """
        mapping = {"conv1": "stem.0", "bn1": "stem.1", "layer1": "stage1", "layer2": "stage2",
                   "layer3": "stage3", "layer4": "stage4"}
        own = self.state_dict()
        loaded, unused = {}, []
        for key, value in state_dict.items():
            head, _, rest = key.partition(".")
            if head not in mapping:
                unused.append(key)  # the classifier (fc.*)
                continue
            target = f"{mapping[head]}.{rest}"
            if key == "conv1.weight" and value.shape[1] != own[target].shape[1]:
                value = value.sum(dim=1, keepdim=True).repeat(1, own[target].shape[1], 1, 1) / own[target].shape[1]
            if own[target].shape != value.shape:
                raise ValueError(f"pretrained {key}: shape {tuple(value.shape)} != {tuple(own[target].shape)}")
            loaded[target] = value
        missing = [k for k in own if k.startswith(("stem.", "stage")) and k not in loaded]
        if missing:
            raise ValueError(f"pretrained weights lack {len(missing)} encoder tensors, e.g. {missing[0]}")
        self.load_state_dict(loaded, strict=False)
        return unused
