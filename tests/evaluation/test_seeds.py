"""Aggregation over seeds: grouping, t-intervals and the across-seed verdict."""

import numpy as np
import pytest
from scipy import stats

from ganseg.evaluation.seeds import (
    SeedRun,
    aggregate,
    group_by_params,
    over_seeds,
    runs_from_exp_show,
    verdict,
)


def _metrics(real: float, synthetic: float, low: float, high: float) -> dict:
    return {
        "variants": {"real": {"dice": real}, "synthetic": {"dice": synthetic}},
        "differences": {"synthetic_vs_real": {"dice": synthetic - real, "dice_low": low, "dice_high": high}},
        "synthetic": {"fid": 50.0 + real, "best_variant_is_text": 1, "note": "text is ignored"},
    }


def _exp(rev: str, name: str, seed: int, metrics: dict, epochs: int = 5) -> dict:
    return {"rev": rev, "name": name, "error": None, "data": {
        "params": {"params.yaml": {"data": {"common": {"seed": seed}, "train": {"epochs": epochs}}}},
        "metrics": {"metrics/evaluate.json": {"data": metrics}}}}


def _exp_show(experiments: list[dict], baseline_seed: int = 42) -> list[dict]:
    baseline = _exp("base", "main", baseline_seed, _metrics(0.70, 0.71, -0.01, 0.03))
    return [
        {"rev": "workspace", "name": None, "data": baseline["data"], "error": None, "experiments": None},
        {**baseline, "experiments": [{"name": e["name"], "revs": [e]} for e in experiments]},
    ]


def test_runs_come_from_experiments_and_optionally_baselines():
    entries = _exp_show([_exp("a", "exp-a", 1, _metrics(0.7, 0.72, 0.01, 0.03)),
                         _exp("b", "exp-b", 2, _metrics(0.71, 0.74, 0.01, 0.05))])
    runs = runs_from_exp_show(entries)
    assert [r.name for r in runs] == ["exp-a", "exp-b"] and [r.seed for r in runs] == [1, 2]
    assert len(runs_from_exp_show(entries, include_baselines=True)) == 3
    assert [r.name for r in runs_from_exp_show(entries, names={"exp-b"})] == ["exp-b"]


def test_groups_split_on_every_param_but_the_seed():
    runs = [SeedRun("a", {"common.seed": 1, "train.epochs": 5}, {}), SeedRun("b", {"common.seed": 2, "train.epochs": 5}, {}),
            SeedRun("c", {"common.seed": 1, "train.epochs": 9}, {}), SeedRun("d", {"common.seed": 1, "train.epochs": 5}, {})]
    groups = group_by_params(runs)
    assert sorted(len(g) for g in groups) == [1, 2]  # "d" repeats seed 1 of its group: counted once


def test_aggregate_matches_numpy_and_scipy():
    runs = [SeedRun(f"e{s}", {"common.seed": s}, _metrics(r, y, lo, hi)) for s, r, y, lo, hi in
            [(1, 0.70, 0.73, 0.01, 0.05), (2, 0.72, 0.74, 0.005, 0.04), (3, 0.69, 0.725, 0.02, 0.05)]]
    table = aggregate(runs, ["dice"], 0.95)
    real = table["variants"]["real"]["dice"]
    values = np.array([0.70, 0.72, 0.69])
    assert real.interval.mean == pytest.approx(values.mean()) and real.std == pytest.approx(values.std(ddof=1))
    low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    assert (real.interval.low, real.interval.high) == (pytest.approx(low), pytest.approx(high))
    diff = table["differences"]["synthetic_vs_real"]["dice"]
    assert diff["seeds_above_zero"] == 3 and diff["verdict"] == "improves"
    assert set(table["synthetic"]) == {"fid", "best_variant_is_text"}  # numbers only


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.02, 0.03, 0.025], "improves"),
        ([-0.02, -0.03, -0.025], "worsens"),
        ([0.05, -0.01, 0.04], "no consistent effect"),  # one seed disagrees
        ([0.001, 0.2, 0.002], "no consistent effect"),  # same sign, but the interval includes 0
        ([0.05], "no claim (needs >= 2 seeds)"),
    ],
)
def test_verdict_needs_every_seed_and_the_interval(values, expected):
    assert verdict(over_seeds(values, 0.95), "dice") == expected


@pytest.mark.parametrize(
    ("metric", "values", "expected"),
    [
        ("hd95", [1.0, 1.2, 0.9], "worsens"),  # pixels further off in every seed
        ("hd95", [-1.0, -1.2, -0.9], "improves"),
        ("hd95_class2", [1.0, 1.2, 0.9], "worsens"),
        ("hd95", [1.0, -1.2, 0.9], "no consistent effect"),
        ("iou", [0.02, 0.03, 0.025], "improves"),
    ],
)
def test_verdict_follows_the_metric_direction(metric, values, expected):
    assert verdict(over_seeds(values, 0.95), metric) == expected


def test_aggregate_judges_hd95_as_lower_is_better():
    runs = []
    for seed, shift in ((1, 1.0), (2, 1.2), (3, 0.9)):
        metrics = _metrics(0.70, 0.73, 0.01, 0.05)
        metrics["differences"]["synthetic_vs_real"].update(hd95=shift, hd95_low=shift - 0.5, hd95_high=shift + 0.5)
        runs.append(SeedRun(f"e{seed}", {"common.seed": seed}, metrics))
    differences = aggregate(runs, ["dice", "hd95"], 0.95)["differences"]["synthetic_vs_real"]
    assert differences["dice"]["verdict"] == "improves"
    assert differences["hd95"]["verdict"] == "worsens" and differences["hd95"]["seeds_above_zero"] == 3
