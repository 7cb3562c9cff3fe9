"""Across seeds: one table from several runs of the whole pipeline that differ only in the seed.

Input: runs, each with its flattened params and its ``metrics/evaluate.json``. Runs are grouped
by every param except ``common.seed``; within a group each seed is one independent
replicate of the whole pipeline (data split, GAN, U-Net), so the spread across seeds is the
honest uncertainty of a claim about the *method* (the per-run bootstrap intervals only cover
the choice of test images).

Per model and metric: mean over seeds, standard deviation, min/max and a Student-t interval
of the mean (n - 1 degrees of freedom). Per comparison (e.g. synthetic - real): the same
over the per-seed mean differences, plus in how many seeds the per-run bootstrap interval
excluded 0. A claim is made only when it holds across seeds (:func:`verdict`), in the
metric's direction: a positive HD95 difference (pixels, lower is better) worsens.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganseg.errors import DataError
from ganseg.evaluation.bootstrap import Interval, t_interval
from ganseg.evaluation.scores import higher_is_better

SEED_KEY = "common.seed"

MIN_SEEDS_FOR_CLAIM = 2


@dataclass(frozen=True)
class SeedRun:
    name: str  # experiment name or file the metrics came from
    params: dict[str, Any]  # flattened: {"common.seed": 1, "train.epochs": 5, ...}
    metrics: dict[str, Any]  # the content of metrics/evaluate.json

    @property
    def seed(self) -> Any:
        return self.params.get(SEED_KEY)


@dataclass(frozen=True)
class Spread:
    values: tuple[float, ...]  # one per seed, in seed order
    interval: Interval  # mean and t-interval over seeds
    std: float

    def as_dict(self) -> dict:
        finite = [v for v in self.values if np.isfinite(v)]
        return {
            **self.interval.as_dict(),
            "std": None if not np.isfinite(self.std) else round(self.std, 6),
            "min": round(min(finite), 6) if finite else None,
            "max": round(max(finite), 6) if finite else None,
            "per_seed": [None if not np.isfinite(v) else round(v, 6) for v in self.values],
        }


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def runs_from_exp_show(entries: list[dict], metrics_file: str = "metrics/evaluate.json",
                       names: set[str] | None = None, include_baselines: bool = False) -> list[SeedRun]:
    """SeedRuns from ``dvc exp show --json``: every experiment (and optionally each baseline commit)."""
    runs: list[SeedRun] = []
    seen: set[str] = set()

    def add(record: dict, label: str | None) -> None:
        data = record.get("data") or {}
        metrics = ((data.get("metrics") or {}).get(metrics_file) or {}).get("data")
        if not metrics or record.get("error") or record.get("rev") in seen:
            return
        if names is not None and label not in names:
            return
        params: dict[str, Any] = {}
        for content in (data.get("params") or {}).values():
            params.update(flatten(content.get("data") or {}))
        seen.add(record.get("rev"))
        runs.append(SeedRun(name=label or str(record.get("rev"))[:7], params=params, metrics=metrics))

    for baseline in entries:
        if baseline.get("rev") == "workspace":
            continue
        if include_baselines:
            add(baseline, baseline.get("name") or str(baseline.get("rev"))[:7])
        for experiment in baseline.get("experiments") or []:
            revs = experiment.get("revs") or []
            if revs:
                add(revs[0], experiment.get("name") or revs[0].get("name"))
    return runs


def run_from_folder(folder: Path, metrics_file: str = "metrics/evaluate.json") -> SeedRun:
    """A SeedRun from a project folder: its ``params.yaml`` and its evaluate metrics file."""
    import yaml

    folder = Path(folder)
    try:
        params = yaml.safe_load((folder / "params.yaml").read_text()) or {}
        metrics = json.loads((folder / metrics_file).read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise DataError(f"{folder}: needs params.yaml and {metrics_file} ({type(exc).__name__}: {exc})") from None
    return SeedRun(name=folder.name, params=flatten(params), metrics=metrics)


def group_by_params(runs: list[SeedRun]) -> list[list[SeedRun]]:
    """Runs sharing every param but the seed; within a group one run per seed (the first)."""
    groups: dict[str, dict[Any, SeedRun]] = defaultdict(dict)
    for run in runs:
        if run.seed is None:
            raise DataError(f"experiment {run.name}: params have no {SEED_KEY}")
        key = json.dumps({k: v for k, v in sorted(run.params.items()) if k != SEED_KEY}, default=str)
        groups[key].setdefault(run.seed, run)
    return [sorted(group.values(), key=lambda r: str(r.seed)) for group in groups.values()]


def differing_params(groups: list[list[SeedRun]]) -> list[dict[str, Any]]:
    """For each group, the params whose value is not shared by every group (what sets it apart)."""
    if len(groups) < 2:
        return [{} for _ in groups]
    firsts = [g[0].params for g in groups]
    keys = {k for p in firsts for k in p if k != SEED_KEY}
    varying = sorted(k for k in keys if len({json.dumps(p.get(k), default=str) for p in firsts}) > 1)
    return [{k: p.get(k) for k in varying} for p in firsts]


def over_seeds(values: list[float], confidence: float) -> Spread:
    array = np.array(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    std = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
    return Spread(tuple(float(v) for v in array), t_interval(array, confidence), std)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else float("nan")


def aggregate(group: list[SeedRun], metrics: list[str], confidence: float = 0.95) -> dict:
    """Mean, spread and t-interval over the seeds of one group; a verdict per comparison."""
    variants = list(dict.fromkeys(v for run in group for v in (run.metrics.get("variants") or {})))
    comparisons = list(dict.fromkeys(c for run in group for c in (run.metrics.get("differences") or {})))
    table: dict[str, Any] = {"seeds": [run.seed for run in group], "runs": [run.name for run in group],
                             "variants": {}, "differences": {}}
    for variant in variants:
        table["variants"][variant] = {
            metric: over_seeds([_number((run.metrics.get("variants") or {}).get(variant, {}).get(metric)) for run in group],
                            confidence)
            for metric in metrics
        }
    for comparison in comparisons:
        per_metric = {}
        for metric in metrics:
            cells = [(run.metrics.get("differences") or {}).get(comparison, {}) for run in group]
            spread = over_seeds([_number(c.get(metric)) for c in cells], confidence)
            lows = [_number(c.get(f"{metric}_low")) for c in cells]
            highs = [_number(c.get(f"{metric}_high")) for c in cells]
            per_metric[metric] = {
                "spread": spread,
                "seeds_above_zero": sum(1 for low in lows if low > 0),
                "seeds_below_zero": sum(1 for high in highs if high < 0),
                "verdict": verdict(spread, metric),
            }
        table["differences"][comparison] = per_metric
    synthetic_keys = sorted({k for run in group for k, v in (run.metrics.get("synthetic") or {}).items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)})
    table["synthetic"] = {
        key: over_seeds([_number((run.metrics.get("synthetic") or {}).get(key)) for run in group], confidence)
        for key in synthetic_keys
    }
    return table


def verdict(spread: Spread, metric: str) -> str:
    """``improves`` / ``worsens`` only when every seed agrees on the sign and the t-interval
    of the mean difference excludes 0; otherwise no claim. Which sign improves is the metric's
    (:func:`ganseg.evaluation.scores.higher_is_better`): a lower HD95 improves."""
    values = np.array(spread.values)
    values = values[np.isfinite(values)]
    if len(values) < MIN_SEEDS_FOR_CLAIM:
        return f"no claim (needs >= {MIN_SEEDS_FOR_CLAIM} seeds)"
    if (values > 0).all() and spread.interval.low > 0:
        return "improves" if higher_is_better(metric) else "worsens"
    if (values < 0).all() and spread.interval.high < 0:
        return "worsens" if higher_is_better(metric) else "improves"
    return "no consistent effect"


def as_json(table: dict) -> dict:
    def convert(value: Any) -> Any:
        if isinstance(value, Spread):
            return value.as_dict()
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(table)
