"""Stage ``train``: a U-Net on the prepared real pairs, plus synthetic pairs when given.

Reads the ``common`` and ``train`` blocks. ``--variant`` names the run (dvc.yaml trains
``real`` and ``synthetic``); ``--synthetic DIR`` adds that pair folder's pairs at
``train.synthetic_ratio`` synthetic pairs per real pair per epoch, or, with
``train.synthetic_schedule: pretrain``, on synthetic pairs only for the first
``train.pretrain_share`` of the steps and real pairs only after (see docs/training.md).

Writes (rank 0 only, each file atomically):
- ``models/unet_<variant>.pt``: the model file of the best epoch (``ganseg.models.model_file``),
  and ``models/unet_<variant>.json``: the resolved config it was trained with;
- ``metrics/train_<variant>.json``: best validation Dice and the facts of the run;
- ``plots/train_<variant>.csv``: one row per epoch (the DVC plots file);
- ``reports/train_<variant>/``: validation overlay grid and loss/Dice curves (PNG);
- ``checkpoints/train_<variant>/``: the resumable checkpoint while training (not a DVC output:
  DVC deletes outputs before a stage runs, and the checkpoint must survive a kill). It is
  removed once the outputs above are written.

MLflow: params, per-epoch ``train/*`` and ``val/*`` metrics, the overlay grid and curves, and
the model registered as ``ganseg-unet`` (tagged with the variant).

Data parallel: ``torchrun --nproc_per_node=N -m pipelines train ...``.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from ganseg.config.common import CommonConfig
from ganseg.config.train import TrainConfig
from ganseg.data.pairs import PairTensors, load_split, pairs_digest
from ganseg.data.patches import PatchPlan
from ganseg.data.provenance import training_record
from ganseg.errors import DataError
from ganseg.models import UNetConfig, build_unet
from ganseg.models.model_file import bare_module, best_epoch_saver, read_model_file
from ganseg.models.pretrained import find_pretrained, read_state_dict
from ganseg.runtime import seed_everything, select_device, select_precision
from ganseg.training import distributed
from ganseg.training.checkpoint import CheckpointManager, TrainState, config_fingerprint
from ganseg.training.data import EpochSampler, PairDataset, build_augmentation, seeded_loader
from ganseg.training.early_stopping import EarlyStopping
from ganseg.training.hardware import configure_backends, maybe_compile, memory_format_for
from ganseg.training.history import HistoryWriter
from ganseg.training.loop import SegmentationStep, fit, plan_steps, resume
from ganseg.training.losses import SegmentationLoss
from ganseg.training.optim import build_optimizer, build_scheduler
from ganseg.training.validation import evaluate_dice, subset_pixel_share, validation_subset
from pipelines import segmenter
from pipelines.stage import DebugOption, ParamsOption, ProgressOption, run_stage

app = typer.Typer(help="Train the U-Net on the prepared pairs (plus synthetic pairs with --synthetic).")

# Keys of this stage that do not change what is trained: a checkpoint stays resumable across
# them (with the common ones of ganseg.training.checkpoint.NOT_FINGERPRINTED).
NOT_FINGERPRINTED = {"train": {"resume", "num_workers", "overlay_images", "val_batch_size", "compile",
                               "channels_last", "cudnn_benchmark"}}


@app.callback(invoke_without_command=True)
def train(
    params: ParamsOption = Path("params.yaml"),
    variant: Annotated[str, typer.Option(help="Name of this run's outputs and registry tag.")] = "real",
    data: Annotated[Path, typer.Option(help="Prepared folder with train/ and val/ pair folders.")] = Path("data/prepared"),
    synthetic: Annotated[
        Path | None, typer.Option(help="Pair folder of synthetic pairs to mix in (augment stage output).")
    ] = None,
    plan_of: Annotated[
        Path | None, typer.Option(help="Metrics file of another train run (metrics/train_real.json): train its "
                                       "plan (patch, batch, steps, validations) instead of planning one, so that "
                                       "the variants compared differ only in their data.")
    ] = None,
    models: segmenter.ModelsOption = Path("models"),
    metrics: segmenter.MetricsOption = None,
    plots: segmenter.PlotsOption = None,
    reports: segmenter.ReportsOption = None,
    checkpoints: segmenter.CheckpointsOption = None,
    progress: ProgressOption = None,
    debug: DebugOption = False,
) -> None:
    """Train one U-Net variant; resume its checkpoint when ``train.resume`` is true."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", variant):
        typer.echo(f"error: --variant {variant!r}: use letters, digits, '-' or '_'", err=True)
        raise typer.Exit(2)
    paths = segmenter.OutputPaths.of_run(f"train_{variant}", models, metrics, plots, reports, checkpoints)
    info = distributed.env_dist_info()

    with run_stage("train", params, debug, track=info.is_main, run_name=f"train_{variant}") as ctx:
        common, cfg = ctx.params.common, ctx.params.train
        ctx.tracker.set_tags({"ganseg.variant": variant})
        try:
            _train(ctx, common, cfg, variant, data, synthetic, plan_of, paths, progress)
        finally:
            distributed.shutdown()


