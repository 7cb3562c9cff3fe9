"""Tiny networks and batches for the fine-tuning tests (32 px, a few images, one thread)."""

from __future__ import annotations

import pytest
import torch

from ganseg.config.augment import GanObjectiveConfig
from ganseg.config.finetune import FinetuneDiscriminatorConfig
from ganseg.finetune.discriminator import build_discriminator
from ganseg.finetune.losses import SegmentationTask, SemiSupervisedLoss
from ganseg.finetune.step import AdversarialStep, UnlabeledBatches
from ganseg.gan.build import build_gan_objective, build_stabilisers
from ganseg.gan.losses import GanLoss
from ganseg.models import UNetConfig, build_unet
from ganseg.training.losses import SegmentationLoss


@pytest.fixture(autouse=True)
def _single_thread(single_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""


def tiny_batch(count: int = 4, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 1, H, W) with a bright disc and the disc's mask (N, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, masks = [], []
    for _ in range(count):
        cy, cx = torch.randint(8, size - 8, (2,), generator=generator).tolist()
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
        noise = torch.randint(0, 80, (size, size), generator=generator)
        images.append(torch.where(disc, 200, noise).to(torch.uint8)[None])
        masks.append(disc.to(torch.uint8))
    return torch.stack(images), torch.stack(masks)


def tiny_unet(seed: int = 0, num_classes: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_unet(UNetConfig(depth=2, base_width=4, num_classes=num_classes))


def build_step(
    *,
    kind: str = "patchgan",
    objective: GanObjectiveConfig | None = None,
    unlabeled: torch.Tensor | None = None,
    num_classes: int = 1,
    seed: int = 0,
    semi_start_step: int = 0,
    adv_weight: float = 0.01,
    threshold: float = 0.2,
    counter: list[int] | None = None,
):
    """An AdversarialStep over a tiny U-Net and discriminator; returns (step, unet, discriminator)."""
    objective = objective or GanObjectiveConfig()
    unet = tiny_unet(seed, num_classes)
    torch.manual_seed(seed + 100)
    mask_ch = 1 if num_classes == 1 else num_classes
    discriminator = build_discriminator(
        1 + mask_ch, FinetuneDiscriminatorConfig(kind=kind, base_channels=8, layers=2), objective
    )
    stabilisers = build_stabilisers(objective, total_steps=10)
    gan_loss = GanLoss(
        SegmentationTask(SegmentationLoss(), num_classes),
        build_gan_objective(objective),
        stabilisers.penalties,
        stabilisers.instance_noise,
        stabilisers.pool,
        adversarial_weight=adv_weight,
        augment=stabilisers.augment,
    )
    semi = SemiSupervisedLoss(gan_loss, confidence_threshold=threshold) if unlabeled is not None else None
    step = AdversarialStep(
        unet,
        discriminator,
        gan_loss,
        torch.optim.Adam(unet.parameters(), lr=1e-3),
        torch.optim.Adam(discriminator.parameters(), lr=1e-3),
        grad_clip=1.0,
        g_interval=objective.d_steps_per_g,
        constraints=stabilisers.constraints,
        semi=semi,
        unlabeled=UnlabeledBatches(unlabeled, 3, seed=0, patch=unlabeled.shape[-1]) if unlabeled is not None else None,
        semi_start_step=semi_start_step,
    )
    return step, unet, discriminator
