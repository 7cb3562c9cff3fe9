"""One step of adversarial fine-tuning: the augment stage's phases with the U-Net as generator.

:class:`AdversarialStep` is a ``train_step`` for :func:`ganseg.training.loop.fit`: given one
batch of uint8 labelled pairs it runs the U-Net once, then the phases of
:mod:`ganseg.training.phases`, built as the GAN's are (:func:`ganseg.gan.trainer.discriminator_phases`):

    D        objective.d_loss on (real pairs, predicted pairs) + eager penalties, then the
             constraints (weight clipping)
    Dreg/x   a lazy penalty, every k steps, scaled by k
    G        seg_weight x segmentation + adv_weight x adversarial [+ the semi-supervised term on
             a batch of unlabeled images, once the warm-up is over], every ``g_interval``
             steps, with gradient-norm clipping as in train

The loss math is :class:`ganseg.gan.losses.GanLoss` with a
:class:`~ganseg.finetune.losses.SegmentationTask`; the semi-supervised loss is one more G term.
Everything that makes a run resumable lives in the one :class:`~ganseg.training.checkpoint.TrainState`
(the GAN loss's image pool is one of its extras) or is drawn from ``(seed, step)`` alone
(:class:`UnlabeledBatches`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ganseg.data.patches import PatchPlan, cut
from ganseg.finetune.losses import LabeledBatch, SemiSupervisedLoss
from ganseg.gan.data import dihedral
from ganseg.gan.losses import GanLoss, Stats
from ganseg.gan.trainer import discriminator_phases
from ganseg.training.data import batch_to_device, hash_seed
from ganseg.training.phases import Phase, run_phases

GAN_PREFIX = "gan/"
SEMI_STATS = ("semi/loss", "semi/adv", "semi/self_training", "semi/trusted_fraction", "semi/confidence")


class UnlabeledBatches:
    """Batches of unlabeled uint8 patches (B, C, P, P), drawn from ``(seed, step)`` alone.

    The stream walks one seeded permutation of the pool (uint8 (C, H, W) images of any sizes)
    after another, ``batch_size`` images per step; from each a uniformly placed ``patch`` is cut
    (:mod:`ganseg.data.patches`; padded by reflection where the image is smaller), turned by a
    random one of the 8 symmetries of the square (microscopy has no preferred orientation).
    Step ``s`` always gets the same batch, so a resumed run continues the stream exactly without
    saving any state.
    """

    def __init__(self, images: Sequence[torch.Tensor], batch_size: int, seed: int, patch: int, augment: bool = True):
        if not len(images) or any(image.ndim != 3 or image.dtype != torch.uint8 for image in images):
            raise ValueError("unlabeled images must be a non-empty list of uint8 (C, H, W) tensors")
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.windows = PatchPlan.uniform(images, patch)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def indices(self, step: int) -> torch.Tensor:
        count = len(self)
        positions = torch.arange(step * self.batch_size, (step + 1) * self.batch_size)
        passes = positions // count
        picked = []
        for pass_index in passes.unique().tolist():
            order = torch.randperm(count, generator=torch.Generator().manual_seed(hash_seed(self.seed, pass_index)))
            picked.append(order[positions[passes == pass_index] % count])
        return torch.cat(picked)

    def __call__(self, step: int) -> torch.Tensor:
        """uint8 (B, C, P, P) patches of step ``step``."""
        rng = np.random.default_rng([self.seed, step, 2])
        patches = []
        for index in self.indices(step).tolist():
            top, left = self.windows.window(index, rng)
            patches.append(cut(self.images[index], top, left, self.windows.size, fill=None))
        images = torch.stack(patches)
        if self.augment:
            generator = torch.Generator().manual_seed(hash_seed(self.seed, step, 1))
            images = dihedral(images, *(torch.rand(3, len(images), generator=generator) < 0.5))
        return images


class AdversarialStep:
    """The ``train_step(batch, step)`` of adversarial fine-tuning: the U-Net runs once, then the
    phases (see the module docstring), through the one phase runner of every trainer."""

    def __init__(
        self,
        unet: nn.Module,
        discriminator: nn.Module,
        gan_loss: GanLoss,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        *,
        scaler: torch.amp.GradScaler | None = None,
        grad_clip: float | None = None,
        g_interval: int = 1,
        constraints: list[Callable[[nn.Module], None]] = (),
        semi: SemiSupervisedLoss | None = None,
        unlabeled: UnlabeledBatches | None = None,
        semi_start_step: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        if (semi is None) != (unlabeled is None):
            raise ValueError("semi-supervised training needs both the loss and the unlabeled batches")
        self.unet, self.gan_loss, self.scaler = unet, gan_loss, scaler
        self.g_interval = g_interval
        self.semi, self.unlabeled = semi, unlabeled
        self.semi_start_step = semi_start_step
        self.memory_format = memory_format
        g_terms = [gan_loss.g_main, *([self.semi_term] if semi is not None else [])]
        self.phases = [
            *discriminator_phases(discriminator, d_optimizer, gan_loss, constraints),
            Phase("G", unet, g_optimizer, g_terms, g_interval, discriminator, grad_clip=grad_clip,
                  grad_norm_stat="train/grad_norm"),
        ]

    @property
    def device(self) -> torch.device:
        return self.gan_loss.device

    def semi_active(self, step: int) -> bool:
        """``step`` 1-based: on from the first step after ``semi_start_step`` warm-up steps."""
        return self.semi is not None and step > self.semi_start_step

    def semi_term(self, discriminator: nn.Module, inputs) -> tuple[torch.Tensor, Stats]:
        """The unlabeled images' share of the U-Net's loss; zeros (same keys) while warming up."""
        if not self.semi_active(inputs.step):
            zero = torch.zeros((), device=self.device)
            return zero, dict.fromkeys(SEMI_STATS, zero)
        images = self.unlabeled(inputs.step - 1).to(self.device, non_blocking=True).float().div_(255.0)
        images = images.contiguous(memory_format=self.memory_format)
        return self.semi(self.unet, discriminator, images, inputs.step)

    def __call__(self, batch, step: int) -> Stats:
        images, labels = batch_to_device(batch, self.device, self.memory_format)
        inputs = self.gan_loss.prepare(self.unet, LabeledBatch(images, labels), step,
                                       grad=step % self.g_interval == 0)
        stats, totals = run_phases(self.phases, inputs, step, self.scaler)
        stats.pop("g_loss", None)
        if "G" in totals:
            stats["train/g_loss"] = totals["G"]
        return {name if "/" in name else GAN_PREFIX + name: value for name, value in stats.items()}
