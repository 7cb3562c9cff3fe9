"""Plan the segmenter's patch size, batch size and step counts from the data, the device and a
time budget, as nnU-Net's experiment planner does, with a clock in place of a fixed epoch count.

Two parts, as in nnU-Net (``dataset_fingerprint.json`` then ``nnUNetPlans.json``):

1. :func:`fingerprint` summarises the prepared training pairs once (prepare writes it): image
   sizes, foreground fraction, object sizes (connected components, equivalent diameter
   ``2 * sqrt(area / pi)``), the ignored share. :class:`DatasetFingerprint` is its JSON record.
2. :func:`plan_segmenter` turns a fingerprint, a :class:`DeviceBudget` and a budget in minutes
   into a :class:`SegmenterPlan`, with one line per choice saying why. A value set in params is
   kept and the others are planned around it.

The rules, and where they come from (nnU-Net v2, ``ExperimentPlanner.get_plans_for_configuration``):

- **Patch** (square side, a multiple of ``2 ** depth`` so that every ``Down`` halves an even
  side). nnU-Net starts from the median image shape (a patch larger than the image mostly sees
  padding) and shrinks until batch 2 fits the GPU. Here the start is the median image's shorter
  side rounded to the nearest multiple, so a square patch fits inside a typical image, padded
  by at most half a multiple, and at most :data:`CPU_MAX_PATCH` (CPU) or :data:`CUDA_MAX_PATCH`
  (CUDA) unless the context floor needs more. It then shrinks while (CUDA) two samples would
  not fit the memory share, and while (any device) the time budget would give fewer than
  :data:`MIN_STEPS` steps: the step time grows with the patch area, so a smaller patch buys
  steps. It never
  shrinks below ``CONTEXT_DIAMETERS`` typical object diameters (context to tell an object from
  its neighbours) nor below a bottleneck of ``BOTTLENECK_MIN_SIDE`` pixels (nnU-Net's
  ``UNet_featuremap_min_edge_length = 4``), unless the images themselves are smaller.
- **Batch.** CUDA: as many samples as fit the memory share (estimate below), 2 to
  :data:`CUDA_MAX_BATCH`; CPU: :data:`CPU_BATCH`. Then nnU-Net's overfitting cap: one batch
  covers at most :data:`MAX_BATCH_DATA_SHARE` (5 %) of the data set's pixels, never below 2
  (``max_dataset_covered = 0.05``, ``UNet_min_batch_size = 2``).
- **Steps.** nnU-Net trains a fixed 1000 epochs x 250 steps; with minutes on a CPU the step
  count must come from the clock instead: ``steps = (budget - validations) / seconds_per_step``
  with 10 to 25 validations taking at most 20 % of the budget, and ``steps`` a multiple of
  ``val_interval``. ``seconds_per_step`` is measured by the caller on the real device.
- **Validation share.** A validation segments whole images at native size, so a large
  validation split can cost more than the steps between validations (DSB 2018 at 10 %: 100
  images, 46 s each time on 2 cores, which left 3 validations in 15 min). When the full split
  would give fewer than :data:`MIN_VALIDATIONS` validations in the 20 %, each validation during
  training scores a fixed seeded subset holding that share of the validation pixels (at least
  the caller's floor; nnU-Net likewise scores a cheap subset while it trains, and the whole
  split only at the end). Model selection then sees 10 points of the run instead of 3; the
  evaluate stage still scores every test image.

Activation memory, for the CUDA rules: the plain U-Net (``ganseg.models.unet``) keeps about
:data:`ACTIVATION_BYTES` (50) bytes per pixel per ``base_width`` channel at full resolution for
the backward pass, summed over the levels (each level has a quarter of the pixels and twice the
channels: a factor ``2 - 2 ** -depth``), counted with ``torch.autograd.graph.saved_tensors_hooks``
on depths 1 to 5 in float32. :data:`MEMORY_OVERHEAD` (1.5) covers gradients of the largest
maps, cuDNN workspaces and the allocator; bf16 autocast only makes this a safer overestimate.
Weights, gradients and Adam's two moments add 16 bytes per parameter (about
``27.6 * 4 ** depth * base_width ** 2`` parameters, counted the same way).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ganseg.data.pairs import IGNORE
from ganseg.errors import ConfigError, DataError

FINGERPRINT_VERSION = 1

CONTEXT_DIAMETERS = 4  # a patch sees at least this many typical object diameters
BOTTLENECK_MIN_SIDE = 4  # px at the deepest level (nnU-Net: UNet_featuremap_min_edge_length)
CPU_MAX_PATCH = 256  # compute bound: a larger patch costs steps, rarely accuracy
CUDA_MAX_PATCH = 1024  # beyond this, context rarely helps and a bigger batch does
CPU_BATCH = 8
CUDA_MAX_BATCH = 64
MIN_BATCH = 2  # nnU-Net: UNet_min_batch_size
MAX_BATCH_DATA_SHARE = 0.05  # nnU-Net: max_dataset_covered
GPU_MEMORY_SHARE = 0.5  # of the device's memory for the segmenter's training step
ACTIVATION_BYTES = 50  # saved for backward, per pixel per base_width channel at level 0 (fp32)
MEMORY_OVERHEAD = 1.5
PARAM_BYTES = 16  # weight, gradient, Adam's two moments (fp32)
# Shrink the patch (down to the context floor) rather than train fewer steps: in minutes on a CPU
# the optimizer steps, not the patch side, limit a few-label run (DSB 2018, 66 images, 15 min:
# 522 steps of 256 px patches reached validation Dice 0.877, still rising; docs/training.md).
MIN_STEPS = 2000
MIN_VALIDATIONS, MAX_VALIDATIONS = 10, 25
MAX_VALIDATION_SHARE = 0.2  # of the time budget

PLAN_KEYS = ("patch_size", "batch_size", "steps", "val_interval")

StepTime = Callable[[int, int], float]  # (patch side, batch size) -> seconds


# --------------------------------------------------------------------------- fingerprint


@dataclass(frozen=True)
class ObjectStats:
    """Connected components (8-connected) of one foreground label over all images."""

    label: int
    count_per_image: tuple[int, ...]
    median_diameter: float | None  # px, equivalent diameter 2 * sqrt(area / pi); None: no objects
    p10_diameter: float | None
    p90_diameter: float | None

    @property
    def total(self) -> int:
        return sum(self.count_per_image)


@dataclass(frozen=True)
class DatasetFingerprint:
    """What the planner needs to know about a set of training pairs; JSON round trip."""

    num_images: int
    channels: int
    num_classes: int
    image_sizes: tuple[tuple[int, int], ...]  # (height, width) per image
    median_shape: tuple[int, int]  # per-axis median, as nnU-Net's median_image_size_in_voxels
    min_shape: tuple[int, int]
    max_shape: tuple[int, int]
    foreground_fraction: float  # mean over images of foreground / non-ignored pixels
    foreground_fraction_per_class: tuple[float, ...]  # labels 1..K-1 (binary: one entry)
    ignored_fraction: float  # IGNORE pixels / all pixels
    objects: tuple[ObjectStats, ...]  # one per foreground label

    @property
    def total_pixels(self) -> int:
        return sum(height * width for height, width in self.image_sizes)

    @property
    def typical_object_diameter(self) -> float | None:
        """The largest per-class median diameter: the class that needs the most context."""
        medians = [stats.median_diameter for stats in self.objects if stats.median_diameter is not None]
        return max(medians) if medians else None

    def to_dict(self) -> dict:
        return {"version": FINGERPRINT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, record: dict) -> DatasetFingerprint:
        """Raises KeyError, TypeError or ValueError on a record that is not a fingerprint."""
        if record.get("version") != FINGERPRINT_VERSION:
            raise ValueError(f"version {record.get('version')!r}, expected {FINGERPRINT_VERSION}")
        return cls(
            num_images=int(record["num_images"]),
            channels=int(record["channels"]),
            num_classes=int(record["num_classes"]),
            image_sizes=tuple(_pair(size) for size in record["image_sizes"]),
            median_shape=_pair(record["median_shape"]),
            min_shape=_pair(record["min_shape"]),
            max_shape=_pair(record["max_shape"]),
            foreground_fraction=float(record["foreground_fraction"]),
            foreground_fraction_per_class=tuple(float(v) for v in record["foreground_fraction_per_class"]),
            ignored_fraction=float(record["ignored_fraction"]),
            objects=tuple(
                ObjectStats(
                    label=int(stats["label"]),
                    count_per_image=tuple(int(n) for n in stats["count_per_image"]),
                    median_diameter=_optional_float(stats["median_diameter"]),
                    p10_diameter=_optional_float(stats["p10_diameter"]),
                    p90_diameter=_optional_float(stats["p90_diameter"]),
                )
                for stats in record["objects"]
            ),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> DatasetFingerprint:
        return cls.from_dict(json.loads(text))

    def write(self, path: Path) -> None:
        """Atomically: a killed prepare leaves the old file or none, never half of one."""
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(self.to_json())
        partial.replace(path)

    @classmethod
    def read(cls, path: Path) -> DatasetFingerprint:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: dataset fingerprint not found; run the prepare stage to write it")
        try:
            return cls.from_json(path.read_text())
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            IndexError,
        ) as error:
            raise DataError(
                f"{path}: not a readable dataset fingerprint ({type(error).__name__}: {error}); rerun prepare"
            ) from error


def _pair(values) -> tuple[int, int]:
    return int(values[0]), int(values[1])


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def _foreground_labels(num_classes: int) -> list[int]:
    return [1] if num_classes == 1 else list(range(1, num_classes))


def fingerprint(images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], num_classes: int) -> DatasetFingerprint:
    """Summarise uint8 ``(C, H, W)`` images and their ``(H, W)`` label maps (IGNORE = 255)."""
    if len(images) != len(masks) or not images:
        raise DataError(f"fingerprint needs matching, non-empty images and masks, got {len(images)} and {len(masks)}")
    channels = {int(image.shape[0]) for image in images}
    if len(channels) != 1:
        raise DataError(f"images have mixed channel counts {sorted(channels)}; prepare converts them to one")
    labels = _foreground_labels(num_classes)
    eight_connected = np.ones((3, 3), dtype=bool)

    sizes, fractions, ignored, total = [], [], 0, 0
    counts: dict[int, list[int]] = {label: [] for label in labels}
    diameters: dict[int, list[np.ndarray]] = {label: [] for label in labels}
    for image, mask in zip(images, masks):
        label_map = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if label_map.shape != tuple(image.shape[-2:]):
            raise DataError(f"mask of shape {label_map.shape} does not match image of shape {tuple(image.shape)}")
        sizes.append((int(label_map.shape[0]), int(label_map.shape[1])))
        # (K + 1,) pixel count per label value 0..K-1, and IGNORE in the last bin
        histogram = np.bincount(label_map.ravel(), minlength=256)
        valid = label_map.size - int(histogram[IGNORE])
        ignored += int(histogram[IGNORE])
        total += label_map.size
        fractions.append([histogram[label] / valid if valid else np.nan for label in labels])
        for label in labels:
            if histogram[label] == 0:
                counts[label].append(0)
                continue
            components, found = ndimage.label(label_map == label, structure=eight_connected)
            areas = np.bincount(components.ravel())[1:]  # (found,) pixels per component
            counts[label].append(int(found))
            diameters[label].append(2.0 * np.sqrt(areas / np.pi))

    shapes = np.array(sizes)  # (N, 2)
    per_image = np.array(fractions, dtype=np.float64)  # (N, classes), NaN where all ignored
    with np.errstate(invalid="ignore"):
        per_class = [float(np.nanmean(column)) if np.isfinite(column).any() else 0.0 for column in per_image.T]
        any_foreground = per_image.sum(axis=1)
    objects = []
    for label in labels:
        pooled = np.concatenate(diameters[label]) if diameters[label] else np.empty(0)
        quantiles = [float(q) for q in np.percentile(pooled, [50, 10, 90])] if pooled.size else [None] * 3
        objects.append(ObjectStats(label, tuple(counts[label]), *quantiles))
    return DatasetFingerprint(
        num_images=len(images),
        channels=channels.pop(),
        num_classes=num_classes,
        image_sizes=tuple(sizes),
        median_shape=(int(np.median(shapes[:, 0])), int(np.median(shapes[:, 1]))),
        min_shape=(int(shapes[:, 0].min()), int(shapes[:, 1].min())),
        max_shape=(int(shapes[:, 0].max()), int(shapes[:, 1].max())),
        foreground_fraction=float(np.nanmean(any_foreground)) if np.isfinite(any_foreground).any() else 0.0,
        foreground_fraction_per_class=tuple(per_class),
        ignored_fraction=ignored / total,
        objects=tuple(objects),
    )


# --------------------------------------------------------------------------- device


@dataclass(frozen=True)
class DeviceBudget:
    """What the planner may use: CPU cores, or the GPU's memory."""

    kind: str  # "cpu" or "cuda"; other devices (mps) are planned as a CPU
    cpu_cores: int
    gpu_memory_bytes: int = 0
    name: str = ""

    def describe(self) -> str:
        if self.kind == "cuda":
            return f"CUDA {self.name} {self.gpu_memory_bytes / 2**30:.0f} GiB".replace("  ", " ")
        return f"{self.name or 'CPU'} {self.cpu_cores} cores"


