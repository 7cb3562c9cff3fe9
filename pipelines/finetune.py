"""Stage ``finetune``: sharpen a trained U-Net as the generator of a segmentation GAN.

Reads the ``common`` and ``finetune`` blocks. Starts from ``--start`` (default
``models/unet_synthetic.pt``, the real + synthetic variant), scores it on the validation pairs,
then trains it against a discriminator of (image, mask) pairs (docs/finetune.md), with the
train stage's epoch loop, checkpoints, history, plots and progress. Never worse than the start:
the best epoch is kept only if it beats the starting validation Dice; otherwise the stage
writes the starting weights and says so (``kept_start`` in the metrics).

Writes (each file atomically; ``<name>`` = ``finetune``, or ``finetune_<variant>`` for
another ``--variant``):
- ``models/unet_<variant>.pt`` (default ``unet_adversarial.pt``): the model file, same format
  as train's, and ``models/unet_<variant>.json``: the resolved config;
- ``metrics/<name>.json``: validation Dice before and after, and the facts of the run;
- ``plots/<name>.csv``: one row per epoch, epoch 0 = the starting model (DVC plots);
- ``reports/<name>/``: validation overlay grid and curves (PNG);
- ``checkpoints/<name>/``: the resumable checkpoint (not a DVC output), removed at the end.

MLflow: params, per-epoch ``train/*``, ``gan/*``, ``semi/*`` and ``val/*`` metrics, the
reports, and the model registered as a new version of ``ganseg-unet`` tagged
``variant=<variant>``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from ganseg import io
from ganseg.config.common import CommonConfig
from ganseg.config.finetune import FinetuneConfig, UnlabeledConfig
from ganseg.data.pairs import PairTensors, load_images, load_split, pairs_digest
from ganseg.data.patches import PatchPlan
from ganseg.data.provenance import RECORD_KEY, training_record
from ganseg.errors import ConfigError, DataError
from ganseg.finetune.discriminator import build_discriminator
from ganseg.finetune.losses import SegmentationTask, SemiSupervisedLoss
from ganseg.finetune.step import AdversarialStep, UnlabeledBatches
from ganseg.gan.build import build_gan_objective, build_stabilisers
from ganseg.gan.data import mask_channels
from ganseg.gan.losses import GanLoss
from ganseg.models import build_unet
from ganseg.models.model_file import best_epoch_saver, read_model_config, read_model_file, unet_config_from_dict
from ganseg.runtime import seed_everything, select_device, select_precision
from ganseg.training import distributed
from ganseg.training.checkpoint import CheckpointManager, TrainState, config_fingerprint
from ganseg.training.data import EpochSampler, PairDataset, build_augmentation, seeded_loader
from ganseg.training.early_stopping import EarlyStopping
from ganseg.training.hardware import configure_backends, memory_format_for
from ganseg.training.history import HistoryWriter
from ganseg.training.loop import fit, plan_steps, resume
from ganseg.training.losses import SegmentationLoss
from ganseg.training.optim import build_optimizer, build_scheduler
from ganseg.training.validation import evaluate_dice
from pipelines import segmenter
from pipelines.stage import DebugOption, ParamsOption, ProgressOption, run_stage

app = typer.Typer(help="Fine-tune a trained U-Net adversarially (optionally with unlabeled images).")

# Keys of this stage that do not change what is trained: a checkpoint stays resumable across
# them (with the common ones of ganseg.training.checkpoint.NOT_FINGERPRINTED).
NOT_FINGERPRINTED = {"finetune": {"resume", "num_workers", "overlay_images", "val_batch_size", "channels_last"}}


@app.callback(invoke_without_command=True)
def finetune(
    params: ParamsOption = Path("params.yaml"),
    start: Annotated[Path, typer.Option(help="Model file to start from (a train stage output).")] = Path(
        "models/unet_synthetic.pt"),
    data: Annotated[Path, typer.Option(help="Prepared folder with train/ and val/ pair folders.")] = Path("data/prepared"),
    unlabeled: Annotated[Path | None, typer.Option(
        help="Folder of unlabeled images (prepare's layout); default: <data>/unlabeled.")] = None,
    variant: Annotated[str, typer.Option(help="Names the model file and its registry tag.")] = "adversarial",
    models: segmenter.ModelsOption = Path("models"),
    metrics: segmenter.MetricsOption = None,
    plots: segmenter.PlotsOption = None,
    reports: segmenter.ReportsOption = None,
    checkpoints: segmenter.CheckpointsOption = None,
    progress: ProgressOption = None,
    debug: DebugOption = False,
) -> None:
    """Fine-tune ``--start`` adversarially; resume its checkpoint when ``finetune.resume`` is true."""
    if not variant.replace("_", "").isalnum() or not variant.isascii() or variant.lower() != variant:
        typer.echo(f"error: --variant {variant!r}: use lower-case letters, digits or '_'", err=True)
        raise typer.Exit(2)
    name = "finetune" if variant == "adversarial" else f"finetune_{variant}"
    paths = {"start": start, "data": data, "unlabeled": unlabeled or data / "unlabeled"}
    outputs = segmenter.OutputPaths.of_run(name, models, metrics, plots, reports, checkpoints)
    with run_stage("finetune", params, debug, run_name=name) as ctx:
        if distributed.env_dist_info().enabled:
            raise ConfigError("finetune runs in one process; start it without torchrun")
        ctx.tracker.set_tags({"ganseg.variant": variant})
        _finetune(ctx, ctx.params.common, ctx.params.finetune, variant, paths, outputs, progress)


def _finetune(ctx, common: CommonConfig, cfg: FinetuneConfig, variant: str, paths: dict[str, Path],
              outputs: segmenter.OutputPaths, progress: bool | None) -> None:
    started = time.perf_counter()
    device = select_device(common.device)
    dtype = select_precision(common.precision, device)
    deterministic = device.type == "cpu"
    seed_everything(common.seed, deterministic=deterministic)
    configure_backends(device, cudnn_benchmark=True, deterministic=deterministic)
    memory_format = memory_format_for(cfg.channels_last, device)
    say = lambda text: print(text, file=sys.stderr)
    label = f"finetune[{variant}]"

    # -- data: decoded once, kept as uint8 tensors ------------------------------------------
    train_pairs = load_split(paths["data"] / "train", common.channels, common.num_classes)
    val = load_split(paths["data"] / "val", common.channels, common.num_classes)
    start_file = read_model_file(paths["start"])
    patch = finetune_patch(cfg, start_file, paths["start"])
    cfg.check_against(patch)
    labeled, hidden = split_labeled(train_pairs, cfg.unlabeled.labeled_fraction, common.seed)
    pool, pool_source = (
        unlabeled_pool(cfg.unlabeled, paths["unlabeled"], train_pairs, hidden, common)
        if cfg.unlabeled.enabled else (None, "off")
    )
    # Which real images shape this model, with those its start model learned from.
    trained_on = training_record(
        {"train": paths["data"] / "train", "val": paths["data"] / "val",
         **({"unlabeled": paths["unlabeled"]} if pool is not None and pool_source.startswith(str(paths["unlabeled"]))
            else {})},
        inherited=(read_model_config(paths["start"]) or {}).get(RECORD_KEY),
    )
    sampler = EpochSampler(num_real=len(labeled), seed=common.seed)
    loader = seeded_loader(
        PairDataset(labeled.images, labeled.masks, build_augmentation(cfg.augmentation),
                    PatchPlan.for_masks(labeled.masks, patch, cfg.foreground_share, seed=common.seed)),
        sampler, batch_size=cfg.batch_size, num_workers=cfg.num_workers, device=device, seed=common.seed,
    )

    # -- networks: the starting U-Net and a fresh discriminator ------------------------------
    unet_config = unet_config_from_dict(start_file["config"])
    check_start_model(paths["start"], unet_config, common)
    unet = build_unet(unet_config)
    unet.load_state_dict(start_file["state_dict"])
    unet = unet.to(device, memory_format=memory_format)
    discriminator = build_discriminator(common.channels + mask_channels(common.num_classes),
                                        cfg.discriminator, cfg.objective).to(device, memory_format=memory_format)

    # -- losses and optimisation ------------------------------------------------------------
    criterion = SegmentationLoss(cfg.loss)
    plan = plan_steps(len(loader), cfg.epochs, cfg.steps, cfg.val_interval, "finetune")
    stabilisers = build_stabilisers(cfg.objective, total_steps=max(plan.steps, 1))
    gan_loss = GanLoss(
        SegmentationTask(criterion, common.num_classes, cfg.seg_weight),
        build_gan_objective(cfg.objective),
        penalties=stabilisers.penalties,
        instance_noise=stabilisers.instance_noise,
        pool=stabilisers.pool,
        device=device,
        dtype=dtype,
        adversarial_weight=cfg.adv_weight,
        augment=stabilisers.augment,
    )
    g_optimizer = build_optimizer(unet.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas_d))
    scheduler = build_scheduler(g_optimizer, cfg.scheduler, plan.steps, cfg.plateau.patience,
                                cfg.plateau.factor)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    early_stopping = EarlyStopping(cfg.early_stopping.patience, cfg.early_stopping.min_delta)
    state = TrainState(
        modules={"unet": unet, "discriminator": discriminator},
        optimizers={"unet": g_optimizer, "discriminator": d_optimizer},
        schedulers={"unet": scheduler} if scheduler is not None else {},
        scalers={"gan": scaler},
        early_stopping=early_stopping,
        extras={"gan_loss": gan_loss},
    )
    semi = unlabeled_batches = None
    if pool is not None:
        semi = SemiSupervisedLoss(gan_loss, cfg.unlabeled.adv_weight, cfg.unlabeled.self_training_weight,
                                  cfg.unlabeled.confidence_threshold)
        unlabeled_batches = UnlabeledBatches(pool, cfg.unlabeled.batch_size or cfg.batch_size, common.seed, patch)
    step = AdversarialStep(
        unet, discriminator, gan_loss, g_optimizer, d_optimizer,
        scaler=scaler,
        grad_clip=cfg.grad_clip,
        g_interval=cfg.objective.d_steps_per_g,
        constraints=stabilisers.constraints,
        semi=semi,
        unlabeled=unlabeled_batches,
        semi_start_step=cfg.unlabeled.warmup_steps,
        memory_format=memory_format,
    )

    def validate() -> dict[str, float]:
        return evaluate_dice(unet, val.images, val.masks, num_classes=common.num_classes, device=device,
                             dtype=dtype, batch_size=cfg.val_batch_size, tile=patch, criterion=criterion,
                             memory_format=memory_format)

    # -- resume, or score the starting model: the bar fine-tuning has to beat ---------------
    resolved = ctx.resolved_config()
    manager = CheckpointManager(
        outputs.checkpoints,
        config_fingerprint(resolved, variant, io.file_sha256(paths["start"])[:16], pairs_digest(labeled, val, pool),
                           ignore=NOT_FINGERPRINTED),
        config=resolved,
    )
    found = manager.load() if cfg.resume else None
    if found is not None:
        say(f"{label}: {found.reason}")
    if found is not None and found.checkpoint is not None:
        resume(state, found.checkpoint)
    else:
        start_scores = validate()
        state.best_metric, state.best_epoch = start_scores["val/dice"], 0
        early_stopping.best = start_scores["val/dice"]
        state.history = [{"epoch": 0, **start_scores}]
    start_scores = {k: v for k, v in state.history[0].items() if k.startswith("val/")}

    history = HistoryWriter(outputs.plots)
    log = ctx.tracker.step_log()  # one MLflow batch per epoch
    semi_text = f", {len(pool)} unlabeled ({pool_source})" if pool is not None else ""
    say(f"{label}: {len(labeled)} labelled pairs per epoch{semi_text}, {len(val)} val; discriminator "
        f"{cfg.discriminator.kind}, loss {cfg.objective.loss}; device {device}, precision "
        f"{str(dtype).removeprefix('torch.')}; start {paths['start']} val Dice {start_scores['val/dice']:.4f}")
    say(f"{label}: {plan.describe(cfg.batch_size)}")
    fit(
        state,
        epochs=cfg.epochs,
        steps=plan.steps,
        interval=plan.interval,
        loader=loader,
        train_step=step,
        validate=validate,
        log=log,
        checkpoints=manager,
        on_improve=best_epoch_saver(manager.best_path, unet, patch, variant),
        on_epoch_end=lambda current: history.write(current.history),
        progress=progress,
        label=label,
    )
    log.flush()

    # -- outputs: the best epoch, or the starting weights when nothing beat them -------------
    kept_start = state.best_epoch == 0
    best = start_file if kept_start else read_model_file(manager.best_path)
    unet.load_state_dict(best["state_dict"])
    final = validate()
    best = {**best, "image_size": patch, "meta": {
        **best.get("meta", {}), "variant": variant, "epoch": state.best_epoch, "val_dice": final["val/dice"],
        "started_from": str(paths["start"]), "start_val_dice": start_scores["val/dice"], "kept_start": kept_start,
    }}
    wall = time.perf_counter() - started
    trained_rows = [row for row in state.history if row["epoch"] > 0]
    summary = {
        "variant": variant,
        "start": {"model": str(paths["start"]), "val_dice": round(start_scores["val/dice"], 6),
                  "val_loss": round(start_scores["val/loss"], 6)},
        "val": {"dice": round(final["val/dice"], 6), "loss": round(final["val/loss"], 6)},
        "val_dice_gain": round(final["val/dice"] - start_scores["val/dice"], 6),
        "kept_start": kept_start,
        "note": (f"fine-tuning did not beat the starting model's validation Dice "
                 f"{start_scores['val/dice']:.4f} in {state.epoch} epoch(s): the starting weights are kept"
                 if kept_start else f"best epoch {state.best_epoch} beats the starting model"),
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "gan": {"discriminator": cfg.discriminator.kind, "objective": cfg.objective.loss,
                "seg_weight": cfg.seg_weight, "adv_weight": cfg.adv_weight},
        "semi_supervised": {"enabled": pool is not None, "source": pool_source,
                            "unlabeled_images": len(pool) if pool is not None else 0},
        "data": {"labeled_pairs": len(labeled), "hidden_label_pairs": len(hidden) if hidden else 0,
                 "val_pairs": len(val)},
        "run": {"device": str(device), "precision": str(dtype).removeprefix("torch."),
                "wall_time_s": round(wall, 1),
                "images_per_s": round(float(np.median([r["train/images_per_s"] for r in trained_rows])), 1)
                if trained_rows else None},
    }
    version = segmenter.publish_segmenter(
        ctx, variant=variant, paths=outputs, unet=unet, model_file=best,
        config={"unet": unet_config.as_dict(), **resolved, "variant": variant, "started_from": str(paths["start"]),
                "patch_size": patch},
        trained_on=trained_on, summary=summary, history=state.history, val=val, overlay_images=cfg.overlay_images,
        device=device, dtype=dtype,
        metrics={"best/val_dice": final["val/dice"], "start/val_dice": start_scores["val/dice"],
                 "best/val_dice_gain": summary["val_dice_gain"], "best/epoch": state.best_epoch,
                 "best/kept_start": float(kept_start), "run/wall_time_s": wall},
        tags={"val_dice": f"{final['val/dice']:.4f}", "best_epoch": state.best_epoch,
              "kept_start": str(kept_start).lower(), "started_from": str(paths["start"])},
        manager=manager, tile=patch,
    )
    outcome = (f"kept the starting weights (no epoch beat {start_scores['val/dice']:.4f})" if kept_start
               else f"best epoch {state.best_epoch}/{state.epoch}")
    print(f"{label}: val Dice {start_scores['val/dice']:.4f} -> {final['val/dice']:.4f}, {outcome}, "
          f"in {wall:.0f}s -> {outputs.model_file(variant)}{segmenter.registered_note(version)}")


# -- helpers -------------------------------------------------------------------------------
def split_labeled(pairs: PairTensors, fraction: float, seed: int) -> tuple[PairTensors, PairTensors | None]:
    """Keep the masks of a seeded ``fraction`` of the pairs (at least one); hide the rest."""
    if fraction >= 1:
        return pairs, None
    keep = max(1, round(fraction * len(pairs)))
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))
    chosen, hidden_index = order[:keep].sort().values, order[keep:].sort().values

    def subset(index: torch.Tensor) -> PairTensors:
        chosen = index.tolist()
        return PairTensors(ids=[pairs.ids[i] for i in chosen], images=[pairs.images[i] for i in chosen],
                           masks=[pairs.masks[i] for i in chosen])

    return subset(chosen), (subset(hidden_index) if len(hidden_index) else None)


def unlabeled_pool(cfg: UnlabeledConfig, folder: Path, train_pairs: PairTensors, hidden: PairTensors | None,
                   common: CommonConfig) -> tuple[list[torch.Tensor], str]:
    """The unlabeled images (uint8 (C, H, W) each, any size) and where they came from (see UnlabeledConfig)."""
    has_folder = (folder / "manifest.csv").is_file()
    if cfg.source == "folder" and not has_folder:
        raise DataError(
            f"{folder}: no unlabeled images (manifest.csv missing); set prepare.folder.unlabeled_dir "
            "and re-run prepare, or set finetune.unlabeled.source: train"
        )
    if cfg.source == "train" or (cfg.source == "auto" and not has_folder):
        return train_pairs.images, "train images, labels hidden"
    _, images = load_images(folder, common.channels)
    if hidden is not None:
        return images + hidden.images, f"{folder} + train images with hidden labels"
    return images, str(folder)


def check_start_model(path: Path, unet_config, common: CommonConfig) -> None:
    if unet_config.in_channels != common.channels:
        raise DataError(f"{path}: model takes {unet_config.in_channels} channel(s) but common.channels is "
                        f"{common.channels}; retrain it (dvc repro train) or fix common.channels")
    if unet_config.num_classes != common.num_classes:
        raise DataError(f"{path}: model predicts num_classes={unet_config.num_classes} but "
                        f"common.num_classes is {common.num_classes}; retrain it (dvc repro train)")


def finetune_patch(cfg: FinetuneConfig, model_file: dict, path: Path) -> int:
    """finetune.patch_size, or (auto) the patch the starting model was trained at."""
    if cfg.patch_size != "auto":
        return cfg.patch_size
    trained_at = model_file.get("meta", {}).get("patch_size") or model_file.get("image_size")
    if trained_at is None:
        raise DataError(f"{path}: the model file does not say the patch it was trained at; set finetune.patch_size")
    return int(trained_at)


