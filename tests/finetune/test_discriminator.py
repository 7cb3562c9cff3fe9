"""Discriminators of (image, mask) pairs: output shapes, and both kinds from one factory."""

import pytest
import torch

from ganseg.config.augment import GanObjectiveConfig
from ganseg.config.finetune import FinetuneDiscriminatorConfig
from ganseg.finetune.discriminator import (
    ConfidenceDiscriminator,
    ConfidenceDiscriminatorConfig,
    build_discriminator,
)
from ganseg.gan.pix2pix import PatchDiscriminator


@pytest.mark.parametrize("size", [(32, 32), (33, 47)])
def test_confidence_discriminator_returns_one_logit_per_pixel(size):
    network = ConfidenceDiscriminator(ConfidenceDiscriminatorConfig(in_channels=2, base_channels=8, layers=3))
    logits = network(torch.randn(2, 2, *size))
    assert logits.shape == (2, 1, *size)
    assert torch.isfinite(logits).all()


def test_confidence_map_depends_on_where_the_mask_changes():
    """Fully convolutional: a change in one corner moves that corner's confidence most."""
    torch.manual_seed(0)
    network = ConfidenceDiscriminator(ConfidenceDiscriminatorConfig(in_channels=2, base_channels=8, layers=2, norm="none"))
    pair = torch.zeros(1, 2, 64, 64)
    changed = pair.clone()
    changed[:, 1, :16, :16] = 1.0  # the mask channel, top-left corner only
    delta = (network(changed) - network(pair)).abs()[0, 0]
    assert delta[:16, :16].mean() > 10 * delta[48:, 48:].mean()


def test_factory_builds_the_patchgan_and_the_pixel_discriminator():
    objective = GanObjectiveConfig(spectral_norm=True)
    patch = build_discriminator(3, FinetuneDiscriminatorConfig(kind="patchgan", base_channels=8, layers=2), objective)
    pixel = build_discriminator(3, FinetuneDiscriminatorConfig(kind="pixel", base_channels=8, layers=2), objective)
    assert isinstance(patch, PatchDiscriminator)
    assert isinstance(pixel, ConfidenceDiscriminator)
    pairs = torch.randn(2, 3, 32, 32)
    assert patch(pairs).shape == (2, 1, 32 // 4 - 2, 32 // 4 - 2)
    assert pixel(pairs).shape == (2, 1, 32, 32)
    # spectral_norm of the shared objective block reaches both kinds
    assert any("parametrizations" in name for name, _ in pixel.named_parameters())
    assert any("parametrizations" in name for name, _ in patch.named_parameters())
