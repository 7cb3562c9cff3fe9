"""One step of adversarial fine-tuning, run by the train stage's epoch loop.

:class:`AdversarialStep` is a ``train_step`` for :func:`ganseg.training.loop.fit`: given one
batch of uint8 labelled pairs it runs the U-Net once, then the phases

    D   ``d_steps`` discriminator steps: objective.d_loss on (real pairs, predicted pairs)
        + the penalties due at this step (lazy ones scaled by their interval) on the
        per-sample mean score (:class:`MeanScore`), then the constraints (weight clipping);
    G   one U-Net step: seg_weight x segmentation + adv_weight x adversarial
        [+ the semi-supervised terms on a batch of unlabeled images, once they are on],
        with gradient-norm clipping as in train.

The loss math is the augment stage's :class:`ganseg.gan.trainer.GanLoss` with a
:class:`~ganseg.finetune.losses.SegmentationTask`; this module only sequences it. Everything
that makes a run resumable lives in :class:`AdversarialTrainState` (the checkpointed state of
``fit``) or is drawn from ``(seed, step)`` alone (:class:`UnlabeledBatches`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ganseg.finetune.losses import LabeledBatch, SemiSupervisedLoss
from ganseg.gan.data import dihedral
from ganseg.gan.losses import Stats
from ganseg.gan.trainer import GanLoss
from ganseg.training.checkpoint import TrainState
from ganseg.training.data import batch_to_device, hash_seed

GAN_PREFIX = "gan/"


class MeanScore(nn.Module):
    """A discriminator seen as one score per sample: the mean of its logit map, (B,).

    The objectives average the map, so this mean is the critic the penalties must constrain.
    Penalties differentiate the sum of what they are given; on the raw map (one logit per
    patch or pixel) that sum would inflate the gradient norm by the number of logits.
    """

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.discriminator(inputs).flatten(1).mean(dim=1)  # (B,)


@dataclass
class AdversarialTrainState(TrainState):
    """``TrainState`` plus ``extras``: stateful helpers (the GAN loss's image pool) saved in
    the same checkpoint. Each extra has ``state_dict`` / ``load_state_dict``."""

    extras: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "extras": {k: v.state_dict() for k, v in self.extras.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for key, extra in self.extras.items():
            extra.load_state_dict(state["extras"][key])


class UnlabeledBatches:
    """Batches of unlabeled uint8 images (N, C, H, W), drawn from ``(seed, step)`` alone.

    The stream walks one seeded permutation of the pool after another, ``batch_size`` images
    per step, each turned by a random one of the 8 symmetries of the square (microscopy has no
    preferred orientation). Step ``s`` always gets the same batch, so a resumed run continues
    the stream exactly without saving any state.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, augment: bool = True):
        if images.ndim != 4 or images.dtype != torch.uint8 or images.shape[0] == 0:
            raise ValueError("unlabeled images must be a non-empty uint8 (N, C, H, W) tensor")
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment and images.shape[-1] == images.shape[-2]

    def __len__(self) -> int:
        return self.images.shape[0]

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
        """uint8 (B, C, H, W) images of step ``step``."""
        images = self.images[self.indices(step)]
        if self.augment:
            generator = torch.Generator().manual_seed(hash_seed(self.seed, step, 1))
            images = dihedral(images, *(torch.rand(3, len(images), generator=generator) < 0.5))
        return images


