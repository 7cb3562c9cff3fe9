"""The one training loop: it counts steps, averages stats, checkpoints and reports; it does not compute.

:func:`run_steps` is what every trainer runs (segmenter, GAN, adversarial fine-tuning). One
step draws a batch and calls ``step_fn`` (the phases of :mod:`ganseg.training.phases`); every
``interval`` steps it averages the steps' stats (weighted by batch size; one device sync per
interval, summed over processes in a DDP run), hands them to ``at_interval``, appends the row it
returns to the history, saves a checkpoint when one is due, logs the row through ``log(name,
value, step)`` and prints one line. ``at_interval`` is where a trainer says what an interval
means: the segmenters validate, keep the best model, step their schedulers and may stop early
(:func:`fit`); the GAN checks for divergence and may ask for the last checkpoint back
(:class:`Restore`; ``ganseg.gan.trainer``). Progress (a bar, or a line every 30 s in logs) is
:class:`ganseg.progress.Progress`.

The loop reads no params and imports no tracker. A checkpoint is the whole
:class:`~ganseg.training.checkpoint.TrainState` plus every process's RNG states, written at
step 0 of a fresh run and after every due interval whose weights are finite; resuming it
continues exactly (the data stream restarts from ``batches(state.step)``).
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ganseg.errors import ConfigError, GansegError
from ganseg.progress import Progress
from ganseg.runtime import autocast
from ganseg.training.checkpoint import CheckpointManager, TrainState, capture_rng, restore_rng
from ganseg.training.data import batch_to_device
from ganseg.training.distributed import DistInfo, all_reduce_sum, barrier, gather_objects
from ganseg.training.phases import Phase, Stats, run_phases

LogFn = Callable[[str, float, int], None]


class RestoreFailed(GansegError):
    """``at_interval`` asked for the last checkpoint and there is none."""


@dataclass(frozen=True)
class Restore:
    """``at_interval``'s answer when the run must go back to its last checkpoint."""

    reason: str


@dataclass(frozen=True)
class IntervalInfo:
    seconds: float  # wall time of the interval's steps
    samples: int  # samples drawn in the interval, all processes together
    steps: int  # steps in the interval


def run_steps(
    state: TrainState,
    *,
    steps: int,
    interval: int,
    batches: Callable[[int], Iterator],
    step_fn: Callable[[Any, int], Stats],
    at_interval: Callable[[TrainState, dict[str, float], IntervalInfo], dict | Restore],
    describe: Callable[[dict], str] | None = None,
    checkpoints: CheckpointManager | None = None,
    checkpoint_every: int | None = None,
    on_restore: Callable[[TrainState, Restore], None] | None = None,
    on_row: Callable[[TrainState], None] | None = None,
    log: LogFn | None = None,
    dist_info: DistInfo | None = None,
    progress: bool | None = None,
    label: str = "train",
    unit: str = "step",
) -> list[dict]:
    """Run from ``state.step`` to ``steps`` (or until ``state.stopped_early``); returns the history.

    ``batches(start)`` yields the batches of steps ``start + 1, start + 2, ...``; ``step_fn(batch,
    step)`` trains on one (``step`` 1-based) and returns its stats. Every process of a DDP run
    calls this; only rank 0 logs, prints, checkpoints and calls ``on_row``.
    """
    info = dist_info or DistInfo()
    checkpoint_every = checkpoint_every or interval
    if checkpoint_every % interval:
        raise ValueError(f"checkpoints every {checkpoint_every} steps: not a multiple of the interval {interval}")
    log = log if (log is not None and info.is_main) else (lambda name, value, step: None)
    bar = Progress(steps, label, unit=unit, initial=state.step, enabled=info.is_main and progress is not False)
    say = bar.write if bar.mode != "off" else (lambda text: print(text, file=sys.stderr))
    if state.step == 0:
        _save(checkpoints, state, info)  # a fresh run: something to go back to from the first interval on
    stream = batches(state.step)
    sums: dict[str, torch.Tensor] = {}
    weights: dict[str, int] = {}
    started, seen, in_interval = time.perf_counter(), 0, 0
    try:
        while state.step < steps and not state.stopped_early:
            batch = next(stream)
            stats = step_fn(batch, state.step + 1)
            size = _batch_size(batch)
            for name, value in stats.items():  # summed on the device: no sync per step
                weighted = torch.as_tensor(value).detach().to(torch.float64) * size
                sums[name] = sums[name] + weighted if name in sums else weighted
                weights[name] = weights.get(name, 0) + size
            seen += size
            in_interval += 1
            state.step += 1
            bar.update(1)
            if state.step % interval and state.step < steps:
                continue

            means = _mean_over_processes(sums, weights, info)
            bar.update(0, **{name.rsplit("/", 1)[-1]: value for name, value in means.items()
                             if name.endswith("loss")})  # the interval's losses beside the rate
            timing = IntervalInfo(time.perf_counter() - started, seen * info.world_size, in_interval)
            sums, weights, seen, in_interval = {}, {}, 0, 0
            outcome = at_interval(state, means, timing)
            if isinstance(outcome, Restore):
                saved = checkpoints.load() if checkpoints is not None else None
                if saved is None or saved.checkpoint is None:
                    raise RestoreFailed(f"{label}: {outcome.reason}, and no checkpoint to go back to")
                resume(state, saved.checkpoint, info)
                if on_restore is not None:
                    on_restore(state, outcome)
                stream = batches(state.step)
                started = time.perf_counter()
                continue

            state.epoch += 1
            state.history.append(outcome)
            # Saved before the row goes out: a kill while it is written resumes after this
            # interval, and the history file is rewritten whole from the checkpoint's rows.
            due = state.step % checkpoint_every == 0 or state.step >= steps or state.stopped_early
            if due and _finite(state.modules.values()):
                _save(checkpoints, state, info)
            if info.is_main:
                for name, value in outcome.items():
                    if name not in ("epoch", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                        log(name, float(value), state.step if "step" in outcome else state.epoch)
                if on_row is not None:
                    on_row(state)
                line = describe(outcome) if describe is not None else ""
                if line:
                    say(line)
            barrier()
            started = time.perf_counter()
    finally:
        bar.close()
    return state.history


def resume(state: TrainState, checkpoint: dict, dist_info: DistInfo | None = None) -> None:
    """Load a checkpoint's training state and this process's RNG states into ``state``."""
    info = dist_info or DistInfo()
    state.load_state_dict(checkpoint["state"])
    rng = checkpoint.get("rng") or []
    if len(rng) == info.world_size:
        restore_rng(rng[info.rank])
    elif rng:  # another process count: the sampler is still exact, dropout draws are not
        restore_rng(rng[0])


def _save(checkpoints: CheckpointManager | None, state: TrainState, info: DistInfo) -> None:
    """Every rank calls this (the RNG gather is a collective); rank 0 writes, when it has a manager."""
    rng_states = gather_objects(capture_rng())
    if info.is_main and checkpoints is not None:
        checkpoints.save(state, rng_states)


def _finite(modules: Iterable[nn.Module]) -> bool:
    """No NaN or inf in any weight: such a state is never saved, so a restore has a sane one."""
    tensors = [p.detach() for module in modules for p in module.parameters()]
    return not tensors or bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors))).all())


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else getattr(batch, "images", batch)
    return int(first.shape[0])


