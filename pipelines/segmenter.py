"""What the two stages that train a segmenter (train, finetune) share: their output files and
how a trained U-Net is published (model file, config, history, reports, metrics, MLflow, registry).

Not a stage: no DVC stage runs this module's command; both stage modules import it, as they
import :mod:`pipelines.stage`, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from PIL import Image

from ganseg import io
from ganseg.data.pairs import PairTensors
from ganseg.data.provenance import RECORD_KEY, TRAINED_ON_TAG
from ganseg.models.model_file import UNET_MODEL_NAME, bare_module
from ganseg.training.checkpoint import CheckpointManager
from ganseg.training.dice import logits_to_labels
from ganseg.training.history import HistoryWriter, plot_history
from ganseg.training.validation import overlay_grid, predict_logits

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
) -> str | None:
    """Write every output of a finished run, log it, register the model; returns its version.

    ``unet`` holds the weights of ``model_file`` (the published model); ``config`` is the JSON
    written beside it, to which the training-image record is added.
    """
    model_path, config_path = paths.model_file(variant), paths.model_file(variant).with_suffix(".json")
    io.write_json(config_path, {**config, RECORD_KEY: trained_on})
    io.torch_save(model_file, model_path)
    HistoryWriter(paths.plots).write(history)
    with io.staged_dir(paths.reports) as staged:
        shown = min(overlay_images, len(val))
        if shown:
            logits = predict_logits(unet, val.images[:shown], device=device, dtype=dtype)
            grid = overlay_grid(val.images[:shown], val.masks[:shown], logits_to_labels(logits))
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
    example = val.images[:1]
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


def registered_note(version: str | None) -> str:
    return f"; registered {UNET_MODEL_NAME} v{version}" if version else ""