def describe_device(device: torch.device) -> DeviceBudget:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return DeviceBudget("cuda", cores, int(properties.total_memory), properties.name)
    return DeviceBudget("cpu", cores, 0, "CPU" if device.type == "cpu" else f"{device.type} (as CPU)")


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class SegmenterPlan:
    patch_size: int
    batch_size: int
    steps: int
    val_interval: int
    expected_minutes: float  # steps and validations at the given per-step and per-validation times
    val_share: float = 1.0  # of the validation pixels, scored at each validation during training
    reasons: dict[str, str] = field(default_factory=dict)  # key -> one line: why this value

    def as_params(self) -> dict[str, int | float | str]:
        """Flat, for MLflow params (values there are at most 500 characters)."""
        params: dict[str, int | float | str] = {key: getattr(self, key) for key in PLAN_KEYS}
        params["val_share"] = round(self.val_share, 4)
        params["expected_minutes"] = round(self.expected_minutes, 2)
        params.update({f"reason/{key}": line[:500] for key, line in self.reasons.items()})
        return params

    @classmethod
    def from_params(cls, params: dict) -> SegmenterPlan:
        """The inverse of :meth:`as_params` (a metrics file's ``plan``)."""
        return cls(**{key: params[key] for key in PLAN_KEYS}, expected_minutes=float(params["expected_minutes"]),
                   val_share=float(params.get("val_share", 1.0)),
                   reasons={key.removeprefix("reason/"): line for key, line in params.items()
                            if key.startswith("reason/")})

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        head = (
            f"plan: patch {self.patch_size}, batch {self.batch_size}, {self.steps} steps, "
            f"validation every {self.val_interval}"
            + (f" on {self.val_share:.0%} of the validation pixels" if self.val_share < 1 else "")
            + f" (~{self.expected_minutes:.1f} min)"
        )
        lines = [head]
        lines += [f"  {key}: {self.reasons[key]}" for key in (*PLAN_KEYS, "val_share") if key in self.reasons]
        return "\n".join(lines)


