"""GAN training: its phases, its divergence guard, run by the one training loop.

One iteration draws a batch, runs the generator once, then each due phase
(:mod:`ganseg.training.phases`)::

    D        discriminator: objective.d_loss + every penalty with interval 1, one step
    Dreg/x   discriminator: a lazy penalty (interval k > 1), scaled by k, one step
    G        generator: objective.g_loss + the task's own loss, every ``g_interval`` steps

Constraints (weight clipping) follow a D phase's step; the EMA generator follows each G step.
:func:`train_gan` hands this to :func:`ganseg.training.loop.run_steps` with one interval per
``log_interval`` steps. At each interval the divergence guard reads the mean stats: a NaN/inf
loss, or a discriminator that separates real from fake almost perfectly for
``collapse_window`` steps, sends the run back to its last checkpoint (saved only with finite
weights), multiplies both learning rates by ``lr_factor`` and carries on; after
``max_restarts`` such events it raises :class:`GanDivergedError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ganseg.errors import GansegError
from ganseg.gan.data import PairSampler
from ganseg.gan.ema import Ema
from ganseg.gan.losses import GanLoss
from ganseg.training.checkpoint import CheckpointManager, TrainState
from ganseg.training.loop import IntervalInfo, LogFn, Restore, RestoreFailed, resume, run_steps
from ganseg.training.phases import Phase, Stats, run_phases


class GanDivergedError(GansegError):
    """Training kept diverging after every allowed restart."""


@dataclass
class GanParts:
    generator: nn.Module
    discriminator: nn.Module
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    ema: Ema


def discriminator_phases(
    discriminator: nn.Module, optimizer: torch.optim.Optimizer, loss: GanLoss,
    constraints: list[Callable[[nn.Module], None]] = (),
) -> list[Phase]:
    """D (objective + eager penalties), then one Dreg phase per lazy penalty (scaled by its interval)."""
    eager = [loss.penalty_term(p) for p in loss.penalties if p.interval == 1]
    phases = [Phase("D", discriminator, optimizer, [loss.d_main, *eager], 1, discriminator,
                    constraints=list(constraints))]
    for penalty in loss.penalties:
        if penalty.interval > 1:
            term = loss.penalty_term(penalty, gain=float(penalty.interval))
            phases.append(Phase(f"Dreg/{penalty.name}", discriminator, optimizer, [term], penalty.interval,
                                discriminator, constraints=list(constraints)))
    return phases


def build_phases(
    parts: GanParts, loss: GanLoss, g_interval: int = 1, constraints: list[Callable[[nn.Module], None]] = ()
) -> list[Phase]:
    """D, the Dreg phases, then G (with the EMA update after each of its steps)."""
    return [
        *discriminator_phases(parts.discriminator, parts.d_optimizer, loss, constraints),
        Phase("G", parts.generator, parts.g_optimizer, [loss.g_main], g_interval, parts.discriminator,
              after_step=[lambda: parts.ema.update(parts.generator)]),
    ]


def gan_step(generator: nn.Module, phases: list[Phase], loss: GanLoss, batch, step: int, g_interval: int,
             scaler: torch.amp.GradScaler | None) -> Stats:
    """One iteration: the generator runs once, then every phase due at ``step`` (1-based)."""
    inputs = loss.prepare(generator, batch, step, grad=step % g_interval == 0)
    stats, _ = run_phases(phases, inputs, step, scaler)
    return stats


# -- settings and the guard -------------------------------------------------------------------
@dataclass(frozen=True)
class GuardSettings:
    max_restarts: int = 3
    lr_factor: float = 0.5
    collapse_window: int = 0  # steps; 0 = collapse detection off
    collapse_accuracy: float = 0.99


@dataclass(frozen=True)
class LoopSettings:
    steps: int
    log_interval: int = 10
    sample_interval: int = 100  # 0 = no grids
    checkpoint_interval: int = 100
    g_interval: int = 1
    guard: GuardSettings = GuardSettings()
    prefix: str = "gan/"  # namespace of every logged stat

    def __post_init__(self):
        if self.checkpoint_interval % self.log_interval:
            raise ValueError("checkpoint_interval must be a multiple of log_interval")


@dataclass
class GuardRecord:
    """What the guard did; checkpointed with the run, and kept across its own restores."""

    events: list[dict] = field(default_factory=list)  # step, kind, detail, restart, ...
    restarts: int = 0
    lr_scale: float = 1.0

    def state_dict(self) -> dict:
        return {"events": list(self.events), "restarts": self.restarts, "lr_scale": self.lr_scale}

    def load_state_dict(self, state: dict) -> None:
        self.events, self.restarts, self.lr_scale = list(state["events"]), int(state["restarts"]), float(state["lr_scale"])


@dataclass
class GanHistory:
    rows: list[dict] = field(default_factory=list)  # one per log interval: step + mean stats
    events: list[dict] = field(default_factory=list)  # guard events: step, kind, detail
    restarts: int = 0
    lr_scale: float = 1.0
    resumed_from: int | None = None

    @property
    def final(self) -> dict:
        return self.rows[-1] if self.rows else {}


class DivergenceGuard:
    """Reads each interval's mean stats; names the problem, if any.

    ``nan``: any stat is NaN or infinite. ``collapse`` (when ``collapse_window`` > 0): the
    discriminator's mean accuracy on real and fake stayed >= ``collapse_accuracy`` for
    ``collapse_window`` consecutive steps.
    """

    def __init__(self, settings: GuardSettings, log_interval: int, prefix: str = "gan/"):
        self.settings, self.log_interval, self.prefix = settings, log_interval, prefix
        self.separated_steps = 0

    def reset(self) -> None:
        self.separated_steps = 0

    def check(self, means: dict[str, float]) -> tuple[str, str] | None:
        bad = sorted(self.prefix + name for name, value in means.items() if not math.isfinite(value))
        if bad:
            return "nan", f"non-finite {', '.join(bad)}"
        if not self.settings.collapse_window or "d_acc_real" not in means:
            return None
        accuracy = 0.5 * (means["d_acc_real"] + means["d_acc_fake"])
        separated = accuracy >= self.settings.collapse_accuracy
        self.separated_steps = self.separated_steps + self.log_interval if separated else 0
        if self.separated_steps < self.settings.collapse_window:
            return None
        return "collapse", (
            f"discriminator accuracy >= {self.settings.collapse_accuracy} for "
            f"{self.separated_steps} steps (generator gets no useful signal)"
        )


def _set_lr(optimizers: list[torch.optim.Optimizer], scale: float) -> None:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * scale


def gan_state(parts: GanParts, loss: GanLoss, sampler: PairSampler, scaler: torch.amp.GradScaler) -> TrainState:
    """Everything a GAN run mutates, as the one checkpointed state of every trainer."""
    return TrainState(
        modules={"generator": parts.generator, "discriminator": parts.discriminator},
        optimizers={"generator": parts.g_optimizer, "discriminator": parts.d_optimizer},
        scalers={"gan": scaler},
        extras={"ema": parts.ema, "loss": loss, "sampler": sampler, "guard": GuardRecord()},
    )


# -- the run ----------------------------------------------------------------------------------
def train_gan(
    parts: GanParts,
    loss: GanLoss,
    sampler: PairSampler,
    settings: LoopSettings,
    checkpoints: CheckpointManager,
    log: LogFn,
    constraints: list[Callable[[nn.Module], None]] = (),
    on_sample: Callable[[int, nn.Module], None] | None = None,
    on_event: Callable[[dict], None] | None = None,
    progress: bool | None = None,
    label: str = "augment",
) -> GanHistory:
    """Train for ``settings.steps`` iterations (resuming ``checkpoints`` if it holds a matching
    checkpoint) and return the history. Raises :class:`GanDivergedError`."""
    scaler = torch.amp.GradScaler(loss.device.type, enabled=loss.dtype == torch.float16)
    phases = build_phases(parts, loss, settings.g_interval, list(constraints))
    optimizers = [parts.g_optimizer, parts.d_optimizer]
    state = gan_state(parts, loss, sampler, scaler)
    record: GuardRecord = state.extras["guard"]
    guard, prefix = settings.guard, settings.prefix
    watch = DivergenceGuard(guard, settings.log_interval, prefix)
    found = checkpoints.load()
    resumed_from = None
    if found.checkpoint is not None:
        resume(state, found.checkpoint)
        resumed_from = state.step
    _set_lr(optimizers, record.lr_scale)
    if found.checkpoint is None and on_sample is not None and settings.sample_interval:
        on_sample(0, parts.ema.model)
    kept: dict = {}  # the guard's record across a restore, which would roll it back

    def batches(start: int):
        parts.generator.train()
        parts.discriminator.train()
        while True:
            yield sampler.next()

    def at_interval(current: TrainState, means: dict[str, float], timing: IntervalInfo) -> dict | Restore:
        problem = watch.check(means)
        if problem is not None:
            kind, detail = problem
            record.restarts += 1
            event = {"step": current.step, "kind": kind, "detail": detail, "restart": record.restarts}
            if record.restarts > guard.max_restarts:
                raise GanDivergedError(
                    f"GAN training diverged at step {current.step} ({detail}) after {guard.max_restarts} "
                    f"restart(s) with learning rates down to {record.lr_scale:g}x; lower the "
                    "learning rates or enable a discriminator stabiliser (spectral norm, "
                    "gradient penalty, R1)"
                )
            kept.update(event=event, record=record.state_dict())
            return Restore(detail)
        row = {"step": current.step, **{prefix + name: value for name, value in means.items()},
               prefix + "lr_scale": record.lr_scale}
        last = current.step >= settings.steps
        if on_sample is not None and settings.sample_interval and (current.step % settings.sample_interval == 0
                                                                   or last):
            on_sample(current.step, parts.ema.model)
        return row

    def on_restore(current: TrainState, restore: Restore) -> None:
        event = kept["event"]
        record.load_state_dict(kept["record"])
        record.events.append(event)
        record.lr_scale *= guard.lr_factor
        _set_lr(optimizers, record.lr_scale)
        watch.reset()
        event["restored_step"], event["lr_scale"] = current.step, record.lr_scale
        log(prefix + "guard_restarts", record.restarts, event["step"])
        log(prefix + "lr_scale", record.lr_scale, event["step"])
        if on_event is not None:
            on_event(event)

    try:
        run_steps(
            state, steps=settings.steps, interval=settings.log_interval, batches=batches,
            step_fn=lambda batch, step: gan_step(parts.generator, phases, loss, batch, step, settings.g_interval,
                                                 scaler),
            at_interval=at_interval, checkpoints=checkpoints, checkpoint_every=settings.checkpoint_interval,
            on_restore=on_restore, log=log, progress=progress, label=label, describe=_gan_line(label, settings),
        )
    except RestoreFailed as exc:
        raise GanDivergedError(f"GAN training diverged ({exc}) in {checkpoints.folder}") from None
    parts.generator.requires_grad_(True)
    parts.discriminator.requires_grad_(True)
    return GanHistory(rows=list(state.history), events=list(record.events), restarts=record.restarts,
                      lr_scale=record.lr_scale, resumed_from=resumed_from)


SHOWN = ("d_loss", "g_adv", "g_pixel", "d_acc_real", "d_acc_fake")


def _gan_line(label: str, settings: LoopSettings) -> Callable[[dict], str]:
    """The line printed every ``sample_interval`` steps (and at the end): the losses that tell
    whether the two networks are still playing."""
    every = max(settings.sample_interval, settings.log_interval)

    def line(row: dict) -> str:
        step = row["step"]
        if step % every and step < settings.steps:
            return ""
        shown = ", ".join(f"{name} {row[settings.prefix + name]:.3f}" for name in SHOWN
                          if settings.prefix + name in row)
        return f"{label}: step {step}/{settings.steps}  {shown}"

    return line
