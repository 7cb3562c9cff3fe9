"""Stage ``evaluate``: how good is each model on held-out data, how good are the synthetic
images, did augmentation and fine-tuning help; then update the model registry.

Reads the ``common`` and ``evaluate`` blocks, ``<prepared>/{train,val,test}``, ``<synthetic>``
(when present) and ``<models>/unet_<variant>.pt`` for each of ``evaluate.variants``. Writes:

- ``<metrics>`` (``metrics/evaluate.json``): per model the mean of each metric over test
  images with its bootstrap interval (``dice``, ``dice_low``, ``dice_high``, ...), paired
  differences between models, synthetic-data quality (FID/KID with N, IS, mask consistency);
- ``<report>`` (``reports/evaluation.md``): the comparison tables, the registry decision;
- ``<reports>/`` (``reports/evaluate/``): ``per_image.csv``, ``chart.png``,
  ``overlays/<variant>.png`` (best and worst test predictions), ``quality.json``,
  ``config.json``.

Every test image is segmented at its own size by the one sliding window (windows of the
model's patch size) and scored inside its region of interest: pixels whose mask is IGNORE
count in no metric. Each image is checked to fit in memory before any is segmented.

The files describe results and the registry's state, never the time or what this particular
run changed, so a forced re-run on the same inputs rewrites identical bytes.

Registry: the best model of this run by test Dice becomes ``champion`` of
``evaluate.registry.model_name`` only if it beats the current champion re-evaluated on this
test split, else ``challenger`` (see ``ganseg.evaluation.promotion``). All of it, and the
decision with both scores (``evaluate/promotion.json``, tag ``ganseg.registry.decision``), is
logged to this stage's MLflow run, tagged with the run ids of the model versions it evaluated.
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
from ganseg.config.evaluate import EvaluateConfig
from ganseg.data.pairs import PairTensors, load_pairs, read_manifest
from ganseg.data.provenance import RECORD_KEY, content_hashes, seen_in
from ganseg.errors import DataError
from ganseg.evaluation import overlays
from ganseg.evaluation.bootstrap import mean_interval, paired_difference, resample_counts
from ganseg.evaluation.inference import check_images_fit, predict_labels
from ganseg.evaluation.models import SegmentationModel, load_model
from ganseg.evaluation.promotion import Candidate, ChampionScore, PromotionRule, decide_and_apply
from ganseg.evaluation.report import Evaluation, metrics_dict, render_markdown
from ganseg.evaluation.scores import LABELS, Comparison, compare, score_images
from ganseg.metrics.registry import segmentation_metrics
from ganseg.runtime import seed_everything, select_device, select_precision
from pipelines.stage import DebugOption, ParamsOption, run_stage

app = typer.Typer(help="Compare the models on the test split, judge the synthetic data, update the registry.")

OVERLAP_METRICS = [spec.name for spec in segmentation_metrics(kinds=("overlap",))]  # chart panel 1


@app.callback(invoke_without_command=True)
def evaluate(
    params: ParamsOption = Path("params.yaml"),
    prepared: Annotated[Path, typer.Option(help="prepare's output: {train,val,test}/ pair folders.")] = Path("data/prepared"),
    synthetic: Annotated[Path, typer.Option(help="augment's synthetic pair folder (optional).")] = Path("data/synthetic"),
    models: Annotated[Path, typer.Option(help="Folder of unet_<variant>.pt model files.")] = Path("models"),
    metrics: Annotated[Path, typer.Option(help="JSON file of the numbers (DVC metrics).")] = Path("metrics/evaluate.json"),
    report: Annotated[Path, typer.Option(help="The markdown report.")] = Path("reports/evaluation.md"),
    reports: Annotated[Path, typer.Option(help="Folder for the chart, overlays and tables.")] = Path("reports/evaluate"),
    debug: DebugOption = False,
) -> None:
    """Evaluate every model of this run on the test split and update the registry."""
    with run_stage("evaluate", params, debug) as ctx:
        common, cfg = ctx.params.common, ctx.params.evaluate
        started = time.perf_counter()
        seed_everything(common.seed)
        device = select_device(common.device)
        dtype = select_precision(common.precision, device)

        paths, missing = locate_models(models, cfg)
        test = load_pairs(prepared / "test", common.channels, common.num_classes)
        test_images = content_hashes(prepared / "test")
        test_files = image_files(prepared / "test")
        loaded = {variant: load_checked(path, common, device, dtype, ctx.root) for variant, path in paths.items()}
        for model in loaded.values():  # a test image too large for memory stops the stage before any work
            check_images_fit(model, test.images, test_files)
        identical = identical_models(loaded)
        predicted: dict[str, list[torch.Tensor]] = {}  # variant -> uint8 (H, W) labels per test image
        for variant, model in loaded.items():  # a model with the same weights as an earlier one predicts alike
            twin = identical.get(variant)
            predicted[variant] = predicted[twin] if twin else predict_labels(
                model, test.images, cfg.batch_size, cfg.threshold, names=test_files, mirror=cfg.mirror)
        scores = {variant: score_images(labels, test.masks, common.num_classes) for variant, labels in predicted.items()}
        counts = resample_counts(len(test), cfg.bootstrap.resamples, common.seed)
        comparison = compare(test.ids, scores, cfg.baseline, counts, cfg.bootstrap.confidence)
        evaluation = Evaluation(
            comparison=comparison,
            test_folder=(prepared / "test").as_posix(),
            num_classes=common.num_classes,
            resamples=cfg.bootstrap.resamples,
            confidence=cfg.bootstrap.confidence,
            missing=missing,
            identical={variant: (twin, _kept_start(loaded[variant])) for variant, twin in identical.items()},
            seen_test_images={variant: seen_in((model.config or {}).get(RECORD_KEY), test_images)
                              for variant, model in loaded.items()},
            mirror=cfg.mirror,
        )
        timings = {"segmentation": time.perf_counter() - started}

        if cfg.synthetic_quality.enabled:
            mark = time.perf_counter()
            judge_synthetic(evaluation, prepared, synthetic, loaded.get(cfg.baseline), common, cfg, device)
            timings["synthetic_quality"] = time.perf_counter() - mark

        versions = {}
        if cfg.registry.enabled:
            mark = time.perf_counter()
            versions, evaluation.decision = update_registry(
                comparison, evaluation.seen_test_images, paths, test, test_images, common, cfg, device, dtype,
                counts, ctx.root)
            timings["registry"] = time.perf_counter() - mark

        write_outputs(evaluation, test, predicted, cfg, report, reports, metrics, ctx.save_resolved_config)
        log_run(ctx.tracker, evaluation, versions, metrics, report, reports, timings)
        print_summary(evaluation, timings, report)


# -- data --------------------------------------------------------------------------------------
def image_files(folder: Path) -> list[str]:
    """The image file of every pair of a pair folder, in manifest order: what errors name."""
    return [(Path(folder) / image).as_posix() for image in read_manifest(folder)["image"]]


# -- models ----------------------------------------------------------------------------------
def locate_models(folder: Path, cfg: EvaluateConfig) -> tuple[dict[str, Path], dict[str, str]]:
    """``unet_<variant>.pt`` per listed variant; a missing one stops the stage or is recorded."""
    found, missing = {}, {}
    for variant in cfg.variants:
        path = Path(folder) / f"unet_{variant}.pt"
        if path.is_file():
            found[variant] = path
        elif cfg.on_missing == "error":
            raise DataError(
                f"{path}: model of variant '{variant}' not found (listed in evaluate.variants); run the stage "
                "that trains it, drop it from evaluate.variants, or set evaluate.on_missing: skip"
            )
        else:
            missing[variant] = f"`{path.as_posix()}` not found (evaluate.on_missing: skip)"
            print(f"warning: evaluate: {path}: model of variant '{variant}' not found; reported as missing", file=sys.stderr)
    if not found:
        raise DataError(f"{folder}: none of the models of evaluate.variants {cfg.variants} exists (unet_<variant>.pt)")
    return found, missing


def load_checked(source: str | Path, common: CommonConfig, device, dtype, root: Path) -> SegmentationModel:
    """Load a model (a file, or a ``models:/`` URI of the registry under ``root``) and check it
    fits this run's data (channels, classes)."""
    model = load_model(source, device, dtype, registry_root=root)
    if model.in_channels != common.channels:
        raise DataError(
            f"{model.source}: model takes {model.in_channels}-channel images but common.channels is "
            f"{common.channels}; evaluate models trained on this data"
        )
    if model.num_classes != common.num_classes:
        raise DataError(
            f"{model.source}: model has num_classes {model.num_classes} but common.num_classes is "
            f"{common.num_classes}; evaluate models trained on this data"
        )
    return model


