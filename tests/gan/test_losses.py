"""Each objective against an independent reference: torch's BCE, or the formula by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganseg.gan.losses import (
    HingeLoss,
    LeastSquaresLoss,
    NonSaturatingLoss,
    PixelLoss,
    WassersteinLoss,
    build_objective,
)

REAL = torch.tensor([[2.0, -1.0], [0.5, 3.0]]).view(2, 1, 1, 2)  # any shape: a tiny patch grid
FAKE = torch.tensor([[-2.0, 0.25], [1.0, -0.5]]).view(2, 1, 1, 2)


def test_bce_matches_torch_binary_cross_entropy():
    loss, stats = NonSaturatingLoss().d_loss(REAL, FAKE)
    expected_real = F.binary_cross_entropy_with_logits(REAL, torch.ones_like(REAL))
    expected_fake = F.binary_cross_entropy_with_logits(FAKE, torch.zeros_like(FAKE))
    assert float(loss) == pytest.approx(0.5 * float(expected_real + expected_fake), rel=1e-6)
    assert float(stats["d_loss_real"]) == pytest.approx(float(expected_real), rel=1e-6)
    g_loss, g_stats = NonSaturatingLoss().g_loss(FAKE)
    assert float(g_loss) == pytest.approx(float(F.binary_cross_entropy_with_logits(FAKE, torch.ones_like(FAKE))))
    assert float(g_stats["g_adv"]) == pytest.approx(float(g_loss))


def test_one_sided_label_smoothing_targets_real_at_0_9_only():
    _, stats = NonSaturatingLoss(label_smoothing=0.1).d_loss(REAL, FAKE)
    expected_real = F.binary_cross_entropy_with_logits(REAL, torch.full_like(REAL, 0.9))
    expected_fake = F.binary_cross_entropy_with_logits(FAKE, torch.zeros_like(FAKE))
    assert float(stats["d_loss_real"]) == pytest.approx(float(expected_real), rel=1e-6)
    assert float(stats["d_loss_fake"]) == pytest.approx(float(expected_fake), rel=1e-6)
    _, ls_stats = LeastSquaresLoss(label_smoothing=0.1).d_loss(REAL, FAKE)
    assert float(ls_stats["d_loss_real"]) == pytest.approx(float(((REAL - 0.9) ** 2).mean()), rel=1e-6)


def test_least_squares_by_hand():
    loss, _ = LeastSquaresLoss().d_loss(REAL, FAKE)
    by_hand = 0.5 * (((REAL - 1) ** 2).mean() + (FAKE**2).mean())
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-6)
    g_loss, _ = LeastSquaresLoss().g_loss(FAKE)
    assert float(g_loss) == pytest.approx(float(0.5 * ((FAKE - 1) ** 2).mean()), rel=1e-6)


def test_hinge_by_hand():
    loss, _ = HingeLoss().d_loss(REAL, FAKE)
    # real margins: relu(1 - [2, -1, .5, 3]) = [0, 2, .5, 0]; fake: relu(1 + [-2, .25, 1, -.5]) = [0, 1.25, 2, .5]
    assert float(loss) == pytest.approx((0 + 2 + 0.5 + 0) / 4 + (0 + 1.25 + 2 + 0.5) / 4)
    assert float(HingeLoss().g_loss(FAKE)[0]) == pytest.approx(-float(FAKE.mean()))


def test_wasserstein_critic_estimate_and_midpoint_accuracy():
    loss, stats = WassersteinLoss().d_loss(REAL, FAKE)
    assert float(loss) == pytest.approx(float(FAKE.mean() - REAL.mean()))
    assert float(stats["d_wasserstein"]) == pytest.approx(float(REAL.mean() - FAKE.mean()))
    midpoint = 0.5 * float(REAL.mean() + FAKE.mean())  # 0.40625
    assert float(stats["d_acc_real"]) == pytest.approx(float((REAL > midpoint).float().mean()))
    assert float(stats["d_acc_fake"]) == pytest.approx(float((FAKE <= midpoint).float().mean()))


def test_accuracy_thresholds_per_objective():
    _, bce = NonSaturatingLoss().d_loss(REAL, FAKE)  # logit > 0 is "real"
    assert float(bce["d_acc_real"]) == pytest.approx(0.75)  # 2, .5, 3 > 0; -1 is not
    assert float(bce["d_acc_fake"]) == pytest.approx(0.5)  # -2, -.5 <= 0
    _, ls = LeastSquaresLoss().d_loss(REAL, FAKE)  # score > 0.5 is "real"
    assert float(ls["d_acc_real"]) == pytest.approx(0.5)  # 2, 3
    assert float(ls["d_acc_fake"]) == pytest.approx(0.75)  # -2, .25, -.5


def test_build_objective_names_and_smoothing_rules():
    assert build_objective("wgan_gp").name == "wgan"
    assert isinstance(build_objective("bce", 0.1), NonSaturatingLoss)
    with pytest.raises(ValueError, match="label smoothing applies to bce and lsgan"):
        build_objective("hinge", 0.1)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        build_objective("minimax")


def test_pixel_loss_is_weighted_l1():
    fake, target = torch.zeros(1, 1, 2, 2), torch.tensor([1.0, -1.0, 0.5, 0.0]).view(1, 1, 2, 2)
    loss, stats = PixelLoss(100.0)(fake, target)
    assert float(stats["g_pixel"]) == pytest.approx(0.625)
    assert float(loss) == pytest.approx(62.5)


def test_the_config_literal_and_the_objective_registry_name_the_same_losses():
    """A new objective is one class plus its entry in OBJECTIVES and its name in the config's
    ``loss`` literal: neither list may name a loss the other lacks."""
    from typing import get_args

    from ganseg.config.augment import GanObjectiveConfig
    from ganseg.gan.losses import OBJECTIVES

    assert set(get_args(GanObjectiveConfig.model_fields["loss"].annotation)) == set(OBJECTIVES)


class SoftplusHingeLoss:
    """A dummy objective written as a contributor would: the interface and nothing else."""

    name = "softplus_hinge"
    smoothing = False

    def d_loss(self, real_logits, fake_logits):
        loss_real, loss_fake = F.softplus(1 - real_logits.float()).mean(), F.softplus(1 + fake_logits.float()).mean()
        return loss_real + loss_fake, {"d_loss": (loss_real + loss_fake).detach()}

    def g_loss(self, fake_logits):
        loss = -fake_logits.float().mean()
        return loss, {"g_adv": loss.detach()}

    def confidence(self, logits):
        return torch.sigmoid(logits)


def test_a_new_objective_class_trains_the_gan_and_fine_tuning_unchanged(monkeypatch, tmp_path):
    from ganseg.gan import losses
    from ganseg.gan.build import build_loop_settings
    from ganseg.gan.trainer import train_gan
    from tests.finetune.conftest import build_step, tiny_batch
    from tests.gan.conftest import TinyRun, tiny_config

    monkeypatch.setitem(losses.OBJECTIVES, "softplus_hinge", SoftplusHingeLoss)
    objective = losses.build_objective("softplus_hinge")
    run = TinyRun(tiny_config(steps=4), tmp_path, objective=objective)
    history = train_gan(run.parts, run.loss, run.sampler, build_loop_settings(run.cfg), run.checkpointer,
                        lambda name, value, step: None, progress=False)
    assert [row["step"] for row in history.rows] == [2, 4]
    assert all(torch.isfinite(torch.tensor(v)) for row in history.rows for v in row.values())
    step, _, _ = build_step()
    step.gan_loss.objective = objective  # fine-tuning runs the same objective object
    stats = step(tiny_batch(), 1)
    assert torch.isfinite(stats["gan/d_loss"]) and torch.isfinite(stats["train/g_loss"])
