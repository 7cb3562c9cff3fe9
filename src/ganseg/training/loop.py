"""The epoch loop, shared by every stage that trains: it sequences, it does not compute.

``fit`` runs epochs of ``train_step`` over a loader, then ``validate``; keeps the best epoch
(``on_improve`` saves its weights), steps the LR schedulers, asks early stopping, checkpoints
after every epoch, appends one history row, logs namespaced metrics through ``log(name,
value, step)`` and shows a progress bar. The loss math lives in the step function: the train
stage passes a :class:`SegmentationStep`; adversarial fine-tuning passes its own step that
runs the discriminator and generator phases. ``fit`` reads no params and imports no tracker.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ganseg.runtime import autocast
from ganseg.training.checkpoint import CheckpointManager, TrainState, capture_rng, restore_rng
from ganseg.training.data import batch_to_device
from ganseg.training.distributed import DistInfo, all_reduce_sum, barrier, gather_objects

StepFn = Callable[[Any], dict[str, torch.Tensor | float]]
LogFn = Callable[[str, float, int], None]


class SegmentationStep:
    """One optimisation step of a segmenter on one batch of uint8 pairs.

    Forward under autocast, loss in float32, backward (through a grad scaler for fp16),
    optional global-norm gradient clipping, optimiser step. Returns ``train/``-namespaced
    detached scalars: the loss, its terms and, with clipping, the gradient norm before it.
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
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.device = device
        self.dtype = dtype
        self.scaler = scaler
        self.grad_clip = grad_clip
        self.memory_format = memory_format

    def __call__(self, batch) -> dict[str, torch.Tensor]:
        images, labels = batch_to_device(batch, self.device, self.memory_format)
        with autocast(self.device, self.dtype):
            logits = self.model(images)  # (B, K, H, W)
        loss, stats = self.criterion(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.scaler if self.scaler is not None and self.scaler.is_enabled() else None
        (scaler.scale(loss) if scaler else loss).backward()
        if self.grad_clip is not None:
            if scaler:
                scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, self.grad_clip).detach()
        if scaler:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        return {f"train/{name}": value for name, value in stats.items()}


def fit(
    state: TrainState,
    *,
    epochs: int,
    loader: Iterable,
    train_step: StepFn,
    validate: Callable[[], dict[str, float]],
    log: LogFn | None = None,
    monitor: str = "val/dice",
    checkpoints: CheckpointManager | None = None,
    on_improve: Callable[[TrainState], None] | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
    dist_info: DistInfo | None = None,
    progress: bool | None = None,
    label: str = "train",
) -> list[dict]:
    """Train from ``state.epoch`` to ``epochs`` (or an early stop); returns the history rows.

    Every process of a DDP run calls ``fit``; only rank 0 logs, writes and calls
    ``on_improve`` / ``on_epoch_end``. ``progress``: None = a bar only on a terminal; the
    per-epoch line is printed to stderr either way.
    """
    info = dist_info or DistInfo()
    log = log if (log is not None and info.is_main) else (lambda name, value, step: None)
    show_bar = info.is_main and (progress if progress is not None else sys.stderr.isatty())
    sampler = getattr(loader, "sampler", None)
    epoch_bar = tqdm(total=epochs, initial=state.epoch, desc=label, unit="epoch", file=sys.stderr,
                     disable=not show_bar, dynamic_ncols=True)
    durations: list[float] = []
    try:
        for epoch in range(state.epoch, epochs):
            if state.stopped_early:
                break
            started = time.perf_counter()
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            for module in state.modules.values():
                module.train()

            sums: dict[str, torch.Tensor] = {}
            seen = 0
            batches = tqdm(loader, desc=f"epoch {epoch + 1}", unit="batch", leave=False, file=sys.stderr,
                           disable=not show_bar, dynamic_ncols=True)
            for batch in batches:
                stats = train_step(batch)
                size = _batch_size(batch)
                for name, value in stats.items():  # summed on the device: no sync per step
                    weighted = torch.as_tensor(value).detach().to(torch.float64) * size
                    sums[name] = sums[name] + weighted if name in sums else weighted
                seen += size
                state.step += 1
            train_stats = _mean_over_processes(sums, seen, info)

            val_stats = validate()
            row: dict[str, Any] = {"epoch": epoch + 1, **train_stats, **val_stats}
            for name, optimizer in state.optimizers.items():
                key = "train/lr" if len(state.optimizers) == 1 else f"train/lr_{name}"
                row[key] = optimizer.param_groups[0]["lr"]
            elapsed = time.perf_counter() - started
            row["time/epoch_s"] = elapsed
            row["train/images_per_s"] = seen * info.world_size / elapsed if elapsed > 0 else math.nan

            value = row[monitor]
            if value > state.best_metric:
                state.best_metric, state.best_epoch = value, epoch + 1
                if on_improve is not None and info.is_main:
                    on_improve(state)
            for scheduler in state.schedulers.values():
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(value)
                else:
                    scheduler.step()
            if state.early_stopping is not None and state.early_stopping.update(value):
                state.stopped_early = True
            state.epoch = epoch + 1
            state.history.append(row)

            rng_states = gather_objects(capture_rng())  # a collective: every rank takes part
            if info.is_main:
                if checkpoints is not None:
                    checkpoints.save(state, rng_states)
                for name, metric in row.items():
                    if name != "epoch" and isinstance(metric, (int, float)) and math.isfinite(metric):
                        log(name, float(metric), epoch + 1)
                if on_epoch_end is not None:
                    on_epoch_end(state)
            barrier()

            durations.append(elapsed)
            remaining = epochs - state.epoch
            eta = remaining * sum(durations[-5:]) / len(durations[-5:])
            if info.is_main:
                tqdm.write(_epoch_line(label, row, epochs, state, eta), file=sys.stderr)
            epoch_bar.update(1)
            epoch_bar.set_postfix({monitor: f"{value:.4f}", "best": f"{state.best_metric:.4f}"})
    finally:
        epoch_bar.close()
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


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0])


def _mean_over_processes(sums: dict[str, torch.Tensor], seen: int, info: DistInfo) -> dict[str, float]:
    names = sorted(sums)
    device = sums[names[0]].device if names else torch.device("cpu")
    packed = torch.stack([*(sums[n] for n in names), torch.tensor(float(seen), dtype=torch.float64, device=device)])
    if info.enabled:
        packed = all_reduce_sum(packed)
    packed = packed.cpu()
    count = max(float(packed[-1]), 1.0)
    return {name: float(packed[i]) / count for i, name in enumerate(names)}


def _epoch_line(label: str, row: dict, epochs: int, state: TrainState, eta_s: float) -> str:
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
