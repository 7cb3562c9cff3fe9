"""Discriminators that judge (image, mask) pairs for adversarial fine-tuning.

Two kinds, both taking the pair stacked on channels, image first: (B, C + Cm, H, W), images
and masks in [-1, 1] (see :func:`ganseg.finetune.losses.pair_inputs`):

- ``patchgan``: the augment stage's :class:`~ganseg.gan.pix2pix.PatchDiscriminator`, one logit
  per overlapping patch, (B, 1, H / 2**layers - 2, W / 2**layers - 2);
- ``pixel``: :class:`ConfidenceDiscriminator`, a fully convolutional network whose logit map
  is up-sampled to the input size: one confidence per pixel (Hung et al. 2018, "Adversarial
  Learning for Semi-Supervised Semantic Segmentation").

Either map serves as the confidence of the semi-supervised loss; a patch map is up-sampled
to pixels there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganseg.config.augment import GanObjectiveConfig
from ganseg.config.finetune import FinetuneDiscriminatorConfig
from ganseg.gan.build import build_patch_discriminator
from ganseg.gan.layers import NormKind, apply_spectral_norm, assert_shape, init_weights, norm_layer


@dataclass(frozen=True)
class ConfidenceDiscriminatorConfig:
    in_channels: int  # image channels + mask channels
    base_channels: int = 32
    layers: int = 3  # stride-2 convs: the logit map is H / 2**layers before up-sampling
    norm: NormKind = "instance"
    spectral_norm: bool = False


class ConfidenceDiscriminator(nn.Module):
    """Pairs (B, in, H, W) -> per-pixel logits (B, 1, H, W).

    ``layers`` blocks of conv4x4 stride 2 -> norm -> LeakyReLU(0.2) (widths base, 2 base, ...,
    capped at 8 base), a 3x3 classifier to one logit map, then bilinear up-sampling back to
    H x W. Hung et al. use 4 such blocks and no norm on 321 px crops; 3 suit 64 px images.
    """

    def __init__(self, cfg: ConfidenceDiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        blocks: list[nn.Module] = []
        width, previous = cfg.base_channels, cfg.in_channels
        for level in range(cfg.layers):
            width = cfg.base_channels * min(2**level, 8)
            norm = "none" if level == 0 else cfg.norm  # no norm on the raw pair
            blocks += [
                nn.Conv2d(previous, width, 4, stride=2, padding=1, bias=norm == "none"),
                norm_layer(norm, width),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            previous = width
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Conv2d(width, 1, 3, padding=1)
        init_weights(self)
        if cfg.spectral_norm:
            apply_spectral_norm(self)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        assert_shape(inputs, (None, self.cfg.in_channels, None, None), "ConfidenceDiscriminator input")
        x = self.features(inputs)  # (B, w, H / 2**layers, W / 2**layers)
        logits = self.classifier(x)  # (B, 1, H / 2**layers, W / 2**layers)
        return F.interpolate(logits, size=inputs.shape[-2:], mode="bilinear", align_corners=False)  # (B, 1, H, W)


def build_discriminator(
    in_channels: int, cfg: FinetuneDiscriminatorConfig, objective: GanObjectiveConfig
) -> nn.Module:
    """The discriminator ``cfg.kind`` names, judging ``in_channels`` stacked pair channels."""
    if cfg.kind == "patchgan":
        return build_patch_discriminator(in_channels, cfg, objective)
    if cfg.kind == "pixel":
        return ConfidenceDiscriminator(
            ConfidenceDiscriminatorConfig(
                in_channels=in_channels,
                base_channels=cfg.base_channels,
                layers=cfg.layers,
                norm=cfg.norm,
                spectral_norm=objective.spectral_norm,
            )
        )
    raise ValueError(f"unknown discriminator kind {cfg.kind!r}; expected patchgan or pixel")