def _mean_over_processes(sums: dict[str, torch.Tensor], weights: dict[str, int], info: DistInfo) -> dict[str, float]:
    names = sorted(sums)
    device = sums[names[0]].device if names else torch.device("cpu")
    packed = torch.stack([*(sums[n] for n in names),
                          *(torch.tensor(float(weights[n]), dtype=torch.float64, device=device) for n in names)])
    if info.enabled:
        packed = all_reduce_sum(packed)
    values = packed.cpu().tolist()  # the one sync of the interval
    count = len(names)
    return {name: values[i] / max(values[count + i], 1.0) for i, name in enumerate(names)}


# -- the segmenters' driver: epochs of a loader, validation, the best model ------------------------
@dataclass(frozen=True)
class StepPlan:
    """How long a segmenter trains and how often it validates, in optimizer steps."""

    steps: int
    interval: int
    per_epoch: int  # batches in one pass over the training pairs

    @property
    def validations(self) -> int:
        return math.ceil(self.steps / self.interval)

    def describe(self, batch_size: int) -> str:
        return (f"{self.steps} optimizer steps ({self.steps / self.per_epoch:.1f} epochs of {self.per_epoch} "
                f"batches of {batch_size}), validation every {self.interval} steps ({self.validations} in all)")


def plan_steps(per_epoch: int, epochs: int, steps: int | None, val_interval: int | None, block: str) -> StepPlan:
    """``steps`` (or ``epochs`` passes of ``per_epoch`` batches), validated every ``val_interval``
    steps (or once per epoch); a plan that would never validate names the keys of ``block``."""
    total = epochs * per_epoch if steps is None else steps
    interval = val_interval or per_epoch
    if total and interval > total:
        raise ConfigError(f"{block}.val_interval ({interval}) exceeds the run's {total} steps: it would never "
                          f"validate; lower {block}.val_interval or raise {block}.steps")
    return StepPlan(total, interval, per_epoch)



