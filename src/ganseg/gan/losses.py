"""GAN objectives behind one interface, generic over what the discriminator judges.

An objective turns discriminator logits into losses:

- ``d_loss(real_logits, fake_logits) -> (loss, stats)``: the discriminator's loss;
- ``g_loss(fake_logits) -> (loss, stats)``: the generator's adversarial loss.

Logits can have any shape (one per image, or a PatchGAN grid); every loss is a mean. The
objective never sees the inputs, so the same objects serve mask-to-image synthesis (augment)
and adversarial fine-tuning of a segmenter on (image, mask) pairs (finetune). Stats are
detached 0-d tensors (no device sync per step); names are unprefixed (``d_loss``), the loop
adds the namespace (``gan/d_loss``).

Each loss is written in its conventional form, so published settings carry over: BCE and
least squares halve the discriminator's sum as in pix2pix and LSGAN; hinge and Wasserstein
do not (a gradient penalty weight of 10 assumes the WGAN-GP form).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # annotations only: tasks and regularisers import this module's Stats
    from ganseg.gan.pool import ImagePool
    from ganseg.gan.regularisers import InstanceNoise, Penalty
    from ganseg.gan.tasks import GanTask

Stats = dict[str, torch.Tensor]


class GanObjective(Protocol):
    name: str
    smoothing: bool  # whether it takes ``label_smoothing`` (it has targets to smooth)

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]: ...

    def g_loss(self, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]: ...

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> [0, 1] with 0.5 at the decision boundary: how sure D is an input is real."""
        ...


def _d_stats(
    loss_real: torch.Tensor, loss_fake: torch.Tensor, loss: torch.Tensor,
    real_logits: torch.Tensor, fake_logits: torch.Tensor, threshold: torch.Tensor | float,
) -> Stats:
    """Loss terms, mean scores and the share of patches the discriminator gets right."""
    real, fake = real_logits.detach().float(), fake_logits.detach().float()
    return {
        "d_loss": loss.detach(),
        "d_loss_real": loss_real.detach(),
        "d_loss_fake": loss_fake.detach(),
        "d_score_real": real.mean(),
        "d_score_fake": fake.mean(),
        "d_acc_real": (real > threshold).float().mean(),
        "d_acc_fake": (fake <= threshold).float().mean(),
    }


class NonSaturatingLoss:
    """Vanilla GAN with binary cross-entropy on logits (Goodfellow 2014), non-saturating G.

    ``label_smoothing`` is one-sided (Salimans 2016): real targets become ``1 - s`` (0.9 for
    0.1), fake targets stay 0. Accuracy thresholds the logit at 0 (probability 0.5).
    """

    name = "bce"
    smoothing = True

    def __init__(self, label_smoothing: float = 0.0):
        self.real_target = 1.0 - label_smoothing

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real, fake = real_logits.float(), fake_logits.float()
        # BCE(x, t) = t * softplus(-x) + (1 - t) * softplus(x), stable for any logit.
        loss_real = (self.real_target * F.softplus(-real) + (1 - self.real_target) * F.softplus(real)).mean()
        loss_fake = F.softplus(fake).mean()
        loss = 0.5 * (loss_real + loss_fake)
        return loss, _d_stats(loss_real, loss_fake, loss, real, fake, 0.0)

    def g_loss(self, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss = F.softplus(-fake_logits.float()).mean()  # -log sigmoid(D(G(z)))
        return loss, {"g_adv": loss.detach()}

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)  # the probability "real"