def estimate_training_bytes(patch: int, batch: int, depth: int, base_width: int) -> int:
    """Rough CUDA memory of one U-Net training step (see the module docstring)."""
    levels = 2 - 2.0**-depth  # sum over levels of (pixels / 4^l) * (width * 2^l), in level-0 units
    activations = ACTIVATION_BYTES * MEMORY_OVERHEAD * base_width * patch**2 * levels * batch
    parameters = PARAM_BYTES * 27.6 * 4**depth * base_width**2
    return int(activations + parameters)


def _round_up(value: float, multiple: int) -> int:
    return max(multiple, math.ceil(value / multiple) * multiple)


def _round_nearest(value: float, multiple: int) -> int:
    """Ties go down: the patch then fits inside the image rather than padding it."""
    return max(multiple, math.ceil(value / multiple - 0.5) * multiple)


def _as_timer(seconds: float | StepTime) -> StepTime:
    return seconds if callable(seconds) else (lambda patch, batch: float(seconds))


@dataclass(frozen=True)
class _Schedule:
    steps: int
    val_interval: int
    seconds: float
    reason_steps: str
    reason_interval: str


def _over(seconds: float, budget_s: float) -> str:
    return f"; ~{seconds / 60:.1f} min, over the {budget_s / 60:g} min budget" if seconds > budget_s else ""


