"""The evaluation's written outputs: the DVC metrics dict and the markdown report.

Both are pure functions of the results, with no timestamps or run ids, so re-running the
stage on the same inputs writes the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ganseg.evaluation.bootstrap import Interval
from ganseg.evaluation.scores import LABELS, METRICS, Comparison, base_metric, higher_is_better


@dataclass
class Evaluation:
    """Everything the report and the metrics file say."""

    comparison: Comparison
    test_folder: str
    num_classes: int
    resamples: int
    confidence: float
    missing: dict[str, str] = field(default_factory=dict)  # variant -> why it was not evaluated
    quality: dict | None = None  # {"values": {...}, "not_computed": {...}, "feature_extractor": str}
    mask_consistency: dict[str, Interval] | None = None  # metric -> interval, baseline model on synthetic pairs
    mask_consistency_model: str | None = None
    decision: dict | None = None  # promotion decision (ganseg.evaluation.promotion.Decision.as_dict())
    overlays: dict[str, str] = field(default_factory=dict)  # variant -> path relative to the report
    # variant -> (earlier variant with exactly the same weights, whether fine-tuning kept its start)
    identical: dict[str, tuple[str, bool]] = field(default_factory=dict)
    # variant -> how many test images it learned from (ganseg.data.provenance); None = no record
    seen_test_images: dict[str, int | None] = field(default_factory=dict)
    mirror: bool = False  # test-time mirroring: each window's four flips averaged

    def shown(self, variant: str) -> bool:
        """Whether a variant gets its own row: a twin of an earlier one is named, not repeated."""
        return variant not in self.identical


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def metrics_dict(ev: Evaluation) -> dict:
    """``metrics/evaluate.json``: numbers only (what ``dvc metrics diff`` compares)."""
    comparison = ev.comparison
    out: dict = {"test_images": len(comparison.ids), "variants": {}, "differences": {}}
    for variant, summary in comparison.summary.items():
        cell: dict = {}
        for name, interval in summary.items():
            cell[name] = _r(interval.mean)
            cell[f"{name}_low"] = _r(interval.low)
            cell[f"{name}_high"] = _r(interval.high)
        out["variants"][variant] = cell
    for key, diffs in comparison.differences.items():
        cell = {}
        for name, interval in diffs.items():
            cell[name] = _r(interval.mean)
            cell[f"{name}_low"] = _r(interval.low)
            cell[f"{name}_high"] = _r(interval.high)
        out["differences"][key] = cell
    if ev.identical:
        out["identical_weights"] = {variant: twin for variant, (twin, _) in ev.identical.items()}
    if ev.seen_test_images:
        out["test_images_seen_in_training"] = dict(ev.seen_test_images)
    if comparison.variants:
        best = comparison.best("dice")
        out["best_variant"] = best
        out["best_dice"] = _r(comparison.summary[best]["dice"].mean)
    if ev.quality is not None:
        synthetic = dict(ev.quality.get("values", {}))
        if ev.mask_consistency is not None:
            dice = ev.mask_consistency["dice"]
            synthetic.update(mask_consistency_dice=_r(dice.mean), mask_consistency_dice_low=_r(dice.low),
                             mask_consistency_dice_high=_r(dice.high), mask_consistency_n=dice.n)
        out["synthetic"] = synthetic
    return out


def _fmt(value: float, metric: str, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    digits = 2 if base_metric(metric) == "hd95" else 3
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _cell(interval: Interval, metric: str, signed: bool = False) -> str:
    return f"{_fmt(interval.mean, metric, signed)} [{_fmt(interval.low, metric, signed)}, {_fmt(interval.high, metric, signed)}]"


def difference_verdict(interval: Interval, metric: str) -> str:
    if not np.isfinite(interval.low):
        return "n/a"
    if not interval.excludes_zero:
        return "no clear difference"
    better = (interval.low > 0) == higher_is_better(metric)
    return "better" if better else "worse"


def render_markdown(ev: Evaluation) -> str:
    comparison = ev.comparison
    level = f"{ev.confidence:.0%}"
    n = len(comparison.ids)
    lines = [
        "# Evaluation",
        "",
        (f"Test split: {n} images (`{ev.test_folder}`). Every value is the mean over test images with its "
        f"{level} studentized-bootstrap interval over test images ({ev.resamples} resamples). "
        "Dice, IoU, precision and recall: higher is better; HD95 (95th-percentile Hausdorff distance "
        "between outlines, pixels): lower is better. Each image is segmented and scored at its own size"
        f"{' (test-time mirroring: each window averaged over its four flips)' if ev.mirror else ''}; "
        "pixels outside its region of interest count in no metric. Metric definitions: docs/evaluation.md."),
        "",
        "## Segmentation on the test split",
        "",
    ]
    headline = [m for m in METRICS if comparison.summary and m in next(iter(comparison.summary.values()))]
    lines.append("| model | " + " | ".join(LABELS[m] for m in headline) + " |")
    lines.append("|---|" + "---|" * len(headline))
    best = comparison.best("dice") if comparison.variants else None
    twins = {twin: [v for v, (t, _) in ev.identical.items() if t == twin] for twin, _ in ev.identical.values()}
    for variant in filter(ev.shown, comparison.variants):
        name = f"**{variant}**" if variant == best else variant
        name = " = ".join([name, *twins.get(variant, [])])
        cells = [_cell(comparison.summary[variant][m], m) for m in headline]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for variant, reason in ev.missing.items():
        lines.append(f"| {variant} | " + " | ".join("not evaluated" for _ in headline) + " |")
    lines.append("")
    if best:
        lines.append(f"Best model by test Dice: **{best}**.")
    for variant, (twin, kept_start) in ev.identical.items():
        why = "fine-tuning kept its start weights" if kept_start else "the same weights"
        lines.append(f"- `{variant}` = `{twin}` ({why}): one model, one row, no comparison with itself.")
    for variant, seen in ev.seen_test_images.items():
        if seen is None:
            lines.append(f"- `{variant}` records no training images: whether it saw test images is unknown.")
        elif seen > 0:
            lines.append(f"- warning: `{variant}` trained on {seen} of these {n} test images: its values are optimistic.")
    for variant, reason in ev.missing.items():
        lines.append(f"- `{variant}` not evaluated: {reason}.")
    lines += ["", "![Test metrics with intervals](evaluate/chart.png)", ""]

    if ev.num_classes > 1 and comparison.variants:
        per_class = [k for k in comparison.metric_names if k.startswith("dice_class")]
        lines += ["### Dice per class", "", "| model | " + " | ".join(per_class) + " |",
                  "|---|" + "---|" * len(per_class)]
        for variant in comparison.variants:
            lines.append(f"| {variant} | " + " | ".join(_cell(comparison.summary[variant][k], k) for k in per_class) + " |")
        lines.append("")

    lines += ["## Did augmentation and fine-tuning help? Paired differences", ""]
    if comparison.differences:
        lines += [
            (f"Difference of per-image values on the same test images (first minus second), {level} "
            "bootstrap interval of the mean difference. *better*/*worse* only when the interval "
            "excludes 0."),
            "",
            "| comparison | " + " | ".join(f"Δ {LABELS[m]}" for m in headline) + " | Dice verdict |",
            "|---|" + "---|" * (len(headline) + 1),
        ]
        for key, diffs in comparison.differences.items():
            later, earlier = key.split("_vs_")
            if not (ev.shown(later) and ev.shown(earlier)):
                continue  # a twin's differences are its original's, or zero
            cells = [_cell(diffs[m], m, signed=True) for m in headline]
            lines.append(f"| {later} − {earlier} | " + " | ".join(cells) + f" | {difference_verdict(diffs['dice'], 'dice')} |")
        lines += [
            "",
            ("These intervals cover the choice of test images for this one run (one seed). A claim that "
            "GAN augmentation or adversarial fine-tuning helps needs the difference to hold across "
            "seeds: run the pipeline for several seeds and aggregate them "
            "(`python -m pipelines aggregate`, see docs/evaluation.md)."),
            "",
        ]
    else:
        lines += ["Only one model was evaluated: nothing to compare.", ""]

    lines += ["## Synthetic data quality", ""]
    if ev.quality is None:
        lines += ["Not computed (no synthetic data, or `evaluate.synthetic_quality.enabled: false`).", ""]
    else:
        lines += _quality_lines(ev)

    lines += ["## Model registry", ""]
    lines += _registry_lines(ev.decision)

    if ev.overlays:
        lines += [
            "## Best and worst test predictions",
            "",
            ("Per model, the test images with the highest (top row) and lowest (bottom row) Dice. "
            "Green: foreground found; orange: false positive; blue: missed; magenta: wrong class."),
            "",
        ]
        for variant, path in ev.overlays.items():
            lines += [f"### {variant}", "", f"![{variant} best and worst]({path})", ""]
    lines += ["## Per-image values", "", "`evaluate/per_image.csv`: one row per model and test image.", ""]
    return "\n".join(lines)


def _quality_lines(ev: Evaluation) -> list[str]:
    values = ev.quality.get("values", {})
    missing = ev.quality.get("not_computed", {})
    lines = []
    if "fid" in values:
        from ganseg.metrics.image_quality import FID_MIN_N

        n = values["n_synthetic"]
        lines += [
            (f"Inception features: `{ev.quality.get('feature_extractor')}`. Both rows use the same N = {n} images "
            "per side, drawn by seed: the smallest of the synthetic, real held-out and real training images "
            "available and `evaluate.synthetic_quality.max_images`; the same training images serve both rows. "
            "FID is biased upwards at small N and comparable only at equal N; KID is unbiased (± is its spread "
            f"over {values.get('kid_subsets')} subsets of {values.get('kid_subset_size')}: 0 when a subset is the "
            "whole set). The reference row compares two real samples (train vs held-out val + test) with the "
            "same protocol and N: the floor a perfect generator would reach."),
            "",
        ]
        if n < FID_MIN_N:
            lines += [
                (f"**N = {n} < {FID_MIN_N}: much of each FID here is small-N bias** (two disjoint samples of real "
                "DSB 2018 images give FID 183 at N 16, 133 at N 48, 103 at N 64). Compare the synthetic row with the "
                f"reference row or with FIDs at N = {n}, never with FIDs at another N."),
                "",
            ]
        lines += [
            "| pair | N | FID | KID |",
            "|---|---|---|---|",
            (f"| synthetic vs real train | {values['n_synthetic']} vs {values['n_real']} | {values['fid']:.2f} | "
            f"{values['kid']:.4f} ± {values['kid_std']:.4f} |"),
        ]
        if "reference_fid" in values:
            lines.append(
                f"| real held-out vs real train (reference) | {values['reference_n']} vs {values['n_real']} | "
                f"{values['reference_fid']:.2f} | {values['reference_kid']:.4f} ± {values.get('reference_kid_std', 0):.4f} |"
            )
        lines.append("")
    if values.get("inception_score") is not None:
        n_is, splits = values.get("inception_score_n"), values.get("inception_score_splits")
        text = (f"Inception Score of the synthetic images: {values['inception_score']:.3f} ± "
                f"{values.get('inception_score_std', 0):.3f} (N {n_is}, {splits} splits; compare only between runs "
                "at the same N and splits: it rewards ImageNet-like images).")
        if n_is and splits and n_is / splits < 1008:  # 1008: the classifier's classes
            text += (f" At N {n_is} in {splits} splits IS cannot exceed {n_is / splits:.1f} by construction: a split's "
                     "score is at most its number of images.")
        lines.append(text)
    for metric, reason in missing.items():
        lines.append(f"- {metric}: not computed: {reason}")
    if ev.mask_consistency is not None:
        dice = ev.mask_consistency["dice"]
        lines += [
            "",
            (f"Mask consistency: the `{ev.mask_consistency_model}` model (trained on real pairs only) segments "
            f"the synthetic images; Dice against their synthetic masks: {_cell(dice, 'dice')} over {dice.n} "
            "pairs. Close to its test Dice above = the masks fit their images as real masks do."),
        ]
    lines.append("")
    return lines


def _registry_lines(decision: dict | None) -> list[str]:
    """The registry's state after this run, which a forced re-run reproduces byte for byte.

    What this run *did* (promoted / kept / challenger, aliases moved) differs between a first
    run and a re-run; it is logged to the MLflow run and printed, not written here.
    """
    if decision is None:
        return ["Registry not updated (`evaluate.registry.enabled: false`).", ""]
    rule = [(f"Rule: {decision['rule']} (docs/evaluation.md). Each run's decision and both scores are in its "
            "MLflow run (tag `ganseg.registry.decision`, metrics `registry/*`, artifact `evaluate/promotion.json`)."),
            ""] if decision.get("rule") else []
    if decision.get("action") in ("skipped", "refused"):
        return [f"Registry not updated: {decision.get('reason')}.", "", *rule]
    name, variant = decision["model_name"], decision["candidate_variant"]
    candidate = f"version {decision['candidate_version']} ({variant}, this run's best, test Dice {decision['candidate_dice']:.4f})"
    if decision["action"] in ("promoted", "kept"):
        lines = [f"`{name}@champion` is {candidate}."]
    else:
        champion_dice = decision.get("champion_dice")
        score = f"test Dice {champion_dice:.4f} on this split" if champion_dice is not None else "not evaluated on this split"
        lines = [
            (f"`{name}@champion` stays version {decision['champion_version_before']} ({score}); "
            f"`{name}@challenger` is {candidate}."),
            "",
            f"Why: {decision['reason']}.",
        ]
    difference = decision.get("difference") or {}
    # Only a challenger's: a promotion's re-run reads "kept", and the report must not change.
    if difference.get("mean") is not None and decision["action"] == "challenger":
        lines += ["", (f"Candidate − champion test Dice on the same {difference['n']} images: "
                  f"{difference['mean']:+.4f} [{difference['low']:+.4f}, {difference['high']:+.4f}].")]
    return [*lines, "", *rule]