class AdversarialStep:
    """The ``train_step`` of adversarial fine-tuning (see the module docstring).

    ``step_counter`` returns the global step index of the call (``fit`` keeps it in
    ``TrainState.step``, which a checkpoint restores): it drives instance-noise annealing,
    lazy penalties, the unlabeled stream and ``semi_start_step``.
    """

    def __init__(
        self,
        unet: nn.Module,
        discriminator: nn.Module,
        gan_loss: GanLoss,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        *,
        step_counter: Callable[[], int],
        scaler: torch.amp.GradScaler | None = None,
        grad_clip: float | None = None,
        d_steps: int = 1,
        constraints: list[Callable[[nn.Module], None]] = (),
        semi: SemiSupervisedLoss | None = None,
        unlabeled: UnlabeledBatches | None = None,
        semi_start_step: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        if (semi is None) != (unlabeled is None):
            raise ValueError("semi-supervised training needs both the loss and the unlabeled batches")
        self.unet, self.discriminator = unet, discriminator
        self.gan_loss = gan_loss
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.step_counter = step_counter
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.grad_clip = grad_clip
        self.d_steps = d_steps
        self.constraints = list(constraints)
        self.semi, self.unlabeled = semi, unlabeled
        self.semi_start_step = semi_start_step
        self.memory_format = memory_format
        self._lazy_stats: Stats = {}  # last values of penalties that run every k > 1 steps
        self._critic = MeanScore(discriminator)  # what the penalties differentiate

    @property
    def device(self) -> torch.device:
        return self.gan_loss.device

    def semi_active(self, step: int) -> bool:
        return self.semi is not None and step >= self.semi_start_step

    def __call__(self, batch) -> dict[str, torch.Tensor]:
        step = self.step_counter()
        images, labels = batch_to_device(batch, self.device, self.memory_format)
        inputs = self.gan_loss.prepare(self.unet, LabeledBatch(images, labels), step, grad=True)
        stats: Stats = {}
        for _ in range(self.d_steps):
            stats.update(self._discriminator_phase(inputs, step))
        stats.update(self._generator_phase(inputs, step))
        return {name if "/" in name else GAN_PREFIX + name: value for name, value in stats.items()}

    # -- phases ------------------------------------------------------------------------------
    def _discriminator_phase(self, inputs, step: int) -> Stats:
        self.discriminator.requires_grad_(True)
        self.d_optimizer.zero_grad(set_to_none=True)
        total, stats = self.gan_loss.d_main(self.discriminator, inputs)
        for penalty in self.gan_loss.penalties:
            if step % penalty.interval:
                continue
            term = self.gan_loss.penalty_term(penalty, gain=float(penalty.interval))
            penalty_loss, penalty_stats = term(self._critic, inputs)
            total = total + penalty_loss
            if penalty.interval > 1:
                self._lazy_stats.update(penalty_stats)
            else:
                stats.update(penalty_stats)
        self._backward_and_step(total, self.d_optimizer)
        for constraint in self.constraints:
            constraint(self.discriminator)
        return {**stats, **self._lazy_stats}

    def _generator_phase(self, inputs, step: int) -> Stats:
        # Gradients flow through D to the U-Net; D's own weights collect none.
        self.discriminator.requires_grad_(False)
        self.g_optimizer.zero_grad(set_to_none=True)
        total, stats = self.gan_loss.g_main(self.discriminator, inputs)
        stats.pop("g_loss", None)
        if self.semi is not None:
            if self.semi_active(step):
                unlabeled = self.unlabeled(step).to(self.device, non_blocking=True).float().div_(255.0)
                unlabeled = unlabeled.contiguous(memory_format=self.memory_format)
                semi_loss, semi_stats = self.semi(self.unet, self.discriminator, unlabeled, step)
                total = total + semi_loss
            else:  # warm-up: the same keys every step, so epoch means stay comparable
                zero = torch.zeros((), device=self.device)
                semi_stats = dict.fromkeys(("semi/loss", "semi/adv", "semi/self_training",
                                            "semi/trusted_fraction", "semi/confidence"), zero)
            stats.update(semi_stats)
        stats["train/g_loss"] = total.detach()
        grad_norm = self._backward_and_step(total, self.g_optimizer, clip=self.grad_clip)
        if grad_norm is not None:
            stats["train/grad_norm"] = grad_norm
        self.discriminator.requires_grad_(True)
        return stats

    def _backward_and_step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip: float | None = None
    ) -> torch.Tensor | None:
        scaler = self.scaler
        (scaler.scale(loss) if scaler else loss).backward()
        grad_norm = None
        if clip is not None:
            if scaler:
                scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip).detach()
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return grad_norm
