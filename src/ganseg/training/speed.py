"""What one training step and one validation pixel cost on this device, measured, for the plan.

A time budget becomes a step count only through a measured rate: the cost of a U-Net step
varies by 100x between a 2-core CPU and a GPU, and by more across patch sizes. The step probe
runs a copy of the real model, loss and optimiser on random patches of the planned shape (a few
warm-up steps, then timed ones), so the network, the precision and the memory format are the
ones training uses. The global RNG is left as it was, so a measured run trains exactly as an
unmeasured one would.

Validation is timed as it runs: the real sliding-window validation on a share of the validation
images. A forward pass of a batch of patches alone measured 1.7x too cheap at 96 px tiles on
DSB (27 s planned, about 45 s spent per validation): the blending, the full-size maps and the
loss and Dice at native size cost as much again as the network at small tiles.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ganseg.runtime import autocast

WARMUP_STEPS = 2
TIMED_STEPS = 3
VALIDATION_PROBE_SHARE = 0.1  # of the validation windows' pixels, timed to price a whole validation


@dataclass(frozen=True)
class StepRate:
    """Measured seconds of one training step of ``batch`` patches of ``patch`` px, and of
    validation per pixel its windows feed the network; scaled to other shapes by pixel count,
    which holds for a fully convolutional network away from tiny sizes."""

    patch: int
    batch: int
    step_seconds: float
    validation_seconds_per_pixel: float = 0.0  # per pixel of the windows of tile ``patch``
    sample_seconds: float = 0.0  # cutting and augmenting one patch of ``patch`` px (the data loader)

    def seconds_per_step(self, patch: int, batch: int) -> float:
        """The network's step plus the loader's work for the batch (in-process loading adds to
        it; worker processes hide it only when cores are spare, so it is counted)."""
        scale = (patch * patch) / (self.patch * self.patch)
        return self.step_seconds * scale * batch / self.batch + self.sample_seconds * scale * batch

    def seconds_to_validate(self, sizes: Sequence[tuple[int, int]], tile: int) -> float:
        return self.validation_seconds_per_pixel * covered_pixels(sizes, tile)


def covered_pixels(sizes: Sequence[tuple[int, int]], tile: int, overlap: float = 0.25) -> int:
    """Pixels the sliding window feeds the network to segment images of ``sizes`` with square
    tiles of ``tile`` (each axis: ceil((L - T) / step) + 1 windows, an axis under T padded to T)."""
    step = max(1, int(tile * (1 - overlap)))
    windows = 0
    for height, width in sizes:
        rows = 1 + max(0, math.ceil((height - tile) / step))
        cols = 1 + max(0, math.ceil((width - tile) / step))
        windows += rows * cols
    return windows * tile * tile


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step_rate(
    model: nn.Module,
    criterion: Callable,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    *,
    channels: int,
    num_classes: int,
    patch: int,
    batch: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> StepRate:
    """Time training steps of a copy of ``model`` on random data."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        probe = copy.deepcopy(model).to(device, memory_format=memory_format).train()
        optimizer = make_optimizer(probe)
        images = torch.rand(batch, channels, patch, patch, device=device).contiguous(memory_format=memory_format)
        labels = torch.randint(0, max(num_classes, 2), (batch, patch, patch), device=device)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                logits = probe(images)
            loss, _ = criterion(logits, labels)
            loss.backward()
            optimizer.step()

        step_seconds = _timed(step, device)
    return StepRate(patch=patch, batch=batch, step_seconds=step_seconds)


def measure_validation_seconds_per_pixel(
    validate: Callable[[Sequence[int], int], object],
    sizes: Sequence[tuple[int, int]],
    tile: int,
    device: torch.device,
) -> float:
    """Seconds per window pixel of ``validate(indices, tile)`` (the stage's own validation of
    those validation images), timed on the first images that hold
    :data:`VALIDATION_PROBE_SHARE` of the windows' pixels (at least one image), after a warm-up
    on the first image (the first call at a shape pays for kernel choice)."""
    if not sizes:
        return 0.0
    target = VALIDATION_PROBE_SHARE * covered_pixels(sizes, tile)
    count, pixels = 0, 0
    while count < len(sizes) and (count == 0 or pixels < target):
        pixels += covered_pixels([sizes[count]], tile)
        count += 1
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # leave the run's RNG as it was
        validate([0], tile)
        _sync(device)
        start = time.perf_counter()
        validate(list(range(count)), tile)
        _sync(device)
        elapsed = time.perf_counter() - start
    return elapsed / pixels


def measure_sample_seconds(dataset, count: int = 32) -> float:
    """Mean seconds to draw one training sample (patch cut + augmentation) from ``dataset``: the
    mean, not the median, since the costly transforms (elastic) run on a share of the samples."""
    dataset[(0, 0)]  # warm-up: first calls build the transforms' caches
    start = time.perf_counter()
    for index in range(count):
        dataset[(index % len(dataset), index)]
    return (time.perf_counter() - start) / count


def _timed(action: Callable[[], None], device: torch.device) -> float:
    """Median seconds of ``action`` after warm-up (the first calls pay for allocation and kernel choice)."""
    for _ in range(WARMUP_STEPS):
        action()
    _sync(device)
    times = []
    for _ in range(TIMED_STEPS):
        start = time.perf_counter()
        action()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