class SegmentationStep:
    """One optimisation step of a segmenter on one batch of uint8 pairs: a single phase.

    Forward under autocast, loss in float32, backward through the grad scaler (fp16), optional
    global-norm clipping (its norm before clipping is ``train/grad_norm``), optimiser step.
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: Callable,
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        scaler: torch.amp.GradScaler | None = None,
        grad_clip: float | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.model, self.criterion = model, criterion
        self.device, self.dtype, self.scaler, self.memory_format = device, dtype, scaler, memory_format
        self.phases = [Phase("seg", model, optimizer, [self.segmentation_term], grad_clip=grad_clip,
                             grad_norm_stat="train/grad_norm")]

    def segmentation_term(self, judge, batch) -> tuple[torch.Tensor, Stats]:
        images, labels = batch
        with autocast(self.device, self.dtype):
            logits = self.model(images)  # (B, K, H, W)
        loss, stats = self.criterion(logits, labels)
        return loss, {f"train/{name}": value for name, value in stats.items()}

    def __call__(self, batch, step: int = 0) -> Stats:
        stats, _ = run_phases(self.phases, batch_to_device(batch, self.device, self.memory_format), step,
                              self.scaler)
        return stats


def fit(
    state: TrainState,
    *,
    epochs: int,
    loader: Iterable,
    train_step: Callable[[Any, int], Stats],
    validate: Callable[[], dict[str, float]],
    log: LogFn | None = None,
    monitor: str = "val/dice",
    checkpoints: CheckpointManager | None = None,
    on_improve: Callable[[TrainState], None] | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
    dist_info: DistInfo | None = None,
    progress: bool | None = None,
    label: str = "train",
    steps: int | None = None,
    interval: int | None = None,
) -> list[dict]:
    """Train a segmenter and validate it every ``interval`` steps (default: once per pass over
    ``loader``) for ``steps`` steps (default: ``epochs`` passes), or to an early stop:
    :func:`run_steps` with validation as the interval hook. ``train_step(batch, step)``.

    With a step budget an "epoch" of the history, of early stopping's patience and of the
    plateau schedule is one validation interval; ``train/steps`` in each row counts optimizer
    steps. Every other schedule (cosine) is stepped after each optimizer step.
    """
    info = dist_info or DistInfo()
    per_epoch = len(loader)
    interval = interval or per_epoch
    steps = steps or epochs * per_epoch
    validations = math.ceil(steps / interval)
    sampler = getattr(loader, "sampler", None)
    durations: list[float] = []
    # Plateau needs the metric, so at_interval steps it; every other schedule follows the steps.
    per_step = [s for s in state.schedulers.values() if not isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau)]

    def batches(start: int) -> Iterator:
        skip = start % per_epoch  # a resume inside an epoch: the same order, from where it stopped
        for epoch in itertools.count(start // per_epoch):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            for module in state.modules.values():
                module.train()
            yield from itertools.islice(loader, skip, None)
            skip = 0

    def at_interval(current: TrainState, means: dict[str, float], timing: IntervalInfo) -> dict:
        row: dict[str, Any] = {"epoch": current.epoch + 1, **means, **validate(), "train/steps": current.step}
        for name, optimizer in current.optimizers.items():
            row["train/lr" if len(current.optimizers) == 1 else f"train/lr_{name}"] = optimizer.param_groups[0]["lr"]
        row["time/epoch_s"] = timing.seconds
        row["train/images_per_s"] = timing.samples / timing.seconds if timing.seconds > 0 else math.nan
        value = row[monitor]
        if value > current.best_metric:
            current.best_metric, current.best_epoch = value, row["epoch"]
            if on_improve is not None and info.is_main:
                on_improve(current)
        for scheduler in current.schedulers.values():
            if scheduler not in per_step:
                scheduler.step(value)
        if current.early_stopping is not None and current.early_stopping.update(value):
            current.stopped_early = True
        durations.append(timing.seconds)
        return row

    def describe(row: dict) -> str:
        eta = (validations - state.epoch) * sum(durations[-5:]) / max(len(durations[-5:]), 1)
        line = _epoch_line(label, row, validations, state, eta, monitor)
        return line if interval == per_epoch else line.replace(" | ", f" (step {state.step}/{steps}) | ", 1)

    def step_and_schedule(batch, step: int) -> Stats:
        stats = train_step(batch, step)
        for scheduler in per_step:
            scheduler.step()
        return stats

    return run_steps(
        state, steps=steps, interval=interval, batches=batches,
        step_fn=step_and_schedule,
        at_interval=at_interval, describe=describe, checkpoints=checkpoints, on_row=on_epoch_end, log=log,
        dist_info=info, progress=progress, label=label, unit="batch",
    )


def _epoch_line(label: str, row: dict, epochs: int, state: TrainState, eta_s: float, monitor: str) -> str:
    shown = [f"{name} {row[name]:.4f}" for name in row
             if name.startswith(("train/loss", "val/")) and isinstance(row[name], float)]
    lr = next((row[n] for n in row if n.startswith("train/lr")), None)
    parts = [
        f"{label} epoch {row['epoch']}/{epochs}",
        *shown,
        f"best {state.best_metric:.4f} @ {state.best_epoch}",
        f"lr {lr:.2e}" if lr is not None else "",
        f"{row['time/epoch_s']:.1f}s",
        f"eta {_clock(eta_s)}" if not state.stopped_early else "early stop",
    ]
    return " | ".join(part for part in parts if part)


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"