def identical_models(loaded: dict[str, SegmentationModel]) -> dict[str, str]:
    """{variant: earlier variant with exactly the same weights} (e.g. a fine-tuning that kept
    its start weights): one model under two names is reported once, not compared with itself."""
    identical: dict[str, str] = {}
    states = {variant: model.network.state_dict() for variant, model in loaded.items()}
    for index, variant in enumerate(states):
        for earlier in list(states)[:index]:
            if earlier not in identical and _same_weights(states[variant], states[earlier]):
                identical[variant] = earlier
                break
    return identical


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def _kept_start(model: SegmentationModel) -> bool:
    """True for a fine-tuned model (its config names a start model): it kept its start weights."""
    return bool((model.config or {}).get("started_from"))


# -- synthetic data ------------------------------------------------------------------------------
def judge_synthetic(
    evaluation: Evaluation,
    prepared: Path,
    synthetic: Path,
    baseline_model: SegmentationModel | None,
    common: CommonConfig,
    cfg: EvaluateConfig,
    device: torch.device,
) -> None:
    from ganseg.evaluation.synthetic_quality import image_quality
    from ganseg.metrics.image_quality import small_n_warning

    if not (Path(synthetic) / "manifest.csv").is_file():
        evaluation.quality = {"values": {}, "not_computed": {
            "synthetic data quality": f"`{Path(synthetic).as_posix()}` has no synthetic pairs (run the augment stage)"}}
        print(f"warning: evaluate: {synthetic}: no synthetic pairs; synthetic data quality not computed", file=sys.stderr)
        return
    fake = load_pairs(synthetic, common.channels, common.num_classes)
    real = load_pairs(prepared / "train", common.channels, common.num_classes)
    held_out = [image for split in ("val", "test") if (prepared / split / "manifest.csv").is_file()
                for image in load_pairs(prepared / split, common.channels, common.num_classes).images]
    quality = image_quality(real.images, fake.images, held_out or None, cfg.synthetic_quality, common.seed, device)
    warning = small_n_warning(quality.n, "evaluate")
    if warning:
        print(warning, file=sys.stderr)
    if baseline_model is None:
        quality.not_computed["mask consistency"] = f"needs the '{cfg.baseline}' model (evaluate.baseline), not evaluated"
    else:
        labels = predict_labels(baseline_model, fake.images, cfg.batch_size, cfg.threshold,
                                names=image_files(synthetic), mirror=cfg.mirror)
        dice = score_images(labels, fake.masks, common.num_classes)["dice"]
        counts = resample_counts(len(fake), cfg.bootstrap.resamples, common.seed + 1)
        evaluation.mask_consistency = {"dice": mean_interval(dice, counts, cfg.bootstrap.confidence)}
        evaluation.mask_consistency_model = cfg.baseline
    evaluation.quality = {"values": quality.values, "not_computed": quality.not_computed,
                          "feature_extractor": quality.feature_extractor}


