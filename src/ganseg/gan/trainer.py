"""The GAN training loop: it sequences phases as data and guards against divergence.

One iteration draws a batch, runs the generator once, then runs each due phase::

    D        discriminator: objective.d_loss + every penalty with interval 1, one step
    Dreg/x   discriminator: a lazy penalty (interval k > 1), scaled by k, one step
    G        generator: objective.g_loss + the task's own loss, every ``g_interval`` steps

A phase is a module, its optimizer, a list of loss terms and an interval; the loop never asks
which loss or which regulariser it runs. Constraints (weight clipping) follow a phase's
step; the EMA generator follows each G step.

Stats are kept as device tensors and averaged over ``log_interval`` steps, so the loop syncs
with the device once per interval. At each interval the divergence guard checks the means:
a NaN/inf loss, or a discriminator that separates real from fake almost perfectly for
``collapse_window`` steps, restores the last checkpoint (saved only after a clean interval),
multiplies both learning rates by ``lr_factor`` and carries on; after ``max_restarts`` such
events it raises :class:`GanDivergedError`.

The loop receives built objects and ``log(name, value, step)``; it reads no params and writes
only through its :class:`Checkpointer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ganseg import io
from ganseg.errors import GansegError
from ganseg.gan.data import Batch, PairSampler
from ganseg.gan.ema import Ema
from ganseg.gan.losses import GanObjective, Stats
from ganseg.gan.pool import ImagePool
from ganseg.gan.regularisers import InstanceNoise, Penalty
from ganseg.gan.tasks import GanTask
from ganseg.runtime import autocast

LogFn = Callable[[str, float, int], None]


class GanDivergedError(GansegError):
    """Training kept diverging after every allowed restart."""


# -- the loss interface ---------------------------------------------------------------------
@dataclass
class StepInputs:
    """What one iteration's phases share: the batch, the generator's output, both stacks."""

    step: int
    batch: Batch
    generated: torch.Tensor
    real_inputs: torch.Tensor
    fake_inputs: torch.Tensor


class GanLoss:
    """Objective + task + stabilisers: the loss terms the phases call.

    ``d_main``, ``g_main`` and ``penalty_term(p)`` each return ``(loss, stats)``. Instance
    noise (when given) is added to every discriminator input; the image pool (when given)
    replaces part of the fakes the discriminator trains on.
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
        return autocast(self.device, self.dtype)

    def judge(self, discriminator: nn.Module, inputs: torch.Tensor, step: int) -> torch.Tensor:
        if self.instance_noise is not None:
            inputs = self.instance_noise(inputs, step)
        return discriminator(inputs)

    def prepare(self, generator: nn.Module, batch: Batch, step: int, grad: bool) -> StepInputs:
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


# -- phases ---------------------------------------------------------------------------------
Term = Callable[[nn.Module, StepInputs], tuple[torch.Tensor, Stats]]


@dataclass
class Phase:
    name: str
    module: nn.Module  # whose parameters this phase trains
    optimizer: torch.optim.Optimizer
    terms: list[Term]
    interval: int = 1
    judge: nn.Module | None = None  # the module the terms receive (D for both D and G phases)
    constraints: list[Callable[[nn.Module], None]] = field(default_factory=list)
    after_step: list[Callable[[], None]] = field(default_factory=list)

    def due(self, step: int) -> bool:
        return step % self.interval == 0


@dataclass
class GanParts:
    generator: nn.Module
    discriminator: nn.Module
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    ema: Ema


def build_phases(
    parts: GanParts, loss: GanLoss, g_interval: int = 1, constraints: list[Callable[[nn.Module], None]] = ()
) -> list[Phase]:
    """D (with eager penalties), one Dreg phase per lazy penalty, then G."""
    disc = parts.discriminator
    eager = [loss.penalty_term(p) for p in loss.penalties if p.interval == 1]
    phases = [Phase("D", disc, parts.d_optimizer, [loss.d_main, *eager], 1, disc, list(constraints))]
    for penalty in loss.penalties:
        if penalty.interval > 1:
            term = loss.penalty_term(penalty, gain=float(penalty.interval))
            phases.append(Phase(f"Dreg/{penalty.name}", disc, parts.d_optimizer, [term],
                                penalty.interval, disc, list(constraints)))
    phases.append(Phase("G", parts.generator, parts.g_optimizer, [loss.g_main], g_interval, disc,
                        after_step=[lambda: parts.ema.update(parts.generator)]))
    return phases


