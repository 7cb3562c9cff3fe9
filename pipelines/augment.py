"""Stage ``augment``: train a GAN on the prepared training pairs, write new labelled pairs.

Reads the ``common`` and ``augment`` blocks and ``<data>/train`` (and ``<data>/val`` for the
consistency reference). The GAN trains on square patches of ``augment.patch_size`` cut from the
training images at their own sizes ("auto": :func:`ganseg.config.augment.resolve_patch_size`,
printed, logged as the param ``augment.patch_size_resolved`` and written into config.json and
generator.json), and writes pairs of that size. Writes:

- ``<out>/`` (data/synthetic): images/, masks/, manifest.csv (source mask, transform,
  generator version and consistency Dice of every pair), config.json; all or nothing. Only the
  pairs the filter keeps (``augment.filter``): the pool is synthesised and scored by the
  reference segmenter before anything is written;
- ``<models>/`` (models/generator): generator.pt (EMA weights, a state dict) + generator.json
  (what rebuilds it); the generator is registered in MLflow as ``ganseg-generator``;
- ``<reports>/samples/``: a grid of fixed masks (or noise) every ``sample_interval`` steps;
  ``<reports>/synthetic_grid.png``: the first synthetic pairs;
- ``<plots>`` (plots/augment.csv): the per-interval losses and accuracies (DVC plots);
- ``<metrics>`` (metrics/augment.json): final losses, guard events, FID/KID with N, mask
  consistency.

Resumable checkpoints and the grids written so far live in ``<checkpoints>`` (default
checkpoints/augment/, git-ignored and not a DVC output, because DVC deletes a stage's outputs
before running it): re-running after a kill continues from the last checkpoint. They are
removed once every output is written.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import typer

from ganseg import io
from ganseg.config.augment import (
    AUTO_SAMPLES_PER_IMAGE,
    AugmentConfig,
    FilterConfig,
    resolve_num_samples,
    resolve_patch_size,
)
from ganseg.config.common import CommonConfig
from ganseg.data import pairs
from ganseg.errors import ConfigError
from ganseg.gan.build import (
    build_feature_matching,
    build_gan_objective,
    build_loop_settings,
    build_networks,
    build_optimizers,
    build_stabilisers,
)
from ganseg.gan.data import PairSampler, fixed_patches, mask_channels
from ganseg.gan.ema import Ema
from ganseg.gan.losses import GanLoss
from ganseg.gan.mask_sampler import MaskSampler, MaskSamplerSettings, mask_patches
from ganseg.gan.samples import render_grid
from ganseg.gan.synthesis import dcgan_pairs, decode_stacks, noise_for, paint_masks, pix2pix_pairs
from ganseg.gan.trainer import GanParts, train_gan
from ganseg.runtime import seed_everything, select_device, select_precision
from ganseg.training.checkpoint import CheckpointManager, config_fingerprint
from ganseg.training.history import HistoryWriter
from pipelines.stage import DebugOption, ParamsOption, ProgressOption, run_stage

app = typer.Typer(help="Train a GAN on the training pairs and write synthetic image/mask pairs.")

REGISTERED_NAME = "ganseg-generator"
# Keys used only after the GAN has trained: a checkpoint stays resumable across them, so that
# after "the filter dropped every pair" a re-run with a lower threshold does not train again.
NOT_FINGERPRINTED = {"augment": {"num_samples", "filter"}}


@app.callback(invoke_without_command=True)
def augment(
    params: ParamsOption = Path("params.yaml"),
    data: Annotated[Path, typer.Option(help="Prepared pair folders (train/, val/).")] = Path("data/prepared"),
    out: Annotated[Path, typer.Option(help="Folder for the synthetic pairs.")] = Path("data/synthetic"),
    models: Annotated[Path, typer.Option(help="Folder for the generator weights.")] = Path("models/generator"),
    checkpoints: Annotated[Path, typer.Option(help="Resumable checkpoints (removed once the outputs are written).")] = Path(
        "checkpoints/augment"
    ),
    reports: Annotated[Path, typer.Option(help="Folder for the sample grids.")] = Path("reports/augment"),
    plots: Annotated[Path, typer.Option(help="CSV of the per-interval losses (DVC plots).")] = Path(
        "plots/augment.csv"
    ),
    metrics: Annotated[Path, typer.Option(help="JSON file of final losses and quality.")] = Path(
        "metrics/augment.json"
    ),
    progress: ProgressOption = None,
    debug: DebugOption = False,
) -> None:
    """Train the GAN of ``augment.model`` and write ``augment.num_samples`` synthetic pairs."""
    with run_stage("augment", params, debug) as ctx:
        common = ctx.params.common
        device = select_device(common.device)
        dtype = select_precision(common.precision, device)
        seed_everything(common.seed)
        train = pairs.load_split(data / "train", common.channels, common.num_classes)
        val = pairs.load_split(data / "val", common.channels, common.num_classes, required=False)
        cfg = resolve_patches(ctx, train)

        run = build_run(cfg, common, train, device, dtype)
        checkpointer = CheckpointManager(
            checkpoints, config_fingerprint(ctx.resolved_config(), run.generator_config, pairs.pairs_digest(train),
                                            ignore=NOT_FINGERPRINTED),
            config=ctx.resolved_config())
        found = checkpointer.load()
        print(f"augment: {found.reason}", file=sys.stderr)
        if found.checkpoint is None:  # a fresh run: grids of an earlier one do not belong
            shutil.rmtree(checkpoints / "samples", ignore_errors=True)
        grids = SampleGrids(cfg, common, train, device, dtype, run.memory_format, checkpoints / "samples",
                            ctx.tracker)
        log = ctx.tracker.step_log()

        started = time.perf_counter()
        history = train_gan(
            run.parts, run.loss, run.sampler,
            build_loop_settings(cfg),
            checkpointer,
            log,
            constraints=run.constraints,
            on_sample=grids,
            on_event=report_event,
            progress=progress,
        )
        log.flush()
        train_seconds = time.perf_counter() - started
        steps_run = cfg.steps - (history.resumed_from or 0)
        if history.resumed_from:
            print(f"augment: resumed from step {history.resumed_from} of {cfg.steps}")

        generator = run.parts.ema.model.eval()
        weights_sha = state_sha256(generator)
        timings = {"train": train_seconds}
        clock = time.perf_counter()
        # Synthesise and score the whole pool before any output is written: a filter that keeps
        # nothing stops the stage here, with no generator registered and no folder half-made.
        synthetic = synthesise(cfg, common, train, generator, device, dtype, run.memory_format)
        timings["synthesise"] = time.perf_counter() - clock
        clock = time.perf_counter()
        mask_fit, scores = consistency(cfg, common, train, val, synthetic, device)
        timings["consistency"] = time.perf_counter() - clock
        synthetic, scores, selection = filter_pairs(cfg.filter, synthetic, scores, mask_fit)
        print(f"augment: {selection.describe()}")

        generator_info = {
            "model": cfg.model,
            "generator": run.generator_config,
            "channels": common.channels,
            "num_classes": common.num_classes,
            "patch_size": cfg.patch_size,  # the side it was trained at and paints
            "steps": cfg.steps,
            "seed": common.seed,
            "weights_sha256": weights_sha,
        }
        with io.staged_dir(models) as staged_models:
            torch.save(generator.state_dict(), staged_models / "generator.pt")
            io.write_json(staged_models / "generator.json", generator_info)
        clock = time.perf_counter()
        version = register_generator(ctx.tracker, generator, models, cfg, common, weights_sha)
        timings["register"] = time.perf_counter() - clock
        clock = time.perf_counter()

        manifest = synthetic_manifest(synthetic, train.ids, cfg, common, weights_sha, scores)
        with io.staged_dir(out) as staged:
            write_pairs(staged, synthetic, manifest, common.num_classes)
            ctx.save_resolved_config(staged)

        with io.staged_dir(reports / "samples") as staged_samples:
            for grid in sorted((checkpoints / "samples").glob("*.png")):
                shutil.copy2(grid, staged_samples / grid.name)
        first = synthetic[: min(32, len(synthetic))]
        io.write_png(reports / "synthetic_grid.png", render_grid(
            np.stack([p.mask for p in first]), np.stack([p.image for p in first]), common.num_classes))
        HistoryWriter(plots).write(history.rows)

        synth_images = torch.from_numpy(np.stack([p.image for p in synthetic]))
        timings["write"] = time.perf_counter() - clock
        clock = time.perf_counter()
        quality = image_quality(cfg, common, train.images, synth_images, device)  # of the pairs written
        timings["fid_kid"] = time.perf_counter() - clock
        summary = {
            "model": cfg.model,
            "loss": cfg.objective.loss,
            "steps": cfg.steps,
            "steps_run": steps_run,
            "resumed_from": history.resumed_from,
            "train_seconds": round(train_seconds, 2),
            "iterations_per_second": round(steps_run / train_seconds, 3) if steps_run else None,
            "device": str(device),
            "precision": str(dtype).removeprefix("torch."),
            "patch_size": cfg.patch_size,
            "num_samples": len(synthetic),  # written, after the filter
            "filter": selection.as_dict(),
            "generator_version": version,
            "generator_sha256": weights_sha,
            "guard_restarts": history.restarts,
            "guard_events": history.events,
            "final": {k: round(v, 6) for k, v in history.final.items() if k != "step"},
            **quality,
            **mask_fit,
            "seconds": {name: round(value, 1) for name, value in timings.items()},
        }
        io.write_json(metrics, summary)
        ctx.tracker.log_metrics(flat_metrics(summary), step=cfg.steps)
        ctx.tracker.log_artifact(reports / "synthetic_grid.png", "samples")
        ctx.tracker.log_artifact(plots, "history")
        ctx.tracker.log_artifact(out / pairs.MANIFEST, "synthetic")
        # Every output is written: the resumable state has served its purpose. Kept, a forced
        # re-run (`dvc repro -f augment`) would "resume" at the last step instead of training.
        shutil.rmtree(checkpoints / "samples", ignore_errors=True)
        checkpointer.clear()
        print(
            f"augment: {cfg.model} {cfg.steps} steps ({summary['iterations_per_second']} it/s), "
            f"{len(synthetic)} pairs -> {out} ({selection.dropped} of {selection.scored} dropped by the filter); "
            f"generator {version or 'untracked'} ({weights_sha[:12]})"
        )


# -- inputs ----------------------------------------------------------------------------------
def resolve_patches(ctx, train: pairs.PairTensors) -> AugmentConfig:
    """The augment block with ``patch_size`` (and ``num_samples``) resolved for these training
    images and checked.

    The resolved block replaces the one read, so config.json and the checkpoint's fingerprint
    name the size used, not "auto"; MLflow keeps the param as read (its params cannot change)
    and gets the size as ``augment.patch_size_resolved``.
    """
    cfg = ctx.params.augment
    patch_size = resolve_patch_size(cfg, train.sizes)
    cfg.check_against(patch_size)
    shorter = [min(size) for size in train.sizes]
    print(f"augment: patch size {patch_size} px ({'auto' if cfg.patch_size == 'auto' else 'augment.patch_size'}; "
          f"training images' shorter sides {min(shorter)}..{max(shorter)} px, median {statistics.median(shorter):g})")
    num_samples = resolve_num_samples(cfg, len(train))
    if cfg.num_samples == "auto":
        capped = " (capped)" if num_samples < AUTO_SAMPLES_PER_IMAGE * len(train) else ""
        print(f"augment: {num_samples} synthetic pairs to synthesise and score (auto: {AUTO_SAMPLES_PER_IMAGE} x "
              f"{len(train)} training pairs{capped})")
    ctx.tracker.log_params({"augment": {"patch_size_resolved": patch_size, "num_samples_resolved": num_samples}})
    resolved = cfg.model_copy(update={"patch_size": patch_size, "num_samples": num_samples})
    ctx.params = ctx.params.model_copy(update={"augment": resolved})
    return resolved


@dataclass
class BuiltRun:
    """Everything train_gan needs, built from the config."""

    parts: GanParts
    loss: GanLoss
    sampler: PairSampler
    constraints: list
    generator_config: dict
    memory_format: torch.memory_format


def build_run(cfg: AugmentConfig, common: CommonConfig, train: pairs.PairTensors, device: torch.device,
              dtype: torch.dtype) -> BuiltRun:
    # Measured on CPU (benchmarks/gan_bench.py): channels_last slows the norms more than it
    # speeds the convolutions, so auto turns it on for CUDA only.
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    nets = build_networks(cfg, cfg.patch_size, common.channels, common.num_classes)
    generator = nets.generator.to(device, memory_format=memory_format)
    discriminator = nets.discriminator.to(device, memory_format=memory_format)
    g_opt, d_opt = build_optimizers(generator, discriminator, cfg)
    stab = build_stabilisers(cfg.objective, cfg.steps)
    loss = GanLoss(nets.task, build_gan_objective(cfg.objective), stab.penalties, stab.instance_noise,
                   stab.pool, device, dtype, augment=stab.augment, feature_matching=build_feature_matching(cfg))
    parts = GanParts(generator, discriminator, g_opt, d_opt, Ema(generator, cfg.ema_decay))
    sampler = PairSampler(train.images, train.masks, common.num_classes, cfg.batch_size, common.seed, device,
                          cfg.patch_size, cfg.foreground_share, augment=cfg.augment_real,
                          channels_last=channels_last)
    return BuiltRun(parts=parts, loss=loss, sampler=sampler, constraints=stab.constraints,
                    generator_config=nets.generator_config, memory_format=memory_format)


# -- during training -------------------------------------------------------------------------
def report_event(event: dict) -> None:
    print(
        f"warning: augment: {event['kind']} at step {event['step']} ({event['detail']}); restored step "
        f"{event['restored_step']}, learning rates x{event['lr_scale']:g} (restart {event['restart']})",
        file=sys.stderr,
    )


class SampleGrids:
    """``on_sample(step, generator)``: a grid of the same masks (or noise) at every call.

    pix2pix, spade: a fixed patch of each of the first ``grid_samples`` training pairs (its mask,
    the generated and the real image; spade with fixed noise). dcgan: fixed noise, the generated
    mask above its image.
    """

    def __init__(self, cfg: AugmentConfig, common: CommonConfig, train, device, dtype, memory_format,
                 folder: Path, tracker):
        self.cfg, self.common = cfg, common
        self.device, self.dtype, self.memory_format = device, dtype, memory_format
        self.folder, self.tracker = Path(folder), tracker
        count = min(cfg.grid_samples, len(train))
        self.real, self.labels = fixed_patches(train.images[:count], train.masks[:count], cfg.patch_size,
                                               cfg.foreground_share, common.seed)
        self.noise = noise_for(range(cfg.grid_samples), cfg.latent_dim, common.seed + 7919)

    def __call__(self, step: int, generator: torch.nn.Module) -> None:
        generator.eval()
        if self.cfg.mask_conditioned:
            noise = self.noise[: len(self.labels)] if self.cfg.model == "spade" else None
            images = paint_masks(generator, self.labels, self.common.num_classes, self.device, self.dtype,
                                 self.memory_format, noise)
            grid = render_grid(self.labels, images, self.common.num_classes, real_images=self.real)
        else:
            with torch.no_grad():
                stacks = generator(self.noise.to(self.device))
            images, labels = decode_stacks(stacks, self.common.channels, self.common.num_classes)
            grid = render_grid(labels, images, self.common.num_classes)
        path = self.folder / f"step_{step:06d}.png"
        io.write_png(path, grid)
        self.tracker.log_artifact(path, "samples")


# -- after training --------------------------------------------------------------------------
def state_sha256(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def register_generator(tracker, generator, models: Path, cfg: AugmentConfig, common: CommonConfig,
                       weights_sha: str) -> str | None:
    """Log the EMA generator and register it as a new version of ``ganseg-generator``."""
    if not tracker.active:
        return None
    size = cfg.patch_size
    if cfg.mask_conditioned:
        example = -np.ones((1, mask_channels(common.num_classes), size, size), dtype=np.float32)
    else:
        example = np.zeros((1, cfg.latent_dim), dtype=np.float32)
    cpu_model = copy.deepcopy(generator).to("cpu", memory_format=torch.contiguous_format).eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # SPADE draws its noise: leave the RNG as it was
        output = cpu_model(torch.from_numpy(example)).numpy()
    return tracker.log_model(
        cpu_model,
        registered_name=REGISTERED_NAME,
        weights_file=models / "generator.pt",
        config_file=models / "generator.json",
        input_example=example,
        output_example=output,
        tags={"ganseg.model": cfg.model, "weights_sha256": weights_sha},
    )


def synthesise(cfg: AugmentConfig, common: CommonConfig, train, generator, device, dtype, memory_format):
    if cfg.mask_conditioned:
        settings = MaskSamplerSettings(**cfg.mask_sampler.model_dump())
        pool = mask_patches(train.masks, cfg.patch_size, cfg.foreground_share, common.seed)
        sampler = MaskSampler(pool.labels, settings, common.seed, pool.sources)
        return list(pix2pix_pairs(generator, sampler, cfg.num_samples, common.num_classes, device, dtype,
                                  memory_format=memory_format, label=f"synthesis ({cfg.model})",
                                  latent_dim=cfg.latent_dim, seed=common.seed))
    return list(dcgan_pairs(generator, cfg.num_samples, cfg.latent_dim, common.channels,
                            common.num_classes, common.seed, device, dtype))


def synthetic_manifest(synthetic, train_ids: list[str], cfg: AugmentConfig, common: CommonConfig,
                       weights_sha: str, scores: torch.Tensor | None = None) -> pd.DataFrame:
    """One row per pair, all of it a function of the inputs: the same run writes the same bytes.

    The registry version is left out on purpose (it grows with every run): with it, DVC would
    see new data after every forced re-run and retrain everything downstream. The generator's
    ``weights_sha256`` tag in the registry leads from a manifest to its version.
    ``consistency_dice``: the reference segmenter's Dice on the pair (empty when it is off).
    """
    rows = []
    for position, pair in enumerate(synthetic):
        pair_id = f"gan_{common.seed}_{pair.index:05d}"
        rows.append({
            "pair_id": pair_id,
            "image": f"images/{pair_id}.png",
            "mask": f"masks/{pair_id}.png",
            "source_pair_id": train_ids[pair.source_index] if pair.source_index is not None else "",
            "donor_pair_id": train_ids[pair.donor_index] if pair.donor_index is not None else "",
            "transform": pair.transform,
            "generator": cfg.model,
            "generator_sha256": weights_sha[:16],
            "seed": common.seed,
            "foreground_fraction": round(float((pair.mask > 0).mean()), 6),
            "consistency_dice": None if scores is None else round(float(scores[position]), 6),
        })
    return pd.DataFrame(rows)


def write_pairs(folder: Path, synthetic, manifest: pd.DataFrame, num_classes: int) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for pair, pair_id in zip(synthetic, manifest["pair_id"]):
        pairs.save_image(folder / "images" / f"{pair_id}.png", np.transpose(pair.image, (1, 2, 0)))
        pairs.save_mask(folder / "masks" / f"{pair_id}.png", pair.mask, num_classes)
    manifest.to_csv(folder / pairs.MANIFEST, index=False)


def image_quality(cfg: AugmentConfig, common: CommonConfig, real: list[torch.Tensor], fake: torch.Tensor,
                  device) -> dict:
    """FID and KID of the synthetic vs the real training images, both drawn to one N and one
    scale, a crop of the synthetic size from each real image (printed, with a stderr warning
    below 2048: ``ganseg.metrics.image_quality``)."""
    if not cfg.quality.fid_kid:
        return {"fid": None, "kid": None, "fid_kid_note": "switched off (augment.quality.fid_kid: false)"}
    from ganseg.metrics.image_quality import compute_fid_kid, equal_n, seeded_crops, seeded_subset, small_n_warning
    from ganseg.metrics.inception import load_feature_extractor

    n = equal_n(len(real), len(fake), max_images=cfg.quality.max_images)
    real = seeded_crops(real, n, tuple(fake.shape[-2:]), common.seed)
    fake = seeded_subset(fake, n, common.seed + 1)
    result = compute_fid_kid(
        real, fake, load_feature_extractor(None, device=device), batch_size=cfg.quality.batch_size,
        kid_subsets=cfg.quality.kid_subsets, kid_subset_size=cfg.quality.kid_subset_size, seed=common.seed,
    )
    print(f"augment: synthetic vs real train: {result.describe()}")
    warning = small_n_warning(n, "augment")
    if warning:
        print(warning, file=sys.stderr)
    return {
        "fid": round(result.fid, 4),
        "fid_n_real": result.n_real,
        "fid_n_fake": result.n_fake,
        "kid": round(result.kid_mean, 6),
        "kid_std": round(result.kid_std, 6),
        "kid_subset_size": result.kid_subset_size,
        "kid_subsets": result.kid_subsets,
        "feature_extractor": result.feature_extractor,
    }


def consistency(cfg: AugmentConfig, common: CommonConfig, train, val, synthetic,
                device) -> tuple[dict, torch.Tensor | None]:
    """Dice of a reference segmenter (trained on real pairs) between its prediction on each
    synthetic image and that image's mask; the same segmenter on real val pairs for scale.

    Returns the metrics block and the (N,) per-pair scores (None when switched off).
    """
    steps = cfg.consistency.steps
    if steps == 0:
        return {"mask_consistency": None,
                "mask_consistency_note": "switched off (augment.consistency.steps: 0)"}, None
    from ganseg.gan.consistency import mask_consistency, train_reference_segmenter

    segmenter = train_reference_segmenter(
        train.images, train.masks, common.num_classes, steps, cfg.consistency.base_channels,
        cfg.consistency.batch_size, cfg.consistency.lr, common.seed, device, cfg.patch_size, cfg.foreground_share,
    )
    reference_images, reference_labels = None, None
    if val is not None:  # the synthetic pairs' scale: one fixed patch per real val pair
        reference_images, reference_labels = fixed_patches(val.images, val.masks, cfg.patch_size,
                                                           cfg.foreground_share, common.seed)
    synth_images = torch.from_numpy(np.stack([p.image for p in synthetic]))
    synth_labels = torch.from_numpy(np.stack([p.mask for p in synthetic]))
    result = mask_consistency(segmenter, synth_images, synth_labels, reference_images, reference_labels,
                              common.num_classes, device, steps)
    return {"mask_consistency": {
        "dice": round(result.mask_consistency_dice, 6),  # every pair synthesised, before the filter
        "reference_val_dice": None if result.reference_dice is None else round(result.reference_dice, 6),
        "n_synthetic": result.n_synthetic,
        "n_reference": result.n_reference,
        "segmenter": f"U-Net trained {steps} steps on the real training pairs",
    }}, result.pair_dice


@dataclass(frozen=True)
class Selection:
    """What the filter did: ``scored`` pairs synthesised, ``kept`` written, below ``threshold`` dropped."""

    scored: int
    kept: int
    threshold: float | None  # absolute Dice; None = no filter
    min_relative_dice: float
    reference_dice: float | None
    kept_dice: float | None  # mean consistency Dice of the kept pairs

    @property
    def dropped(self) -> int:
        return self.scored - self.kept

    def describe(self) -> str:
        if self.threshold is None:
            return f"filter off (augment.filter.min_relative_dice: 0): all {self.scored} pairs kept"
        return (f"filter kept {self.kept} of {self.scored} pairs, dropped {self.dropped} with consistency Dice "
                f"< {self.threshold:.3f} ({self.min_relative_dice:g} x reference {self.reference_dice:.3f} on real "
                f"validation patches); kept pairs' mean Dice {self.kept_dice:.3f}")

    def as_dict(self) -> dict:
        return {"scored": self.scored, "kept": self.kept, "dropped": self.dropped,
                "min_relative_dice": self.min_relative_dice,
                "threshold": None if self.threshold is None else round(self.threshold, 6),
                "kept_dice": None if self.kept_dice is None else round(self.kept_dice, 6)}


def filter_pairs(cfg: FilterConfig, synthetic: list, scores: torch.Tensor | None,
                 mask_fit: dict) -> tuple[list, torch.Tensor | None, Selection]:
    """The pairs whose consistency Dice reaches ``min_relative_dice`` x the reference Dice (and
    their scores); raises ConfigError naming the param when none does, or when there is no
    reference Dice (no validation pairs) to scale the threshold by."""
    from ganseg.gan.consistency import fitting_pairs

    kept_dice = None if scores is None else float(scores.mean())
    if cfg.min_relative_dice == 0:
        return synthetic, scores, Selection(len(synthetic), len(synthetic), None, 0.0, None, kept_dice)
    reference = mask_fit["mask_consistency"]["reference_val_dice"]
    if reference is None:
        raise ConfigError("augment.filter.min_relative_dice is relative to the reference segmenter's Dice on real "
                          "validation pairs, and there are none (no val/ split); set it to 0")
    keep, threshold = fitting_pairs(scores, reference, cfg.min_relative_dice)
    if not bool(keep.any()):
        raise ConfigError(
            f"augment.filter.min_relative_dice {cfg.min_relative_dice:g} dropped all {len(synthetic)} synthetic pairs "
            f"(consistency Dice at most {float(scores.max()):.3f}, threshold {threshold:.3f} = "
            f"{cfg.min_relative_dice:g} x reference {reference:.3f}); lower it, or train the GAN longer"
        )
    chosen = keep.nonzero().flatten().tolist()
    kept_scores = scores[keep]
    return ([synthetic[i] for i in chosen], kept_scores,
            Selection(len(synthetic), len(chosen), threshold, cfg.min_relative_dice, reference,
                      float(kept_scores.mean())))


def flat_metrics(summary: dict) -> dict[str, float]:
    out = {name: value for name, value in summary["final"].items()}
    for key in ("fid", "fid_n_real", "fid_n_fake", "kid", "kid_std", "kid_subset_size", "guard_restarts",
                "iterations_per_second", "train_seconds"):
        if isinstance(summary.get(key), (int, float)):
            out[f"augment/{key}"] = summary[key]
    consistency_block = summary.get("mask_consistency")
    if consistency_block:
        out["augment/mask_consistency_dice"] = consistency_block["dice"]
        if consistency_block["reference_val_dice"] is not None:
            out["augment/reference_val_dice"] = consistency_block["reference_val_dice"]
    selection = summary["filter"]
    out["augment/filter_kept"] = selection["kept"]
    out["augment/filter_dropped"] = selection["dropped"]
    if selection["kept_dice"] is not None:
        out["augment/filter_kept_dice"] = selection["kept_dice"]
    return out
