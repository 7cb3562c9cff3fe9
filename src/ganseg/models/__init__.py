"""Networks: plain ``nn.Module``s that map tensors to tensors.

``build_unet(config)`` picks the plain U-Net or the ResNet-encoder variant from
``config.encoder``; :mod:`ganseg.models.model_file` saves and loads them with their config.
"""

from __future__ import annotations

from torch import nn

from ganseg.models.unet import UNet, UNetConfig


def build_unet(config: UNetConfig) -> nn.Module:
    if config.encoder == "unet":
        return UNet(config)
    from ganseg.models.resnet_unet import ResNetUNet

    return ResNetUNet(config)


__all__ = ["UNet", "UNetConfig", "build_unet"]