def _schedule(
    budget_s: float, step_s: float, val_s: float, steps: int | None, interval: int | None, key: str
) -> _Schedule | None:
    """Steps and validation interval for one (patch, batch); None when the budget cannot hold
    one step and one validation (and neither count was set in params)."""
    rate = f"{step_s:.3g} s/step, {val_s:.3g} s/validation"
    if steps is not None and interval is not None:
        seconds = steps * step_s + max(1, steps // interval) * val_s
        return _Schedule(steps, interval, seconds, f"set in params ({rate}){_over(seconds, budget_s)}", "set in params")
    if steps is not None:  # validations: at most a fifth of the time, 1..25
        train_s = steps * step_s
        share = MAX_VALIDATION_SHARE / (1 - MAX_VALIDATION_SHARE) * train_s
        validations = min(steps, MAX_VALIDATIONS, max(1, int(share // val_s) if val_s > 0 else MAX_VALIDATIONS))
        interval = max(1, steps // validations)
        seconds = train_s + (steps // interval) * val_s
        return _Schedule(
            steps,
            interval,
            seconds,
            f"set in params ({rate}){_over(seconds, budget_s)}",
            f"{steps // interval} validations of {val_s:.3g} s, <= 20% of the training time",
        )
    if interval is not None:
        validations = int(budget_s // (interval * step_s + val_s))
        if validations < 1:
            return None
        steps = validations * interval
        return _Schedule(
            steps,
            interval,
            steps * step_s + validations * val_s,
            f"{validations} x val_interval {interval} fit {budget_s / 60:g} min at {rate}",
            "set in params",
        )
    if budget_s < step_s + val_s:
        return None
    # (a hair of slack: a validation share planned to fit exactly 10 must not round to 9)
    most = int(MAX_VALIDATION_SHARE * budget_s / val_s + 1e-9) if val_s > 0 else MAX_VALIDATIONS
    validations = min(MAX_VALIDATIONS, max(1, most), int(budget_s // (step_s + val_s)))
    interval = int((budget_s - validations * val_s) / step_s) // validations
    steps = interval * validations
    why_count = (
        f"{validations} validations ({MIN_VALIDATIONS}-{MAX_VALIDATIONS} wanted, "
        f"<= {MAX_VALIDATION_SHARE:.0%} of {budget_s / 60:g} min at {val_s:.3g} s each)"
    )
    return _Schedule(
        steps,
        interval,
        steps * step_s + validations * val_s,
        f"{budget_s / 60:g} min budget - {validations} validations, at {rate}; a multiple of {key}.val_interval",
        why_count,
    )


def plan_segmenter(
    fp: DatasetFingerprint,
    device: DeviceBudget,
    *,
    depth: int,
    base_width: int,
    budget_minutes: float,
    seconds_per_step: StepTime,
    seconds_per_validation: float | StepTime,
    explicit: dict[str, int | None],
    key: str = "train",
    val_share: float | None = None,
    min_val_share: float = 1.0,
) -> SegmenterPlan:
    """Patch, batch, steps and validation interval; ``explicit`` values (not None) are kept.

    ``seconds_per_step(patch, batch)`` and ``seconds_per_validation`` (seconds for the whole
    validation split, or a function of patch and batch) are measured on the device by the
    caller; ``key`` is the params block that ConfigError messages name
    (``train.time_budget_minutes``). ``val_share``: the share of the validation pixels each
    validation scores, None = planned (:func:`planned_val_share`, never below
    ``min_val_share``: the share of the smallest subset the caller would score; 1 = always all).
    """
    unknown = set(explicit) - set(PLAN_KEYS)
    if unknown:
        raise ValueError(f"explicit: unknown keys {sorted(unknown)}; expected some of {PLAN_KEYS}")
    for name, value in explicit.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key}.{name}: {value!r} must be a positive integer or 'auto'")
    if not budget_minutes > 0:
        raise ConfigError(f"{key}.time_budget_minutes: {budget_minutes!r} must be a positive number of minutes")
    set_patch, set_batch, set_steps, set_interval = (explicit.get(name) for name in PLAN_KEYS)
    multiple = 2**depth
    if set_patch is not None and set_patch % multiple:
        raise ConfigError(
            f"{key}.patch_size: {set_patch} is not a multiple of 2**depth = {multiple}; "
            f"try {_round_nearest(set_patch, multiple)}"
        )
    validation_time = _as_timer(seconds_per_validation)
    budget_s = budget_minutes * 60.0

    # Patch side candidates, largest first: from the median image down to the context floor.
    short_side = min(fp.median_shape)
    cover = _round_nearest(short_side, multiple)
    diameter = fp.typical_object_diameter
    context = _round_up(CONTEXT_DIAMETERS * diameter, multiple) if diameter else multiple
    floor = min(cover, max(context, BOTTLENECK_MIN_SIDE * multiple))
    cap = (CUDA_MAX_PATCH if device.kind == "cuda" else CPU_MAX_PATCH) // multiple * multiple or multiple
    top = min(cover, max(floor, cap))
    memory = GPU_MEMORY_SHARE * device.gpu_memory_bytes

    def batch_for(patch: int) -> tuple[int, str]:
        if set_batch is not None:
            return set_batch, "set in params"
        if device.kind == "cuda":
            per_sample = estimate_training_bytes(patch, 1, depth, base_width) - estimate_training_bytes(
                patch, 0, depth, base_width
            )
            fits = int((memory - estimate_training_bytes(patch, 0, depth, base_width)) // per_sample)
            batch = min(CUDA_MAX_BATCH, max(MIN_BATCH, fits))
            clamp = f", capped at {CUDA_MAX_BATCH}" if fits > CUDA_MAX_BATCH else ""
            clamp = f", raised to {MIN_BATCH}" if fits < MIN_BATCH else clamp
            why = (
                f"{fits} samples of ~{per_sample / 2**20:.0f} MiB (estimate) fit {GPU_MEMORY_SHARE:.0%} of "
                f"{device.gpu_memory_bytes / 2**30:.0f} GiB{clamp}"
            )
        else:
            batch, why = CPU_BATCH, f"CPU default {CPU_BATCH}"
        data_cap = max(MIN_BATCH, round(MAX_BATCH_DATA_SHARE * fp.total_pixels / patch**2))
        if data_cap < batch:
            batch, why = (
                data_cap,
                (
                    f"{why}; one batch at most {MAX_BATCH_DATA_SHARE:.0%} of the "
                    f"{fp.total_pixels / 1e6:.2f} Mpx data set (nnU-Net), at least {MIN_BATCH}"
                ),
            )
        return batch, why

    needed = set_batch or MIN_BATCH  # nnU-Net: shrink the patch until batch 2 fits the memory

    def fits_memory(patch: int) -> bool:
        return device.kind != "cuda" or estimate_training_bytes(patch, needed, depth, base_width) <= memory

    candidates = [set_patch] if set_patch is not None else list(range(top, floor - 1, -multiple))
    chosen, shrunk_for = None, {}  # why the patch went below the top candidate, in order
    for patch in candidates:
        batch, batch_why = batch_for(patch)
        if patch != candidates[-1] and not fits_memory(patch):
            shrunk_for["memory"] = f"shrunk until batch {needed} fits {GPU_MEMORY_SHARE:.0%} of the GPU memory"
            continue
        full_val_s = validation_time(patch, batch)
        share, share_why = _val_share(val_share, min_val_share, budget_s, full_val_s,
                                      planned=set_steps is None and set_interval is None)
        plan = _schedule(budget_s, seconds_per_step(patch, batch), share * full_val_s, set_steps, set_interval, key)
        if plan is not None:
            chosen = (patch, batch, batch_why, plan, share, share_why)
            if set_patch is not None or (plan.steps >= MIN_STEPS if set_steps is None else plan.seconds <= budget_s):
                break
        if patch != candidates[-1]:
            shrunk_for["time"] = (
                f"shrunk to reach {MIN_STEPS} steps in {budget_minutes:g} min"
                if set_steps is None
                else f"shrunk to fit {key}.steps in {budget_minutes:g} min"
            )
    if chosen is None:  # not even the smallest patch gets one step and one validation
        patch = candidates[-1]
        batch, _ = batch_for(patch)
        step_s, val_s = seconds_per_step(patch, batch), validation_time(patch, batch)
        steps_part = (
            f"{key}.val_interval = {set_interval} steps ({set_interval * step_s:.3g} s)"
            if set_interval is not None
            else f"one step ({step_s:.3g} s)"
        )
        raise ConfigError(
            f"{key}.time_budget_minutes: {budget_minutes:g} min is less than one validation ({val_s:.3g} s) "
            f"+ {steps_part} at patch {patch}, batch {batch}"
        )
    patch, batch, batch_why, schedule, share, share_why = chosen

    if set_patch is not None:
        patch_why = "set in params"
    else:
        shape = f"median image {fp.median_shape[0]}x{fp.median_shape[1]} -> {cover}"
        objects = (
            f"{CONTEXT_DIAMETERS}x median object diameter {diameter:.0f} px -> floor {floor}"
            if diameter
            else f"no foreground objects -> floor {floor}"
        )
        capped = f", {device.kind.upper()} cap {cap}" if top < cover else ""
        shrunk = "".join(f", {why}" for why in shrunk_for.values()) if patch < top else ""
        patch_why = f"{shape}, {objects}{capped}{shrunk}; a multiple of 2**depth = {multiple}"
    return SegmenterPlan(
        patch_size=patch,
        batch_size=batch,
        steps=schedule.steps,
        val_interval=schedule.val_interval,
        expected_minutes=schedule.seconds / 60.0,
        val_share=share,
        reasons={
            "patch_size": patch_why,
            "batch_size": batch_why,
            "steps": schedule.reason_steps,
            "val_interval": schedule.reason_interval,
            "val_share": share_why,
        },
    )


def planned_val_share(budget_s: float, full_val_s: float, floor: float = 0.0) -> float:
    """The share of the validation pixels that lets :data:`MIN_VALIDATIONS` validations fit
    :data:`MAX_VALIDATION_SHARE` of the budget: 1 when the whole split does, else less, never
    below ``floor``."""
    if full_val_s <= 0:
        return 1.0
    wanted = MAX_VALIDATION_SHARE * budget_s / (MIN_VALIDATIONS * full_val_s)
    return 1.0 if wanted >= 1 else min(1.0, max(floor, wanted))


def _val_share(explicit: float | None, floor: float, budget_s: float, full_val_s: float,
               planned: bool) -> tuple[float, str]:
    if explicit is not None:
        return explicit, "set in params"
    if not planned:  # steps or val_interval set: the user chose the validations; score them whole
        return 1.0, "all (steps or val_interval set in params)"
    share = planned_val_share(budget_s, full_val_s, floor)
    if share >= 1:
        return 1.0, f"all ({full_val_s:.3g} s per validation fits {MIN_VALIDATIONS} in {MAX_VALIDATION_SHARE:.0%})"
    return share, (f"{share:.0%} of the validation pixels (a fixed seeded subset): the whole split takes "
                   f"{full_val_s:.3g} s, too long for {MIN_VALIDATIONS} validations in {MAX_VALIDATION_SHARE:.0%} "
                   f"of {budget_s / 60:g} min" + (f"; floor {floor:.0%}" if share <= floor else ""))