# -- registry ------------------------------------------------------------------------------------
def update_registry(
    comparison: Comparison,
    seen_test_images: dict[str, int | None],
    paths: dict[str, Path],
    test: PairTensors,
    test_images: list[str],
    common: CommonConfig,
    cfg: EvaluateConfig,
    device: torch.device,
    dtype: torch.dtype,
    counts: np.ndarray,
    root: Path,
) -> tuple[dict, dict]:
    """Look up the registered version of every model file, then promote the best (or not)."""
    from ganseg.tracking import Registry, TrackingError

    name = cfg.registry.model_name
    best = comparison.best("dice")
    rule = PromotionRule(cfg.registry.min_improvement, cfg.bootstrap.confidence)
    try:
        registry = Registry(root)
        versions = {variant: registry.versions_of_file(name, path) for variant, path in paths.items()}

        def score_champion(version) -> ChampionScore:
            champion = load_checked(version.uri, common, device, dtype, root)
            seen = seen_in((champion.config or {}).get(RECORD_KEY), test_images)
            if seen != 0:  # never scored on images it learned from (or might have)
                return ChampionScore(seen_test_images=seen)
            labels = predict_labels(champion, test.images, cfg.batch_size, cfg.threshold, mirror=cfg.mirror)
            champion_dice = score_images(labels, test.masks, common.num_classes)["dice"]
            difference = paired_difference(comparison.scores[best]["dice"], champion_dice, counts,
                                           cfg.bootstrap.confidence)
            return ChampionScore(seen_test_images=0, dice=float(np.nanmean(champion_dice)), difference=difference)

        candidate = Candidate(variant=best, dice=comparison.summary[best]["dice"].mean, versions=tuple(versions[best]),
                              seen_test_images=seen_test_images.get(best))
        with registry.promotion_lock():  # another evaluation may be deciding at this moment
            decision = decide_and_apply(
                registry, name, candidate, score_champion, rule, cfg.registry.champion_alias,
                cfg.registry.challenger_alias,
            ).as_dict()
    except TrackingError as exc:
        if common.tracking_required:
            raise
        print(f"warning: evaluate: registry not updated: {exc}", file=sys.stderr)
        return {}, {"action": "skipped", "reason": f"registry unavailable ({exc})", "rule": rule.describe()}
    return versions, decision


