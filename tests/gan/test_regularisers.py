"""Penalties on critics whose input gradient is known in closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganseg.gan.regularisers import (
    GradientPenalty,
    InstanceNoise,
    R1Penalty,
    WeightClip,
    WeightPenalty,
)


class LinearCritic(nn.Module):
    """D(x) = <w, x> per sample: its input gradient is w everywhere."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return (x * self.weight).sum(dim=(1, 2, 3))


class PixelCritic(nn.Module):
    """A logit per pixel (like a PatchGAN grid): D(x) = 2 x, so the per-sample mean has
    gradient 2 / n per pixel and norm 2 / sqrt(n)."""

    def forward(self, x):
        return 2 * x


def test_gradient_penalty_of_a_linear_critic():
    weight = torch.full((1, 2, 2), 0.5)  # |w| = sqrt(4 * 0.25) = 1  -> penalty 0
    critic = LinearCritic(weight)
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    loss, stats = GradientPenalty(weight=10.0)(critic, real, fake)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-10)
    critic.weight.data.fill_(1.0)  # |w| = 2 -> (2 - 1)^2 = 1, times 10
    loss, stats = GradientPenalty(weight=10.0)(critic, real, fake)
    assert float(loss.detach()) == pytest.approx(10.0, rel=1e-5)
    assert float(stats["d_grad_norm"]) == pytest.approx(2.0, rel=1e-5)
    loss.backward()  # differentiable w.r.t. the critic's weights (double backward)
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_penalties_constrain_the_per_sample_mean_of_a_logit_map():
    real, fake = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)  # 16 logits per sample
    _, stats = GradientPenalty(weight=1.0)(PixelCritic(), real, fake)
    assert float(stats["d_grad_norm"]) == pytest.approx(2 / 4, rel=1e-5)  # 2 / sqrt(16)
    loss, stats = R1Penalty(gamma=2.0)(PixelCritic(), real, fake)
    assert float(stats["d_r1"]) == pytest.approx(0.25, rel=1e-5)
    assert float(loss) == pytest.approx(0.25, rel=1e-5)  # gamma / 2 * |grad|^2


def test_r1_of_a_linear_critic_is_half_gamma_times_squared_norm():
    critic = LinearCritic(torch.full((1, 2, 2), 1.5))  # |w|^2 = 4 * 2.25 = 9
    loss, stats = R1Penalty(gamma=4.0)(critic, torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2))
    assert float(stats["d_r1"]) == pytest.approx(9.0, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(18.0, rel=1e-5)


def test_weight_penalty_counts_weights_not_biases():
    layer = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        layer.weight.fill_(2.0)  # 2 weights: sum of squares 8
        layer.bias.fill_(100.0)
    loss, stats = WeightPenalty(weight=0.5)(layer, None, None)
    assert float(stats["d_weight_l2"]) == pytest.approx(8.0)
    assert float(loss.detach()) == pytest.approx(4.0)


def test_weight_clip_clamps_every_parameter():
    layer = nn.Linear(4, 4)
    with torch.no_grad():
        layer.weight.mul_(100)
    WeightClip(0.01)(layer)
    assert max(float(p.abs().max()) for p in layer.parameters()) <= 0.01


def test_instance_noise_anneals_linearly_to_zero():
    noise = InstanceNoise(std=0.2, total_steps=100)
    assert noise.current_std(0) == pytest.approx(0.2)
    assert noise.current_std(50) == pytest.approx(0.1)
    assert noise.current_std(100) == 0.0
    x = torch.zeros(4000)
    assert float(noise(x, 0).std()) == pytest.approx(0.2, rel=0.1)
    assert noise(x, 100) is x
