"""What the two stages that train a segmenter (train, finetune) share: their output files and
how a trained U-Net is published (model file, config, history, reports, metrics, MLflow, registry).

Not a stage: no DVC stage runs this module's command; both stage modules import it, as they
import :mod:`pipelines.stage`, so neither imports the other.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from PIL import Image

from ganseg import io
from ganseg.data.pairs import FINGERPRINT, PairTensors
from ganseg.data.provenance import RECORD_KEY, TRAINED_ON_TAG
from ganseg.errors import DataError
from ganseg.inference import segment_each
from ganseg.models.model_file import UNET_MODEL_NAME, bare_module
from ganseg.planning import DatasetFingerprint, SegmenterPlan, describe_device, plan_segmenter
from ganseg.training import distributed
from ganseg.training.checkpoint import CheckpointManager
from ganseg.training.history import HistoryWriter, plot_history
from ganseg.training.speed import (
    StepRate,
    measure_sample_seconds,
    measure_step_rate,
    measure_validation_seconds_per_pixel,
)
from ganseg.training.validation import overlay_grid, predict_logits, subset_pixel_share, validation_subset

ModelsOption = Annotated[Path, typer.Option(help="Folder for unet_<variant>.pt/.json.")]
MetricsOption = Annotated[Path | None, typer.Option(help="Default: metrics/<run>.json.")]
PlotsOption = Annotated[Path | None, typer.Option(help="Default: plots/<run>.csv.")]
ReportsOption = Annotated[Path | None, typer.Option(help="Default: reports/<run>.")]
CheckpointsOption = Annotated[Path | None, typer.Option(help="Default: checkpoints/<run>.")]


@dataclass(frozen=True)
class OutputPaths:
    """Where one segmenter run writes (``run`` names it: ``train_real``, ``finetune``)."""

    models: Path
    metrics: Path
    plots: Path
    reports: Path
    checkpoints: Path

    @classmethod
    def of_run(cls, run: str, models: Path, metrics: Path | None = None, plots: Path | None = None,
               reports: Path | None = None, checkpoints: Path | None = None) -> OutputPaths:
        return cls(models=Path(models), metrics=metrics or Path(f"metrics/{run}.json"),
                   plots=plots or Path(f"plots/{run}.csv"), reports=reports or Path(f"reports/{run}"),
                   checkpoints=checkpoints or Path(f"checkpoints/{run}"))

    def model_file(self, variant: str) -> Path:
        return self.models / f"unet_{variant}.pt"


def publish_segmenter(
    ctx,
    *,
    variant: str,
    paths: OutputPaths,
    unet: torch.nn.Module,
    model_file: dict,
    config: dict[str, Any],
    trained_on: dict,
    summary: dict,
    history: list[dict],
    val: PairTensors,
    overlay_images: int,
    device: torch.device,
    dtype: torch.dtype,
    metrics: dict[str, float],
    tags: dict[str, Any],
    manager: CheckpointManager,
    tile: int,
) -> str | None:
    """Write every output of a finished run, log it, register the model; returns its version.

    ``unet`` holds the weights of ``model_file`` (the published model); ``config`` is the JSON
    written beside it, to which the training-image record is added; ``tile`` is the side it
    was trained at (the sliding window's tile for the overlays).
    """
    model_path, config_path = paths.model_file(variant), paths.model_file(variant).with_suffix(".json")
    io.write_json(config_path, {**config, RECORD_KEY: trained_on})
    io.torch_save(model_file, model_path)
    HistoryWriter(paths.plots).write(history)
    with io.staged_dir(paths.reports) as staged:
        shown = min(overlay_images, len(val))
        if shown:
            network = bare_module(unet).eval()
            probabilities = segment_each(network, val.images[:shown], tile=tile, num_classes=network_classes(config),
                                         device=device, dtype=dtype)
            labels = [probs_to_labels(probs) for probs in probabilities]
            grid = overlay_grid(val.images[:shown], val.masks[:shown], labels)
            Image.fromarray(grid).save(staged / "val_overlays.png")
        plot_history(history, staged / "curves.png", title=f"{ctx.name} {variant}")
    io.write_json(paths.metrics, summary)

    tracker = ctx.tracker
    tracker.log_dict(summary, f"{paths.metrics.stem}.json")
    tracker.log_dict(trained_on, "trained_on.json")
    tracker.log_metrics(metrics)
    tracker.log_artifact(paths.reports, "reports")
    tracker.log_artifact(paths.plots, "history")
    cpu_unet = bare_module(unet).to("cpu").eval()
    example = val.images[0][None, :, :tile, :tile]  # a patch, not a whole (possibly huge) image
    version = tracker.log_model(
        cpu_unet,
        registered_name=UNET_MODEL_NAME,
        weights_file=model_path,
        config_file=config_path,
        input_example=example.float().div(255.0).numpy(),
        output_example=predict_logits(cpu_unet, example, device=torch.device("cpu")).numpy(),
        tags={"variant": variant, TRAINED_ON_TAG: trained_on["digest"], **tags},
    )
    manager.clear()
    return version


# -- the plan -------------------------------------------------------------------------------
PLANNED = ("patch_size", "batch_size", "steps", "val_interval")
PLAN_FILE = "plan.json"
RATE_PATCH = 128  # the shape the step rate is measured at, scaled to others by pixel count
MEASUREMENTS = 3  # step-rate measurements at most: the first shape, then the shapes it led to
RATE_BATCH = 8


def read_plan_of(path: Path) -> SegmenterPlan:
    """The plan another run trained (its metrics file, ``metrics/train_real.json``), so that a
    variant compared with it trains the same patch, batch, steps and validations: two plans
    measured one after the other differ by the step probe's noise (1350 against 1650 steps on
    the default data), and the comparison would then mix data with training length."""
    try:
        record = json.loads(Path(path).read_text())
        return SegmenterPlan.from_params(record["plan"])
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (--plan-of: the metrics file of the run whose plan to train)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a train metrics file with a 'plan' (--plan-of): {exc!r}") from None


def training_plan(block: str, cfg, *, data: Path, model: torch.nn.Module, criterion, make_optimizer, val: PairTensors,
                  sample_dataset: Callable[[int], Any], validate: Callable[[Sequence[int], int], object],
                  manager: CheckpointManager, depth: int, common, device: torch.device, dtype: torch.dtype,
                  memory_format: torch.memory_format, say, label: str,
                  inherited: tuple[Path, SegmenterPlan] | None = None) -> SegmenterPlan:
    """Patch, batch, steps and validation interval of a run: the values set in params, the
    ``auto`` ones planned (:func:`ganseg.planning.plan_segmenter`) from prepare's data
    fingerprint, this device and a step rate measured on it (``validate(indices, tile)``, the
    stage's validation of those validation images, prices a validation). ``inherited`` (the
    file and the plan of :func:`read_plan_of`) is trained as it is, nothing measured. A
    resumed run keeps the plan its checkpoint was trained with (a re-measured rate would
    change the step count mid-run)."""
    explicit = {key: getattr(cfg, key) for key in PLANNED if getattr(cfg, key) != "auto"}
    saved = manager.folder / PLAN_FILE
    if cfg.resume and manager.last_path.is_file() and saved.is_file():
        record = json.loads(saved.read_text())
        if record.get("fingerprint") == manager.fingerprint:
            plan = SegmenterPlan(**record["plan"])
            say(f"{label}: the plan of the checkpoint being resumed\n{plan.describe()}")
            return plan
    if inherited is not None:
        source, plan = inherited
        plan = dataclasses.replace(plan, reasons={key: f"as in {source} (--plan-of): {line}"
                                                  for key, line in plan.reasons.items()})
        say(f"{label}: the plan of {source}, trained as it is (--plan-of)\n{plan.describe()}")
        io.write_json(saved, {"fingerprint": manager.fingerprint, "plan": plan.as_dict()})
        return plan
    epochs_mode = cfg.steps is None  # steps null: epochs of the loader, validated once per epoch
    if epochs_mode:
        explicit.update(steps=1, val_interval=1)  # placeholders: only patch and batch are planned
    set_share = None if cfg.val_share == "auto" else cfg.val_share
    if set(PLANNED) <= set(explicit):
        plan = SegmenterPlan(**explicit, expected_minutes=0.0, val_share=set_share or 1.0,
                             reasons=dict.fromkeys(PLANNED, "set in params"))
        return _epochs_plan(plan, cfg) if epochs_mode else plan
    fingerprint = DatasetFingerprint.read(Path(data) / FINGERPRINT)
    budget = describe_device(device)

    def measure(patch: int, batch: int) -> StepRate:
        rate = measure_step_rate(model, criterion, make_optimizer, channels=common.channels,
                                 num_classes=common.num_classes, patch=patch, batch=batch, device=device, dtype=dtype,
                                 memory_format=memory_format)
        rate = dataclasses.replace(
            rate, sample_seconds=measure_sample_seconds(sample_dataset(patch)),
            validation_seconds_per_pixel=measure_validation_seconds_per_pixel(validate, val.sizes, patch, device))
        say(f"{label}: measured {rate.step_seconds:.3f} s per network step of {batch} x {patch} px patches on "
            f"{device}, {rate.sample_seconds * 1000:.1f} ms to cut and augment one, "
            f"{rate.seconds_to_validate(val.sizes, patch):.1f} s per validation")
        return rate

    # The pixel share of the smallest validation subset the stage would score (its 10 images).
    smallest_share = subset_pixel_share(val.sizes, validation_subset(val.sizes, 0.0, common.seed))

    def plan_with(rate: StepRate | None, fixed: dict) -> SegmenterPlan:
        return plan_segmenter(
            fingerprint, budget, depth=depth, base_width=cfg.model.base_width, budget_minutes=cfg.time_budget_minutes,
            seconds_per_step=rate.seconds_per_step if rate else (lambda patch, batch: 0.0),
            seconds_per_validation=(lambda patch, batch: rate.seconds_to_validate(val.sizes, patch))
            if rate else 0.0,
            explicit=fixed, key=block, val_share=set_share, min_val_share=smallest_share,
        )

    if "steps" in explicit:  # nothing to time: the length is set
        plan = plan_with(None, explicit)
    else:
        # A first rate at a small shape picks patch and batch. The rate does not scale exactly with
        # pixels (caches, per-tile overheads, the loader's costlier transforms), so the shape is
        # measured and planned again from its own rate until the plan keeps the shape it was
        # measured at (at most MEASUREMENTS rounds); the steps always come from the rate of the
        # shape trained.
        rate = measure(min(RATE_PATCH, explicit.get("patch_size", RATE_PATCH)), explicit.get("batch_size", RATE_BATCH))
        plan = plan_with(rate, explicit)
        for _ in range(MEASUREMENTS - 1):
            if (plan.patch_size, plan.batch_size) == (rate.patch, rate.batch):
                break
            chosen, rate = plan, measure(plan.patch_size, plan.batch_size)
            plan = plan_with(rate, explicit)
        if (plan.patch_size, plan.batch_size) != (rate.patch, rate.batch):  # no agreement: train what was measured last
            plan = plan_with(rate, {**explicit, "patch_size": rate.patch, "batch_size": rate.batch})
            plan = dataclasses.replace(plan, reasons={**plan.reasons, "patch_size": chosen.reasons["patch_size"],
                                                      "batch_size": chosen.reasons["batch_size"]})
    if epochs_mode:
        plan = _epochs_plan(plan, cfg)
    # Each process measured its own rates; all of them train rank 0's plan, or their step counts
    # (and the collective calls of the loop) could differ.
    plan = distributed.gather_objects(plan)[0]
    say(f"{label}: {plan.describe()}")
    io.write_json(saved, {"fingerprint": manager.fingerprint, "plan": plan.as_dict()})
    return plan


def _epochs_plan(plan: SegmenterPlan, cfg) -> SegmenterPlan:
    """A plan whose length is cfg.epochs passes (steps null), validated as val_interval says."""
    return dataclasses.replace(plan, steps=None, val_interval=cfg.val_interval,
                               reasons={**plan.reasons, "steps": "null: epochs x batches per epoch",
                                        "val_interval": "set in params" if cfg.val_interval else "one epoch"})


def network_classes(config: dict[str, Any]) -> int:
    return int(config["unet"]["num_classes"])


def probs_to_labels(probs: torch.Tensor) -> torch.Tensor:
    """(K, H, W) probabilities -> (H, W) uint8 labels, as validation scores them."""
    return (probs[0] > 0.5).to(torch.uint8) if probs.shape[0] == 1 else probs.argmax(dim=0).to(torch.uint8)


def registered_note(version: str | None) -> str:
    return f"; registered {UNET_MODEL_NAME} v{version}" if version else ""
