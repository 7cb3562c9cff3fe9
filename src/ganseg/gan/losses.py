"""GAN objectives behind one interface, generic over what the discriminator judges.

An objective turns discriminator logits into losses:

- ``d_loss(real_logits, fake_logits) -> (loss, stats)``: the discriminator's loss;
- ``g_loss(fake_logits) -> (loss, stats)``: the generator's adversarial loss.

Logits can have any shape (one per image, or a PatchGAN grid); every loss is a mean. A
multi-scale discriminator returns a list of maps, one per scale: every loss and stat is then
the mean over scales of its single-map value (pix2pixHD averages its per-scale losses), so
each scale counts equally whatever its number of patches. The objective never sees the inputs, so the same objects serve mask-to-image synthesis (augment)
and adversarial fine-tuning of a segmenter on (image, mask) pairs (finetune). Stats are
detached 0-d tensors (no device sync per step); names are unprefixed (``d_loss``), the loop
adds the namespace (``gan/d_loss``).

Each loss is written in its conventional form, so published settings carry over: BCE and
least squares halve the discriminator's sum as in pix2pix and LSGAN; hinge and Wasserstein
do not (a gradient penalty weight of 10 assumes the WGAN-GP form).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ganseg.gan.diffaugment import AugmentedDiscriminator, DiffAugment, replayed_draws

if TYPE_CHECKING:  # annotations only: tasks and regularisers import this module's Stats
    from ganseg.gan.pool import ImagePool
    from ganseg.gan.regularisers import InstanceNoise, Penalty
    from ganseg.gan.tasks import GanTask

Stats = dict[str, torch.Tensor]
Logits = torch.Tensor | list[torch.Tensor]  # a map, or one map per scale (finest first)


def over_scales(loss_fn):
    """Let ``d_loss`` / ``g_loss`` take a list of per-scale logit maps: the loss and every stat
    are the means over scales of the single-map values."""

    @functools.wraps(loss_fn)
    def loss(self, *logits: Logits) -> tuple[torch.Tensor, Stats]:
        if isinstance(logits[0], torch.Tensor):
            return loss_fn(self, *logits)
        per_scale = [loss_fn(self, *maps) for maps in zip(*logits, strict=True)]
        stats = {name: torch.stack([scale[name] for _, scale in per_scale]).mean() for name in per_scale[0][1]}
        return torch.stack([value for value, _ in per_scale]).mean(), stats

    return loss


def flat_logits(logits: Logits) -> torch.Tensor:
    """(B, N): every logit of a map, or of all scales' maps, per sample."""
    maps = [logits] if isinstance(logits, torch.Tensor) else logits
    return torch.cat([scores.reshape(scores.shape[0], -1) for scores in maps], dim=1)


class GanObjective(Protocol):
    name: str
    smoothing: bool  # whether it takes ``label_smoothing`` (it has targets to smooth)

    def d_loss(self, real_logits: Logits, fake_logits: Logits) -> tuple[torch.Tensor, Stats]: ...

    def g_loss(self, fake_logits: Logits) -> tuple[torch.Tensor, Stats]: ...

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

    @over_scales
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real, fake = real_logits.float(), fake_logits.float()
        # BCE(x, t) = t * softplus(-x) + (1 - t) * softplus(x), stable for any logit.
        loss_real = (self.real_target * F.softplus(-real) + (1 - self.real_target) * F.softplus(real)).mean()
        loss_fake = F.softplus(fake).mean()
        loss = 0.5 * (loss_real + loss_fake)
        return loss, _d_stats(loss_real, loss_fake, loss, real, fake, 0.0)

    @over_scales
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

    @over_scales
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real, fake = real_logits.float(), fake_logits.float()
        loss_real = (real - self.real_target).square().mean()
        loss_fake = fake.square().mean()
        loss = 0.5 * (loss_real + loss_fake)
        return loss, _d_stats(loss_real, loss_fake, loss, real, fake, 0.5)

    @over_scales
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

    @over_scales
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real, fake = real_logits.float(), fake_logits.float()
        loss_real = F.relu(1.0 - real).mean()
        loss_fake = F.relu(1.0 + fake).mean()
        loss = loss_real + loss_fake
        return loss, _d_stats(loss_real, loss_fake, loss, real, fake, 0.0)

    @over_scales
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

    @over_scales
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real, fake = real_logits.float(), fake_logits.float()
        loss_real, loss_fake = -real.mean(), fake.mean()
        loss = loss_real + loss_fake
        midpoint = 0.5 * (real.detach().mean() + fake.detach().mean())
        stats = _d_stats(loss_real, loss_fake, loss, real, fake, midpoint)
        stats["d_wasserstein"] = -loss.detach()
        return loss, stats

    @over_scales
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