# -- settings, history, checkpoints -----------------------------------------------------------
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
class GanHistory:
    rows: list[dict] = field(default_factory=list)  # one per log interval: step + mean stats
    events: list[dict] = field(default_factory=list)  # guard events: step, kind, detail
    restarts: int = 0
    lr_scale: float = 1.0
    resumed_from: int | None = None

    @property
    def final(self) -> dict:
        return self.rows[-1] if self.rows else {}


class Checkpointer:
    """One resumable checkpoint file, replaced atomically; ``fingerprint`` ties it to a run.

    A checkpoint written for other settings or data (a different fingerprint) is ignored.
    """

    def __init__(self, path: Path, fingerprint: str):
        self.path = Path(path)
        self.fingerprint = fingerprint

    def save(self, state: dict) -> None:
        io.torch_save({**state, "fingerprint": self.fingerprint}, self.path)

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            return None
        return state

    def clear(self) -> None:
        """Remove the checkpoint, and its folder once empty, when the run's outputs are safely
        written (as the train stage's checkpointer does)."""
        self.path.unlink(missing_ok=True)
        folder = self.path.parent
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    def stale(self) -> bool:
        """A checkpoint exists but belongs to other settings."""
        return self.path.exists() and self.load() is None


# -- the loop -------------------------------------------------------------------------------
class StatsWindow:
    """Sums of stat tensors over one log interval; one sync when read."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: Stats) -> None:
        for name, value in stats.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        if not self.sums:
            return {}
        names = list(self.sums)
        values = torch.stack([self.sums[n] for n in names]).cpu().tolist()  # the one sync
        return {n: v / self.counts[n] for n, v in zip(names, values)}


def _set_lr(optimizers: list[torch.optim.Optimizer], scale: float) -> None:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * scale


def _capture(parts: GanParts, loss: GanLoss, sampler: PairSampler, scaler, step: int,
             history: GanHistory) -> dict:
    state = {
        "step": step,
        "generator": parts.generator.state_dict(),
        "discriminator": parts.discriminator.state_dict(),
        "g_optimizer": parts.g_optimizer.state_dict(),
        "d_optimizer": parts.d_optimizer.state_dict(),
        "ema": parts.ema.state_dict(),
        "loss": loss.state_dict(),
        "sampler": sampler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "history_rows": list(history.rows),
        "history_events": list(history.events),
        "restarts": history.restarts,
        "lr_scale": history.lr_scale,
    }
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(state: dict, parts: GanParts, loss: GanLoss, sampler: PairSampler, scaler) -> int:
    parts.generator.load_state_dict(state["generator"])
    parts.discriminator.load_state_dict(state["discriminator"])
    parts.g_optimizer.load_state_dict(state["g_optimizer"])
    parts.d_optimizer.load_state_dict(state["d_optimizer"])
    parts.ema.load_state_dict(state["ema"])
    loss.load_state_dict(state["loss"])
    sampler.load_state_dict(state["sampler"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return int(state["step"])


def _params_finite(module: nn.Module) -> bool:
    norms = torch._foreach_norm([p.detach() for p in module.parameters()])
    return bool(torch.isfinite(torch.stack(norms)).all())


def train_step(
    generator: nn.Module, phases: list[Phase], loss: GanLoss, batch: Batch, step: int, g_interval: int,
    scaler: torch.amp.GradScaler, window: StatsWindow,
) -> None:
    """One iteration: the generator runs once, then every phase due at ``step`` (1-based)."""
    inputs = loss.prepare(generator, batch, step, grad=step % g_interval == 0)
    for phase in phases:
        if not phase.due(step):
            continue
        # Only the trained module builds weight gradients: a G phase backpropagates
        # through the discriminator to its input but skips D's weight gradients.
        phase.judge.requires_grad_(phase.judge is phase.module)
        phase.module.requires_grad_(True)
        phase.optimizer.zero_grad(set_to_none=True)
        total = None
        for term in phase.terms:
            term_loss, stats = term(phase.judge, inputs)
            total = term_loss if total is None else total + term_loss
            window.add(stats)
        scaler.scale(total).backward()
        scaler.step(phase.optimizer)
        for constraint in phase.constraints:
            constraint(phase.module)
        for hook in phase.after_step:
            hook()
    scaler.update()


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


def train_gan(
    parts: GanParts,
    loss: GanLoss,
    sampler: PairSampler,
    settings: LoopSettings,
    checkpointer: Checkpointer,
    log: LogFn,
    constraints: list[Callable[[nn.Module], None]] = (),
    on_sample: Callable[[int, nn.Module], None] | None = None,
    on_event: Callable[[dict], None] | None = None,
) -> GanHistory:
    """Train for ``settings.steps`` iterations (resuming from ``checkpointer`` if it holds a
    matching checkpoint) and return the history. Raises :class:`GanDivergedError`."""
    device = loss.device
    scaler = torch.amp.GradScaler(device.type, enabled=loss.dtype == torch.float16)
    phases = build_phases(parts, loss, settings.g_interval, list(constraints))
    optimizers = [parts.g_optimizer, parts.d_optimizer]
    history = GanHistory()
    guard = settings.guard
    prefix = settings.prefix

    saved = checkpointer.load()
    if saved is not None:
        step = _restore(saved, parts, loss, sampler, scaler)
        history.rows, history.events = list(saved["history_rows"]), list(saved["history_events"])
        history.restarts, history.lr_scale = int(saved["restarts"]), float(saved["lr_scale"])
        history.resumed_from = step
        _set_lr(optimizers, history.lr_scale)
    else:
        step = 0
        _set_lr(optimizers, 1.0)
        checkpointer.save(_capture(parts, loss, sampler, scaler, step, history))
        if on_sample is not None and settings.sample_interval:
            on_sample(0, parts.ema.model)

    window = StatsWindow()
    watch = DivergenceGuard(guard, settings.log_interval, prefix)
    parts.generator.train()
    parts.discriminator.train()
    while step < settings.steps:
        step += 1
        train_step(parts.generator, phases, loss, sampler.next(), step, settings.g_interval, scaler, window)
        if step % settings.log_interval and step != settings.steps:
            continue
        means, window = window.means(), StatsWindow()

        problem = watch.check(means)
        if problem is not None:
            kind, detail = problem
            history.restarts += 1
            event = {"step": step, "kind": kind, "detail": detail, "restart": history.restarts}
            if history.restarts > guard.max_restarts:
                raise GanDivergedError(
                    f"GAN training diverged at step {step} ({detail}) after {guard.max_restarts} "
                    f"restart(s) with learning rates down to {history.lr_scale:g}x; lower the "
                    "learning rates or enable a discriminator stabiliser (spectral norm, "
                    "gradient penalty, R1)"
                )
            state = checkpointer.load()
            if state is None:
                raise GanDivergedError(
                    f"GAN training diverged at step {step} ({detail}) and no checkpoint at "
                    f"{checkpointer.path} to restore"
                )
            restarts, events = history.restarts, [*history.events, event]
            step = _restore(state, parts, loss, sampler, scaler)
            history.rows = list(state["history_rows"])
            history.events, history.restarts = events, restarts
            history.lr_scale *= guard.lr_factor
            _set_lr(optimizers, history.lr_scale)
            watch.reset()
            event["restored_step"], event["lr_scale"] = step, history.lr_scale
            log(prefix + "guard_restarts", history.restarts, event["step"])
            log(prefix + "lr_scale", history.lr_scale, event["step"])
            if on_event is not None:
                on_event(event)
            continue

        row = {"step": step, **{prefix + name: value for name, value in means.items()},
               prefix + "lr_scale": history.lr_scale}
        history.rows.append(row)
        for name, value in row.items():
            if name != "step":
                log(name, value, step)
        last = step == settings.steps
        if on_sample is not None and settings.sample_interval and (step % settings.sample_interval == 0 or last):
            on_sample(step, parts.ema.model)
        due = step % settings.checkpoint_interval == 0 or last
        if due and _params_finite(parts.generator) and _params_finite(parts.discriminator):
            checkpointer.save(_capture(parts, loss, sampler, scaler, step, history))
    parts.generator.requires_grad_(True)
    parts.discriminator.requires_grad_(True)
    return history