def _train(ctx, common: CommonConfig, cfg: TrainConfig, variant: str, data: Path, synthetic: Path | None,
           plan_of: Path | None, paths: segmenter.OutputPaths, progress: bool | None) -> None:
    started = time.perf_counter()
    device = select_device(common.device)
    info = distributed.init_distributed(device)
    device = distributed.process_device(device, info)
    dtype = select_precision(common.precision, device)
    deterministic = device.type == "cpu" or not cfg.cudnn_benchmark
    seed_everything(common.seed, deterministic=deterministic)
    configure_backends(device, cfg.cudnn_benchmark, deterministic)
    memory_format = memory_format_for(cfg.channels_last, device)
    say = (lambda text: print(text, file=sys.stderr)) if info.is_main else (lambda text: None)

    # -- data: decoded once, kept as uint8 tensors at their own sizes ------------------------
    real = load_split(data / "train", common.channels, common.num_classes)
    val = load_split(data / "val", common.channels, common.num_classes)
    # Which real images shape this model (the synthetic pairs are painted from the same training
    # images): stored with it, so that it is never scored on them (ganseg.data.provenance).
    trained_on = training_record({"train": data / "train", "val": data / "val"})
    pool = load_synthetic(synthetic, cfg.synthetic_ratio, common, say)
    mixed = pool is not None
    images = real.images + pool.images if mixed else real.images
    masks = real.masks + pool.masks if mixed else real.masks

    # -- model ------------------------------------------------------------------------------
    unet_config = UNetConfig(
        in_channels=common.channels,
        num_classes=common.num_classes,
        depth=cfg.model.depth,
        base_width=cfg.model.base_width,
        upsampling=cfg.model.upsampling,
        batch_norm=cfg.model.batch_norm,
        dropout=cfg.model.dropout,
        encoder=cfg.model.encoder,
    )
    model = build_unet(unet_config)
    if cfg.model.pretrained or cfg.model.pretrained_path is not None:
        load_pretrained(model, cfg, say)
    model = model.to(device, memory_format=memory_format)
    criterion = SegmentationLoss(cfg.loss)

    val_files = [str(data / "val" / "images" / f"{pair_id}.png") for pair_id in val.ids]

    def validate_images(indices, tile: int, dist_info=None) -> dict[str, float]:
        """The validation of the run (on these validation images, at this tile): the plan times it."""
        chosen = list(indices)
        return evaluate_dice(model, [val.images[i] for i in chosen], [val.masks[i] for i in chosen],
                             num_classes=common.num_classes, device=device, dtype=dtype,
                             batch_size=cfg.val_batch_size, tile=tile, criterion=criterion,
                             memory_format=memory_format, dist_info=dist_info,
                             names=[val_files[i] for i in chosen])

    # -- the plan: patch, batch, steps; explicit params win, "auto" ones are planned --------
    resolved = ctx.resolved_config()
    inherited = (plan_of, segmenter.read_plan_of(plan_of)) if plan_of is not None else None
    # An inherited plan is part of what is trained: a checkpoint of another plan is not resumed.
    fingerprint_key = config_fingerprint(resolved, variant, pairs_digest(real, val, pool),
                                         *([inherited[1].as_dict()] if inherited else []), ignore=NOT_FINGERPRINTED)
    manager = CheckpointManager(paths.checkpoints, fingerprint_key, config=resolved)
    plan = segmenter.training_plan(
        "train", cfg, data=data, model=model, criterion=criterion, val=val, manager=manager,
        sample_dataset=lambda patch: PairDataset(images, masks, build_augmentation(cfg.augmentation),
                                                 PatchPlan.for_masks(masks, patch, cfg.foreground_share)),
        validate=validate_images,
        depth=unet_config.down_samplings, common=common, device=device, dtype=dtype, memory_format=memory_format,
        make_optimizer=lambda m: build_optimizer(m.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay),
        say=say, label=f"train[{variant}]", inherited=inherited,
    )
    ctx.tracker.log_params({f"plan/{key}": value for key, value in plan.as_params().items()})
    patches = PatchPlan.for_masks(masks, plan.patch_size, cfg.foreground_share, seed=common.seed)
    if patches.padded:
        say(f"train[{variant}]: {len(patches.padded)} of {len(masks)} images are smaller than the "
            f"{plan.patch_size} px patch; their patches are padded (the padding counts in no loss)")
    sampler = EpochSampler(
        num_real=len(real),
        num_synthetic=len(pool) if mixed else 0,
        synthetic_ratio=cfg.synthetic_ratio if mixed else 0.0,
        seed=common.seed,
        rank=info.rank,
        world_size=info.world_size,
    )
    loader = seeded_loader(PairDataset(images, masks, build_augmentation(cfg.augmentation), patches), sampler,
                           batch_size=plan.batch_size, num_workers=cfg.num_workers, device=device, seed=common.seed)

    # -- optimisation ------------------------------------------------------------------------
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    # The length in steps and the validation interval: the plan's step budget, or epochs of the
    # loader when steps is null.
    schedule = plan_steps(len(loader), cfg.epochs, plan.steps, plan.val_interval, "train")
    scheduler = build_scheduler(optimizer, cfg.scheduler, schedule.steps, cfg.plateau.patience,
                                cfg.plateau.factor)
    # The schedule decides only which pairs each batch draws: the epoch length, the plan and the
    # validations are those of the mix.
    pretrain_until = None
    if mixed and cfg.synthetic_schedule == "pretrain":
        pretrain_until = pretrain_steps(cfg.pretrain_share, schedule.steps)
        sampler.pretrain(pretrain_until, plan.batch_size)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    state = TrainState(
        modules={"unet": model},
        optimizers={"unet": optimizer},
        schedulers={"unet": scheduler} if scheduler is not None else {},
        scalers={"unet": scaler},
        early_stopping=EarlyStopping(cfg.early_stopping.patience, cfg.early_stopping.min_delta),
    )

    if cfg.resume:
        found = manager.load()
        if found.checkpoint is not None:
            resume(state, found.checkpoint, info)
        say(f"train[{variant}]: {found.reason}")

    network = maybe_compile(distributed.wrap_ddp(model, device, info), cfg.compile)
    step = SegmentationStep(network, criterion, optimizer, device=device, dtype=dtype, scaler=scaler,
                            grad_clip=cfg.grad_clip, memory_format=memory_format)

    # Validation during training scores the plan's share of the validation pixels (a fixed
    # subset; all of them unless the whole split is too slow for the budget).
    val_subset = validation_subset(val.sizes, plan.val_share, common.seed)
    if len(val_subset) < len(val):
        say(f"train[{variant}]: each validation scores {len(val_subset)} of the {len(val)} validation images "
            f"({subset_pixel_share(val.sizes, val_subset):.0%} of their pixels, a fixed seeded subset)")

    def validate() -> dict[str, float]:
        return validate_images(val_subset, plan.patch_size, info)

    history = HistoryWriter(paths.plots)
    log = ctx.tracker.step_log()  # one MLflow batch per epoch

    mix = f" + {sampler.synthetic_per_epoch} synthetic (pool {len(pool)})" if mixed else ""
    if pretrain_until is not None:
        mix = (f" (steps 1-{pretrain_until} on synthetic pairs only, pool {len(pool)}; then real only; "
               f"train.synthetic_schedule pretrain, pretrain_share {cfg.pretrain_share:g})")
    say(f"train[{variant}]: {len(real)} real{mix} pairs per epoch, {len(val)} val; device {device}, "
        f"precision {str(dtype).removeprefix('torch.')}, {'channels_last' if memory_format == torch.channels_last else 'NCHW'}, "
        f"processes {info.world_size}, {sum(p.numel() for p in model.parameters()):,} parameters")
    say(f"train[{variant}]: {schedule.describe(plan.batch_size)}")
    fit(
        state,
        epochs=cfg.epochs,
        steps=schedule.steps,
        interval=schedule.interval,
        loader=loader,
        train_step=step,
        validate=validate,
        log=log,
        checkpoints=manager if info.is_main else None,
        on_improve=best_epoch_saver(manager.best_path, model, plan.patch_size, variant),
        on_epoch_end=lambda current: history.write(current.history),
        dist_info=info,
        progress=progress,
        label=f"train[{variant}]",
    )
    log.flush()
    if not info.is_main:
        distributed.barrier()
        return

    # -- outputs (rank 0) ------------------------------------------------------------------
    best = read_model_file(manager.best_path)
    bare_module(model).load_state_dict(best["state_dict"])
    # The best validation's own numbers: scoring the saved weights again gives the same (the
    # validation is deterministic) at the cost of one more pass over large validation images.
    best_row = next(row for row in state.history if row["epoch"] == state.best_epoch)
    final = {"val/dice": best_row["val/dice"], "val/loss": best_row["val/loss"]}
    wall = time.perf_counter() - started
    summary = {
        "variant": variant,
        "val": {"dice": round(final["val/dice"], 6), "loss": round(final["val/loss"], 6)},
        "train": {"loss": round(best_row["train/loss"], 6)},
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "plan": plan.as_params(),
        "plan_of": str(plan_of) if plan_of is not None else None,
        "stopped_early": state.stopped_early,
        "data": {"real_pairs": len(real), "val_pairs": len(val), "val_pairs_scored": len(val_subset),
                 "synthetic_pool": len(pool) if mixed else 0,
                 "synthetic_per_epoch": sampler.synthetic_per_epoch,
                 "synthetic_schedule": cfg.synthetic_schedule if mixed else None,
                 "pretrain_until_step": pretrain_until},
        "run": {"device": str(device), "precision": str(dtype).removeprefix("torch."),
                "processes": info.world_size, "optimizer_steps": state.step, "wall_time_s": round(wall, 1),
                "images_per_s": round(float(np.median([r["train/images_per_s"] for r in state.history])), 1)},
    }
    version = segmenter.publish_segmenter(
        ctx, variant=variant, paths=paths, unet=model, model_file=best,  # the best epoch's file, as saved
        config={"unet": unet_config.as_dict(), **resolved, "variant": variant, "patch_size": plan.patch_size,
                "plan": plan.as_params()}, trained_on=trained_on,
        summary=summary, history=state.history, val=val, overlay_images=cfg.overlay_images, device=device,
        dtype=dtype, metrics={"best/val_dice": final["val/dice"], "best/epoch": state.best_epoch,
                              "run/wall_time_s": wall},
        tags={"val_dice": f"{final['val/dice']:.4f}", "best_epoch": state.best_epoch}, manager=manager,
        tile=plan.patch_size,
    )
    print(f"train[{variant}]: val Dice {final['val/dice']:.4f} (epoch {state.best_epoch}/{state.epoch}"
          f"{', stopped early' if state.stopped_early else ''}) in {wall:.0f}s -> {paths.model_file(variant)}"
          f"{segmenter.registered_note(version)}")
    distributed.barrier()


