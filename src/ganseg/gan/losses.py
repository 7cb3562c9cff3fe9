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

from typing import Protocol

import torch
import torch.nn.functional as F

Stats = dict[str, torch.Tensor]


class GanObjective(Protocol):
    name: str

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]: ...

    def g_loss(self, fake_logits: torch.Tensor) -> tuple[torch.Tensor, Stats]: ...


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


class LeastSquaresLoss:
    """LSGAN (Mao 2017): targets real = 1 (or ``1 - s`` smoothed), fake = 0; threshold 0.5."""

    name = "lsgan"

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


class HingeLoss:
    """Hinge loss (Lim & Ye 2017; SAGAN, BigGAN): margins at +-1; threshold 0."""

    name = "hinge"

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
    if cls in (NonSaturatingLoss, LeastSquaresLoss):
        return cls(label_smoothing)
    if label_smoothing:
        raise ValueError(f"label smoothing applies to bce and lsgan, not {loss}")
    return cls()


class PixelLoss:
    """The reconstruction term of pix2pix: ``weight * |fake - target|`` (L1), mean over pixels."""

    def __init__(self, weight: float = 100.0):
        self.weight = weight

    def __call__(self, fake: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        l1 = (fake.float() - target.float()).abs().mean()
        return self.weight * l1, {"g_pixel": l1.detach()}