# -- outputs -------------------------------------------------------------------------------------
def write_outputs(
    evaluation: Evaluation,
    test: PairTensors,
    predicted: dict[str, list[torch.Tensor]],
    cfg: EvaluateConfig,
    report: Path,
    reports: Path,
    metrics: Path,
    save_config,
) -> None:
    from ganseg.evaluation import charts  # matplotlib: only when drawing

    comparison = evaluation.comparison
    relative = _relative(reports, Path(report).parent)
    with io.staged_dir(reports) as staged:
        comparison.per_image_table().to_csv(staged / "per_image.csv", index=False)
        charts.interval_bar_chart(
            comparison.summary,
            [("mean over test images", OVERLAP_METRICS, True), ("pixels (lower is better)", ["hd95"], False)],
            staged / "chart.png",
            f"Test split, {len(test)} images",
            cfg.bootstrap.confidence,
            labels=LABELS,
        )
        if cfg.overlays.count > 0:
            (staged / "overlays").mkdir()
            for variant in filter(evaluation.shown, comparison.variants):
                draw_best_and_worst(variant, comparison, test, predicted[variant], cfg.overlays.count,
                                    staged / "overlays" / f"{variant}.png")
                evaluation.overlays[variant] = f"{relative}/overlays/{variant}.png"
        io.write_json(staged / "quality.json", evaluation.quality or {})
        save_config(staged)
    io.write_text(report, render_markdown(evaluation).replace("](evaluate/", f"]({relative}/"))
    io.write_json(metrics, metrics_dict(evaluation))


def _relative(folder: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(Path(folder).resolve(), Path(start).resolve())).as_posix()


def draw_best_and_worst(
    variant: str, comparison: Comparison, test: PairTensors, labels: list[torch.Tensor], count: int, path: Path
) -> None:
    """Each image at its own size, its error overlay (outside the region of interest: grey)."""
    from ganseg.evaluation import charts

    dice = comparison.scores[variant]["dice"]
    order = np.argsort(dice, kind="stable")  # worst first; ties keep the test order
    count = min(count, len(order))
    chosen = {"best": list(order[::-1][:count]), "worst": list(order[:count])}
    rows = []
    for row, indices in chosen.items():
        cells = []
        for index in indices:
            image = test.images[index].permute(1, 2, 0).numpy()  # (H, W, C)
            picture = overlays.error_overlay(image, labels[index].numpy(), test.masks[index].numpy())
            height, width = picture.shape[:2]
            cells.append((picture, f"{_short_id(test.ids[index])} ({height}x{width})\nDice {dice[index]:.3f}"))
        rows.append((row, cells))
    charts.image_grid(rows, path, f"{variant}: best and worst test predictions by Dice")


def _short_id(pair_id: str, keep: int = 14) -> str:
    """Captions stay readable with long ids (DSB's are 64 hex digits); the CSV has them whole."""
    return pair_id if len(pair_id) <= keep else f"{pair_id[:keep - 1]}…"