# -- helpers -------------------------------------------------------------------------------
def load_synthetic(folder: Path | None, ratio: float, common: CommonConfig, say) -> PairTensors | None:
    """The synthetic pool, or None (no folder, or ``synthetic_ratio`` 0)."""
    if folder is None:
        return None
    if ratio == 0:
        say(f"train: train.synthetic_ratio is 0, so the pairs in {folder} are not used")
        return None
    if not (folder / "manifest.csv").is_file():
        raise DataError(
            f"{folder}: no synthetic pairs (manifest.csv missing); run the augment stage "
            "(dvc repro augment) or set train.synthetic_ratio: 0"
        )
    return load_split(folder, common.channels, common.num_classes)


def pretrain_steps(share: float, steps: int) -> int:
    """The last step of the synthetic-only phase: ``share`` of ``steps``, at least 1 and, when
    the run has two steps or more, leaving at least one real step."""
    return max(1, min(steps - 1, round(share * steps)))


def load_pretrained(model: torch.nn.Module, cfg: TrainConfig, say) -> None:
    path = find_pretrained(cfg.model.encoder, cfg.model.pretrained_path)
    if path is None:
        say(f"train: no pretrained {cfg.model.encoder} weights in the torch cache (nothing is downloaded); "
            "training the encoder from scratch")
        return
    model.load_encoder_state(read_state_dict(path))
    say(f"train: encoder initialised from {path}")
