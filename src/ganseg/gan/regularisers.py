"""Stabilisers of the discriminator, each a small object the training loop runs as data.

Three kinds, by where they act:

- **penalties** (``GradientPenalty``, ``R1Penalty``, ``WeightPenalty``): called as
  ``penalty(discriminator, real_inputs, fake_inputs) -> (loss, stats)`` and added to the
  discriminator's loss every ``interval`` steps. With ``interval > 1`` (lazy regularisation,
  Karras 2020) the loop runs them as their own phase and scales them by the interval.
- **constraints** (``WeightClip``): called as ``constraint(discriminator)`` after each
  discriminator optimizer step.
- **input transforms** (``InstanceNoise``): applied to everything the discriminator sees.

Spectral normalisation is part of the network (``PatchDiscriminatorConfig.spectral_norm``,
:func:`ganseg.gan.layers.apply_spectral_norm`); label smoothing is part of the objective
(:mod:`ganseg.gan.losses`); the image pool and minibatch stddev live in ``pool`` and
``layers``. Penalties are computed in float32 outside autocast: double backward through
reduced precision is where NaNs start.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from ganseg.gan.losses import Stats


class Penalty(Protocol):
    name: str
    interval: int

    def __call__(
        self, discriminator: nn.Module, real_inputs: torch.Tensor, fake_inputs: torch.Tensor
    ) -> tuple[torch.Tensor, Stats]: ...


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def per_sample_score(discriminator: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The critic the objectives see: the mean of the logit map per sample, (B,).

    Objectives average a PatchGAN's grid of logits, so that mean is the function whose input
    gradient a penalty must constrain; the raw sum would scale the norm by the patch count.
    A multi-scale discriminator's list of maps gives the mean over scales of each map's mean,
    as the objectives weight them.
    """
    scores = discriminator(inputs)
    maps = [scores] if isinstance(scores, torch.Tensor) else scores
    return torch.stack([grid.reshape(grid.shape[0], -1).mean(dim=1) for grid in maps]).mean(dim=0)


class GradientPenalty:
    """WGAN-GP (Gulrajani 2017): ``weight * E[(|grad D(x_hat)| - 1)^2]`` on random
    interpolates ``x_hat`` of real and fake inputs. Needs a discriminator whose samples are
    independent (no batch norm)."""

    name = "gp"

    def __init__(self, weight: float = 10.0, interval: int = 1):
        self.weight, self.interval = weight, interval

    def __call__(self, discriminator, real_inputs, fake_inputs):
        real, fake = real_inputs.detach().float(), fake_inputs.detach().float()
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        with _no_autocast(real.device):
            scores = per_sample_score(discriminator, mixed)  # (B,)
            (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        norms = grads.flatten(1).norm(2, dim=1)  # (B,)
        penalty = (norms - 1.0).square().mean()
        return self.weight * penalty, {"d_gp": penalty.detach(), "d_grad_norm": norms.detach().mean()}


class R1Penalty:
    """R1 (Mescheder 2018): ``gamma / 2 * E[|grad D(real)|^2]``, zero-centred on real data."""

    name = "r1"

    def __init__(self, gamma: float = 1.0, interval: int = 1):
        self.gamma, self.interval = gamma, interval

    def __call__(self, discriminator, real_inputs, fake_inputs):
        real = real_inputs.detach().float().requires_grad_(True)
        with _no_autocast(real.device):
            scores = per_sample_score(discriminator, real)  # (B,)
            (grads,) = torch.autograd.grad(scores.sum(), real, create_graph=True)
        penalty = grads.flatten(1).square().sum(dim=1).mean()
        return 0.5 * self.gamma * penalty, {"d_r1": penalty.detach()}


class WeightPenalty:
    """L2 on the discriminator's weights (not biases or norm scales): ``weight * sum(w^2)``."""

    name = "l2"

    def __init__(self, weight: float = 1e-4, interval: int = 1):
        self.weight, self.interval = weight, interval

    def __call__(self, discriminator, real_inputs, fake_inputs):
        squares = [p.square().sum() for p in discriminator.parameters() if p.ndim > 1]
        total = torch.stack(squares).sum()
        return self.weight * total, {"d_weight_l2": total.detach()}


class WeightClip:
    """WGAN's Lipschitz constraint (Arjovsky 2017): clamp every parameter to [-c, c]."""

    name = "clip"

    def __init__(self, limit: float = 0.01):
        self.limit = limit

    @torch.no_grad()
    def __call__(self, discriminator: nn.Module) -> None:
        for param in discriminator.parameters():
            param.clamp_(-self.limit, self.limit)


class InstanceNoise:
    """Gaussian noise on every discriminator input (Sønderby 2016; Arjovsky & Bottou 2017),
    annealed linearly from ``std`` at step 0 to 0 at ``total_steps``: real and fake
    distributions overlap early on, so the discriminator cannot separate them perfectly."""

    def __init__(self, std: float, total_steps: int):
        self.std, self.total_steps = std, max(total_steps, 1)

    def current_std(self, step: int) -> float:
        return self.std * max(0.0, 1.0 - step / self.total_steps)

    def __call__(self, inputs: torch.Tensor, step: int) -> torch.Tensor:
        std = self.current_std(step)
        if std <= 0:
            return inputs
        return inputs + std * torch.randn_like(inputs)