class FeatureMatchingLoss:
    """pix2pixHD's feature matching: L1 between the discriminator's intermediate features on
    the fake and on the real stacks (the reals' features carry no gradient).

    ``fake_features`` / ``real_features``: every activation of every scale, in the same order
    (:meth:`~ganseg.gan.pix2pix.PatchDiscriminator.forward` with ``features=True``). Weighted
    as pix2pixHD: each of a scale's ``layers + 1`` maps by ``4 / (layers + 1)``, each scale by
    ``1 / scales``, i.e. ``weight * 4 * mean`` over the maps, so its ``lambda_feat`` of 10
    carries over.
    """

    def __init__(self, weight: float = 10.0):
        self.weight = weight

    def __call__(self, fake_features: list[torch.Tensor], real_features: list[torch.Tensor]
                 ) -> tuple[torch.Tensor, Stats]:
        distances = [(fake.float() - real.detach().float()).abs().mean()
                     for fake, real in zip(fake_features, real_features, strict=True)]
        matching = 4 * torch.stack(distances).mean()
        return self.weight * matching, {"g_feature_matching": matching.detach()}


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
    DiffAugment (when given) transforms every discriminator input, penalties' included (they
    differentiate D after the augmentation: the critic the objectives train); instance noise
    (when given) is then added to every input but the penalties'; the image pool (when given)
    replaces part of the un-augmented fakes the discriminator trains on. The task says what the
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
        augment: DiffAugment | None = None,
        feature_matching: FeatureMatchingLoss | None = None,
    ):
        self.task, self.objective = task, objective
        self.penalties = list(penalties)
        self.instance_noise, self.pool = instance_noise, pool
        self.device, self.dtype = device or torch.device("cpu"), dtype
        self.adversarial_weight = adversarial_weight
        self.augment = augment
        self.feature_matching = feature_matching
        self.pool_generator = torch.Generator().manual_seed(0)

    def autocast(self):
        from ganseg.runtime import autocast

        return autocast(self.device, self.dtype)

    def judge(self, discriminator: nn.Module, inputs: torch.Tensor, step: int, batch: Any,
              features: bool = False):
        """D's logits for ``inputs``, a stack the task built from ``batch``; with ``features``,
        ``(logits, D's intermediate features)``."""
        if self.augment is not None:
            inputs = self.augment(inputs, self.task.image_channels(batch))
        if self.instance_noise is not None:
            inputs = self.instance_noise(inputs, step)
        return discriminator(inputs, features=True) if features else discriminator(inputs)

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
            real_logits = self.judge(discriminator, inputs.real_inputs, inputs.step, inputs.batch)
            fake_logits = self.judge(discriminator, fakes, inputs.step, inputs.batch)
        loss, stats = self.objective.d_loss(real_logits, fake_logits)
        if self.augment is not None:  # ADA reads how sure D is of the reals it just saw
            stats.update(self.augment.observe(self.objective.confidence(flat_logits(real_logits).detach().float())))
        return loss, stats

    def g_main(self, discriminator: nn.Module, inputs: StepInputs) -> tuple[torch.Tensor, Stats]:
        matching = self.feature_matching is not None
        with self.autocast():
            # The real side below must see the fakes' augmentation: matching is position by position.
            with replayed_draws(inputs.fake_inputs.device, enabled=matching and self.augment is not None):
                judged = self.judge(discriminator, inputs.fake_inputs, inputs.step, inputs.batch, features=matching)
            if matching:
                fake_logits, fake_features = judged
                with torch.no_grad():  # the real side is a target
                    _, real_features = self.judge(discriminator, inputs.real_inputs, inputs.step, inputs.batch,
                                                  features=True)
            else:
                fake_logits = judged
        adversarial, stats = self.objective.g_loss(fake_logits)
        task_loss, task_stats = self.task.generator_loss(inputs.batch, inputs.generated)
        loss = self.adversarial_weight * adversarial + task_loss
        if matching:
            matching_loss, matching_stats = self.feature_matching(fake_features, real_features)
            loss = loss + matching_loss
            stats.update(matching_stats)
        return loss, {**stats, **task_stats, "g_loss": loss.detach()}

    def penalty_term(self, penalty: Penalty, gain: float = 1.0):
        def term(discriminator: nn.Module, inputs: StepInputs) -> tuple[torch.Tensor, Stats]:
            if self.augment is not None:
                discriminator = AugmentedDiscriminator(
                    discriminator, self.augment, self.task.image_channels(inputs.batch))
            loss, stats = penalty(discriminator, inputs.real_inputs, inputs.fake_inputs)
            return gain * loss, stats

        return term

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict() if self.pool else None,
                "pool_generator": self.pool_generator.get_state(),
                "augment": self.augment.state_dict() if self.augment else None}

    def load_state_dict(self, state: dict) -> None:
        if self.pool is not None and state.get("pool") is not None:
            self.pool.load_state_dict(state["pool"])
        self.pool_generator.set_state(state["pool_generator"])
        if self.augment is not None and state.get("augment") is not None:
            self.augment.load_state_dict(state["augment"])