class LeastSquaresLoss:
    """LSGAN (Mao 2017): targets real = 1 (or ``1 - s`` smoothed), fake = 0; threshold 0.5."""

    name = "lsgan"
    smoothing = True

    def __init__(self, label_smoothing: float = 0.0):
        self.real_target = 1.0 - label_smoothing

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real, fake = real_logits.float(), fake_logits.float()
        loss_real = (real - self.real_target).square().mean()
        loss_fake = fake.square().mean()
        loss = 0.5 * (loss_real + loss_fake)
        return loss, _d_stats(loss_real, loss_fake, loss, real, fake, 0.5)

    def g_loss(self, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss = 0.5 * (fake_logits.float() - 1.0).square().mean()
        return loss, {"g_adv": loss.detach()}

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.clamp(0, 1)  # targets 0 and 1


class HingeLoss:
    """Hinge loss (Lim & Ye 2017; SAGAN, BigGAN): margins at +-1; threshold 0."""

    name = "hinge"
    smoothing = False

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        return ((logits + 1) / 2).clamp(0, 1)  # margins -1 and +1

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real, fake = real_logits.float(), fake_logits.float()
        loss_real = F.relu(1.0 - real).mean()
        loss_fake = F.relu(1.0 + fake).mean()
        loss = loss_real + loss_fake
        return loss, _d_stats(loss_real, loss_fake, loss, real, fake, 0.0)

    def g_loss(self, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss = -fake_logits.float().mean()
        return loss, {"g_adv": loss.detach()}


class WassersteinLoss:
    """Wasserstein critic (Arjovsky 2017): D maximises E[D(real)] - E[D(fake)].

    It needs a Lipschitz constraint from elsewhere: weight clipping (``wgan``) or a gradient
    penalty (``wgan_gp``), both in :mod:`ganseg.gan.regularisers`. A critic has no absolute
    decision boundary, so its "accuracy" thresholds at the midpoint of the batch's mean real
    and mean fake scores: it says how well the two are separated, not a probability.
    ``d_wasserstein`` is the critic's estimate E[D(real)] - E[D(fake)].
    """

    name = "wgan"
    smoothing = False

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)  # a critic has no absolute scale: uncalibrated

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real, fake = real_logits.float(), fake_logits.float()
        loss_real, loss_fake = -real.mean(), fake.mean()
        loss = loss_real + loss_fake
        midpoint = 0.5 * (real.detach().mean() + fake.detach().mean())
        stats = _d_stats(loss_real, loss_fake, loss, real, fake, midpoint)
        stats["d_wasserstein"] = -loss.detach()
        return loss, stats

    def g_loss(self, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss = -fake_logits.float().mean()
        return loss, {"g_adv": loss.detach()}


# name -> class: a new objective is one class above plus its entry here and its name in the
# ``loss`` literal of ganseg.config.augment.GanObjectiveConfig.
OBJECTIVES = {
    "bce": NonSaturatingLoss,
    "lsgan": LeastSquaresLoss,
    "hinge": HingeLoss,
    "wgan": WassersteinLoss,
    "wgan_gp": WassersteinLoss,  # the same critic loss; the penalty is a regulariser
}


def build_objective(loss: str, label_smoothing: float = 0.0) -> GanObjective:
    """The objective called ``loss``; smoothing only applies where targets exist."""
    if loss not in OBJECTIVES:
        raise ValueError(f"unknown GAN loss {loss!r}; expected one of {sorted(OBJECTIVES)}")
    cls = OBJECTIVES[loss]
    if cls.smoothing:
        return cls(label_smoothing)
    if label_smoothing:
        raise ValueError(f"label smoothing applies to bce and lsgan, not {loss}")
    return cls()


class PixelLoss:
    """The reconstruction term of pix2pix: ``weight * |fake - target|`` (L1), mean over pixels.

    ``valid`` (B, 1, H, W), 1 where a pixel counts: the mean is over those pixels only, so a
    patch's padding and the outside of a region of interest ask nothing of the generator.
    """

    def __init__(self, weight: float = 100.0):
        self.weight = weight

    def __call__(self, fake: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, Stats]:
        error = (fake.float() - target.float()).abs()  # (B, C, H, W)
        if valid is None:
            l1 = error.mean()
        else:
            l1 = (error * valid).sum() / (valid.sum() * error.shape[1]).clamp(min=1)
        return self.weight * l1, {"g_pixel": l1.detach()}


# -- objective + task + stabilisers: the terms the phases call ---------------------------------
@dataclass
class StepInputs:
    """What one iteration's phases share: the batch, the generator's output, both stacks."""

    step: int
    batch: Any
    generated: torch.Tensor
    real_inputs: torch.Tensor
    fake_inputs: torch.Tensor


class GanLoss:
    """Objective + task + stabilisers: the loss terms of the phases (``ganseg.training.phases``).

    ``d_main``, ``g_main`` and ``penalty_term(p)`` are terms ``(judge, inputs) -> (loss, stats)``.
    Instance noise (when given) is added to every discriminator input; the image pool (when
    given) replaces part of the fakes the discriminator trains on. The task says what the
    generator makes and what the discriminator sees (``ganseg.gan.tasks``: mask -> image,
    noise -> pair; ``ganseg.finetune.losses.SegmentationTask``: image -> mask).
    """

    def __init__(
        self,
        task: GanTask,
        objective: GanObjective,
        penalties: list[Penalty] = (),
        instance_noise: InstanceNoise | None = None,
        pool: ImagePool | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        adversarial_weight: float = 1.0,
    ):
        self.task, self.objective = task, objective
        self.penalties = list(penalties)
        self.instance_noise, self.pool = instance_noise, pool
        self.device, self.dtype = device or torch.device("cpu"), dtype
        self.adversarial_weight = adversarial_weight
        self.pool_generator = torch.Generator().manual_seed(0)

    def autocast(self):
        from ganseg.runtime import autocast

        return autocast(self.device, self.dtype)

    def judge(self, discriminator: nn.Module, inputs: torch.Tensor, step: int) -> torch.Tensor:
        if self.instance_noise is not None:
            inputs = self.instance_noise(inputs, step)
        return discriminator(inputs)

    def prepare(self, generator: nn.Module, batch: Any, step: int, grad: bool) -> StepInputs:
        """Run the generator once; ``grad`` keeps its graph for a G phase later this step."""
        generator.requires_grad_(grad)
        with torch.set_grad_enabled(grad), self.autocast():
            generated = self.task.generate(generator, batch)
            fake_inputs = self.task.fake_inputs(batch, generated)
        return StepInputs(step, batch, generated, self.task.real_inputs(batch), fake_inputs)

    def d_main(self, discriminator: nn.Module, inputs: StepInputs) -> tuple[torch.Tensor, Stats]:
        fakes = inputs.fake_inputs.detach()
        if self.pool is not None:
            fakes = self.pool.query(fakes, self.pool_generator)
        with self.autocast():
            real_logits = self.judge(discriminator, inputs.real_inputs, inputs.step)
            fake_logits = self.judge(discriminator, fakes, inputs.step)
        return self.objective.d_loss(real_logits, fake_logits)

    def g_main(self, discriminator: nn.Module, inputs: StepInputs) -> tuple[torch.Tensor, Stats]:
        with self.autocast():
            fake_logits = self.judge(discriminator, inputs.fake_inputs, inputs.step)
        adversarial, stats = self.objective.g_loss(fake_logits)
        task_loss, task_stats = self.task.generator_loss(inputs.batch, inputs.generated)
        loss = self.adversarial_weight * adversarial + task_loss
        return loss, {**stats, **task_stats, "g_loss": loss.detach()}

    def penalty_term(self, penalty: Penalty, gain: float = 1.0):
        def term(discriminator: nn.Module, inputs: StepInputs) -> tuple[torch.Tensor, Stats]:
            loss, stats = penalty(discriminator, inputs.real_inputs, inputs.fake_inputs)
            return gain * loss, stats

        return term

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict() if self.pool else None,
                "pool_generator": self.pool_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if self.pool is not None and state.get("pool") is not None:
            self.pool.load_state_dict(state["pool"])
        self.pool_generator.set_state(state["pool_generator"])
