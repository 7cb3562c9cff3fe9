"""The training loop: every loss and stabiliser trains without NaN, the guard recovers from
an injected NaN (and gives up with a clear error), and a killed run resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch

from ganseg.gan.build import build_loop_settings
from ganseg.gan.losses import NonSaturatingLoss
from ganseg.gan.trainer import GanDivergedError, build_phases, train_gan
from ganseg.training.checkpoint import CheckpointManager

from .conftest import TinyRun, tiny_config

LOSS_KINDS = ["bce", "lsgan", "hinge", "wgan", "wgan_gp"]
STABILISERS = {
    "gradient_penalty": {"gradient_penalty": 10.0},
    "r1": {"r1_gamma": 1.0},
    "r1_lazy": {"r1_gamma": 1.0, "r1_interval": 2},
    "weight_penalty": {"weight_penalty": 1e-3},
    "spectral_norm": {"spectral_norm": True},
    "label_smoothing": {"label_smoothing": 0.1},
    "instance_noise": {"instance_noise": 0.1},
    "image_pool": {"image_pool": 6},
    "minibatch_std": {"minibatch_std": True},
    "two_d_steps": {"d_steps_per_g": 2},
    "diffaugment": {"diffaugment": ["color", "translation", "cutout"]},
    "diffaugment_ada_r1": {"diffaugment": ["color", "translation", "cutout"], "ada_target": 0.6,
                           "ada_interval": 2, "r1_gamma": 1.0},
}


def assert_trained_finitely(history, run, steps):
    assert history.rows and history.rows[-1]["step"] == steps
    for row in history.rows:
        assert all(math.isfinite(v) for v in row.values()), row
    assert history.events == []
    assert {"gan/d_loss", "gan/g_adv", "gan/d_acc_real", "gan/d_acc_fake"} <= set(history.rows[-1])
    assert all(math.isfinite(float(p.detach().sum())) for p in run.parts.generator.parameters())


def train(run, **kwargs):
    return train_gan(run.parts, run.loss, run.sampler, build_loop_settings(run.cfg), run.checkpointer,
                     run.log, constraints=run.stabilisers.constraints, **kwargs)


@pytest.mark.parametrize("loss", LOSS_KINDS)
def test_every_loss_trains_without_nan(tiny_run, loss):
    run = tiny_run(tiny_config(objective={"loss": loss}))
    before = [p.detach().clone() for p in run.parts.generator.parameters()]
    history = train(run)
    assert_trained_finitely(history, run, 6)
    assert any(not torch.equal(a, b) for a, b in zip(before, run.parts.generator.parameters()))
    if loss == "wgan":  # weight clipping held after every D step
        assert max(float(p.detach().abs().max()) for p in run.parts.discriminator.parameters()) <= 0.01 + 1e-7
    if loss == "wgan_gp":
        assert "gan/d_gp" in history.rows[-1]


@pytest.mark.parametrize("name", list(STABILISERS))
def test_every_stabiliser_trains_without_nan(tiny_run, name):
    run = tiny_run(tiny_config(objective=STABILISERS[name]))
    history = train(run)
    assert_trained_finitely(history, run, 6)
    last = history.rows[-1]
    expected_stat = {"gradient_penalty": "gan/d_gp", "r1": "gan/d_r1", "r1_lazy": "gan/d_r1",
                     "weight_penalty": "gan/d_weight_l2", "diffaugment_ada_r1": "gan/ada_p"}.get(name)
    if expected_stat:
        assert expected_stat in last


def test_lazy_regularisers_run_as_their_own_phase(tiny_run):
    run = tiny_run(tiny_config(objective={"r1_gamma": 1.0, "r1_interval": 4, "gradient_penalty": 1.0}))
    phases = build_phases(run.parts, run.loss)
    assert [p.name for p in phases] == ["D", "Dreg/r1", "G"]
    assert phases[1].interval == 4 and len(phases[0].terms) == 2  # d_main + eager gp


@pytest.mark.parametrize("num_classes", [1, 3])
def test_dcgan_trains_without_nan(tiny_run, num_classes):
    cfg = tiny_config(model="dcgan", dcgan={"residual_blocks": 1}, discriminator={"norm": "none"},
                      objective={"spectral_norm": True})
    run = tiny_run(cfg, num_classes=num_classes)
    assert_trained_finitely(train(run), run, 6)


def test_multiclass_pix2pix_trains_without_nan(tiny_run):
    run = tiny_run(num_classes=3)
    assert_trained_finitely(train(run), run, 6)


class NanAt(NonSaturatingLoss):
    """A BCE objective whose discriminator loss is NaN on the listed calls (1-based)."""

    def __init__(self, calls):
        super().__init__()
        self.calls, self.count = set(calls), 0

    def d_loss(self, real_logits, fake_logits):
        self.count += 1
        loss, stats = super().d_loss(real_logits, fake_logits)
        if self.count in self.calls:
            loss = loss * float("nan")
            stats["d_loss"] = loss.detach()
        return loss, stats


def test_guard_restores_the_last_checkpoint_and_lowers_the_learning_rate(tiny_run):
    run = tiny_run(tiny_config(steps=8), objective=NanAt({5}))  # NaN in step 5: window 5-6
    history = train(run)
    assert [e["kind"] for e in history.events] == ["nan"]
    event = history.events[0]
    assert event["step"] == 6 and event["restored_step"] == 4 and "gan/d_loss" in event["detail"]
    assert history.lr_scale == 0.5 and history.restarts == 1
    assert [row["step"] for row in history.rows] == [2, 4, 6, 8]
    assert all(math.isfinite(v) for row in history.rows for v in row.values())
    assert run.g_opt.param_groups[0]["lr"] == pytest.approx(run.cfg.lr_g * 0.5)
    assert run.d_opt.param_groups[0]["lr"] == pytest.approx(run.cfg.lr_d * 0.5)
    assert ("gan/guard_restarts", 1, 6) in run.logged
    assert all(math.isfinite(float(p.detach().sum())) for p in run.parts.discriminator.parameters())


def test_guard_gives_up_after_max_restarts_with_a_clear_error(tiny_run):
    run = tiny_run(tiny_config(steps=8, guard={"max_restarts": 2}), objective=NanAt(range(3, 1000)))
    with pytest.raises(GanDivergedError, match=r"diverged at step 4 \(non-finite gan/d_loss.*after 2 restart"):
        train(run)


class AlwaysFooled(NonSaturatingLoss):
    """Reports a discriminator that is right about every patch: a collapsed game."""

    def d_loss(self, real_logits, fake_logits):
        loss, stats = super().d_loss(real_logits, fake_logits)
        stats["d_acc_real"] = torch.tensor(1.0)
        stats["d_acc_fake"] = torch.tensor(1.0)
        return loss, stats


def test_guard_detects_a_collapsed_discriminator(tiny_run, tmp_path):
    cfg = tiny_config(steps=8, guard={"collapse_window": 4, "max_restarts": 1})
    run = tiny_run(cfg, objective=AlwaysFooled())
    with pytest.raises(GanDivergedError, match="discriminator accuracy >= 0.99 for 4 steps"):
        train(run)
    cfg_off = tiny_config(steps=8, guard={"collapse_window": 0})
    assert train(TinyRun(cfg_off, tmp_path / "off", objective=AlwaysFooled())).events == []


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    # ADA adjusts p by 0.5 every 4 D steps: the checkpoint at step 6 holds an open interval.
    cfg = tiny_config(steps=8, objective={"image_pool": 4, "instance_noise": 0.1, "ada_target": 0.6,
                                          "ada_ramp_images": 32, "diffaugment": ["color", "translation", "cutout"]})
    straight = TinyRun(cfg, tmp_path / "straight")
    train(straight)

    class Killed(Exception):
        pass

    def kill_at_step_5(name, value, step):
        if step >= 5:
            raise Killed

    first = TinyRun(cfg, tmp_path / "resumed")
    with pytest.raises(Killed):
        train_gan(first.parts, first.loss, first.sampler, build_loop_settings(cfg), first.checkpointer,
                  kill_at_step_5, constraints=first.stabilisers.constraints)
    second = TinyRun(cfg, tmp_path / "resumed", seed=123)  # fresh process: other random init
    history = train(second)
    assert history.resumed_from == 6  # step 6 was checkpointed before its row was logged
    assert [row["step"] for row in history.rows] == [2, 4, 6, 8]
    for a, b in zip(straight.parts.ema.model.state_dict().values(), second.parts.ema.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.parts.discriminator.parameters(), second.parts.discriminator.parameters()):
        assert torch.equal(a, b)
    assert second.loss.state_dict()["augment"] == straight.loss.state_dict()["augment"]


def test_checkpoint_of_other_settings_is_ignored(tmp_path, tiny_run):
    run = tiny_run()
    train(run)
    other = CheckpointManager(run.checkpointer.folder, "another fingerprint")
    assert other.load().checkpoint is None and "other params or data" in other.load().reason
    assert run.checkpointer.load().checkpoint["state"]["step"] == 6


def test_sample_callback_sees_the_ema_generator_at_each_interval(tiny_run):
    run = tiny_run()
    calls = []
    train(run, on_sample=lambda step, generator: calls.append((step, generator is run.parts.ema.model)))
    assert calls == [(0, True), (2, True), (4, True), (6, True)]


def test_bf16_autocast_runs_the_networks_in_bf16_and_trains_without_nan(tiny_run):
    run = tiny_run(tiny_config(steps=2, objective={"r1_gamma": 1.0}))
    run.loss.dtype = torch.bfloat16  # what common.precision bf16 selects (CUDA's default)
    inputs = run.loss.prepare(run.parts.generator, run.sampler.next(), 1, grad=False)
    assert inputs.generated.dtype == torch.bfloat16
    history = train(run)
    assert_trained_finitely(history, run, 2)
    assert all(p.dtype == torch.float32 for p in run.parts.generator.parameters())  # fp32 master weights