def flat_metrics(evaluation: Evaluation) -> dict[str, float]:
    """``eval/<variant>/<metric>``, ``eval/diff/<b_vs_a>/<metric>``, ``eval/<quality>`` for MLflow."""
    out: dict[str, float] = {}
    data = metrics_dict(evaluation)
    for variant, cell in data["variants"].items():
        out.update({f"eval/{variant}/{k}": v for k, v in cell.items() if v is not None})
    for key, cell in data["differences"].items():
        out.update({f"eval/diff/{key}/{k}": v for k, v in cell.items() if v is not None})
    for key, value in (data.get("synthetic") or {}).items():
        if isinstance(value, (int, float)) and value is not None:
            out[f"eval/{key}"] = value
    decision = evaluation.decision or {}
    if decision.get("candidate_dice") is not None:
        out["registry/candidate_dice"] = decision["candidate_dice"]
    if decision.get("champion_dice") is not None:
        out["registry/champion_dice"] = decision["champion_dice"]
    return out


def log_run(tracker, evaluation: Evaluation, versions: dict, metrics: Path, report: Path, reports: Path,
            timings: dict[str, float]) -> None:
    tracker.log_metrics(flat_metrics(evaluation))
    tracker.log_metrics({f"eval/seconds_{k}": v for k, v in timings.items()})
    tags = {"ganseg.best_variant": evaluation.comparison.best("dice")}
    for variant, found in versions.items():
        if found:
            tags[f"ganseg.evaluated.{variant}.version"] = found[0].version
            if found[0].run_id:
                tags[f"ganseg.evaluated.{variant}.run_id"] = found[0].run_id
    run_ids = sorted({v[0].run_id for v in versions.values() if v and v[0].run_id})
    if run_ids:
        tags["ganseg.evaluated_run_ids"] = ",".join(run_ids)
    if evaluation.decision:
        tags["ganseg.registry.decision"] = evaluation.decision.get("action")
    tracker.set_tags(tags)
    tracker.log_artifact(metrics, "evaluate")
    tracker.log_artifact(report, "evaluate")
    tracker.log_artifact(reports, "evaluate/reports")
    if evaluation.decision:
        tracker.log_dict(evaluation.decision, "evaluate/promotion.json")


def print_summary(evaluation: Evaluation, timings: dict[str, float], report: Path) -> None:
    comparison = evaluation.comparison
    for variant in comparison.variants:
        if not evaluation.shown(variant):
            print(f"evaluate: {variant}: identical weights to {evaluation.identical[variant][0]}; not compared with it")
            continue
        dice = comparison.summary[variant]["dice"]
        print(f"evaluate: {variant}: test Dice {dice.mean:.4f} [{dice.low:.4f}, {dice.high:.4f}]")
    for key, diffs in comparison.differences.items():
        if not all(evaluation.shown(v) for v in key.split("_vs_")):
            continue
        dice = diffs["dice"]
        print(f"evaluate: {key.replace('_vs_', ' - ')}: Dice {dice.mean:+.4f} [{dice.low:+.4f}, {dice.high:+.4f}]")
    values = (evaluation.quality or {}).get("values", {})
    if "fid" in values:
        from ganseg.metrics.image_quality import fid_kid_line

        kid_subsets = (values["kid_subsets"], values["kid_subset_size"])  # the same for both rows (same N)
        print("evaluate: synthetic vs real train: " + fid_kid_line(
            values["fid"], values["kid"], values["kid_std"], values["n_synthetic"], values["n_real"], *kid_subsets))
        if "reference_fid" in values:
            print("evaluate: real held-out vs real train (reference): " + fid_kid_line(
                values["reference_fid"], values["reference_kid"], values["reference_kid_std"], values["reference_n"],
                values["n_real"], *kid_subsets))
    if values.get("inception_score") is not None:
        n_is, splits = values["inception_score_n"], values["inception_score_splits"]
        print(f"evaluate: Inception Score {values['inception_score']:.3f} ± {values['inception_score_std']:.3f} "
              f"(N {n_is}, {splits} splits: at most {n_is / splits:.1f} at this N)")
    if evaluation.decision:
        decision = evaluation.decision
        print(f"evaluate: registry: {decision.get('action')}: {decision.get('reason')}")
    total = sum(timings.values())
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    print(f"evaluate: {total:.1f} s ({parts}) -> {report}")
