"""Command ``aggregate``: one table over several seeds of the whole pipeline.

    dvc exp run --queue -S common.seed=1
    dvc exp run --queue -S common.seed=2
    dvc exp run --queue -S common.seed=3
    dvc queue start --jobs 1 && dvc queue status      # wait until all are done
    python -m pipelines aggregate                       # -> reports/seeds.md, reports/seeds.json

Reads ``dvc exp show --json`` (or a saved copy with ``--from-json``, or project folders given
with ``--run``, e.g. one checkout per seed run elsewhere), takes every experiment's
``metrics/evaluate.json`` and params, groups experiments that differ only in ``common.seed``
and writes, per group: mean, standard deviation, min/max and a Student-t interval over seeds
for every model and metric, and the same for the paired differences with a verdict that claims
an improvement only when it holds across seeds, in the metric's direction (a lower HD95
improves; ``ganseg.evaluation.seeds``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ganseg import io
from ganseg.errors import DataError, GansegError
from ganseg.evaluation import seeds
from ganseg.evaluation.names import LABELS, METRICS
from pipelines.stage import DebugOption

app = typer.Typer(help="Aggregate DVC experiments that differ only in common.seed into one table.")


@app.callback(invoke_without_command=True)
def aggregate(
    from_json: Annotated[
        Path | None, typer.Option("--from-json", help="A saved `dvc exp show --json` output (default: run it).")
    ] = None,
    run_dirs: Annotated[
        list[Path] | None,
        typer.Option("--run", help="Instead of DVC experiments: a project folder with params.yaml and the "
                                   "metrics file (repeat the option; e.g. one checkout per seed)."),
    ] = None,
    names: Annotated[
        list[str] | None, typer.Option("--exp", help="Only these experiment names (repeat the option).")
    ] = None,
    include_baselines: Annotated[
        bool, typer.Option(help="Also count each baseline commit (its own seed) as a run.")
    ] = False,
    metrics_file: Annotated[str, typer.Option(help="The evaluate stage's metrics file.")] = "metrics/evaluate.json",
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Level of the t-interval.")] = 0.95,
    out: Annotated[Path, typer.Option(help="Markdown table; a .json twin is written beside it.")] = Path("reports/seeds.md"),
    debug: DebugOption = False,
) -> None:
    """Write one table (mean, spread, interval over seeds) per group of experiments."""
    try:
        if run_dirs:
            runs = [seeds.run_from_folder(folder, metrics_file) for folder in run_dirs]
        else:
            entries = json.loads(Path(from_json).read_text()) if from_json else dvc_exp_show()
            runs = seeds.runs_from_exp_show(entries, metrics_file, set(names) if names else None, include_baselines)
        if not runs:
            raise DataError(
                f"no experiment with {metrics_file} found; run e.g. `dvc exp run --queue -S common.seed=1` "
                "for a few seeds and `dvc queue start` first"
            )
        groups = seeds.group_by_params(runs)
        labels = seeds.differing_params(groups)
        tables = [seeds.aggregate(group, list(METRICS), confidence) for group in groups]
        io.write_text(out, render(tables, labels, confidence))
        io.write_json(out.with_suffix(".json"), [
            {"params": label, **seeds.as_json(table)} for table, label in zip(tables, labels)
        ])
    except GansegError as exc:
        _fail(str(exc))
    except Exception as exc:
        if debug:
            raise
        _fail(f"{type(exc).__name__}: {exc} (re-run with --debug for the traceback)")
    for table in tables:
        print(f"aggregate: {len(table['seeds'])} seed(s) {table['seeds']}")
    print(f"aggregate: {len(runs)} run(s) in {len(groups)} group(s) -> {out}")


def dvc_exp_show() -> list[dict]:
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GansegError(f"`dvc exp show --json` failed: {last}")
    return json.loads(done.stdout)


def _fmt(value: float | None, metric: str, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    digits = 2 if metric.startswith("hd95") else 3
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _cell(spread: seeds.Spread, metric: str, signed: bool = False) -> str:
    i = spread.interval
    if i.n < 2:
        return _fmt(i.mean, metric, signed)
    return f"{_fmt(i.mean, metric, signed)} ± {_fmt(spread.std, metric)} [{_fmt(i.low, metric, signed)}, {_fmt(i.high, metric, signed)}]"


def render(tables: list[dict], labels: list[dict], confidence: float) -> str:
    level = f"{confidence:.0%}"
    lines = [
        "# Across seeds",
        "",
        (f"Each cell: mean over seeds ± standard deviation [{level} Student-t interval of the mean]. "
        "A seed is one run of the whole pipeline (split, GAN, U-Net). Verdicts: *improves* / *worsens* only "
        "when the difference has the same sign in every seed and its interval over seeds excludes 0; "
        "Dice and IoU improve upwards, HD95 (pixels) improves downwards."),
        "",
    ]
    for table, label in zip(tables, labels):
        title = ", ".join(f"{k}={v}" for k, v in label.items()) or "all experiments"
        lines += [f"## {title}", "", (f"Seeds: {', '.join(str(s) for s in table['seeds'])} "
                  f"(experiments: {', '.join(table['runs'])})"), ""]
        lines += ["| model | " + " | ".join(LABELS[m] for m in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for variant, cells in table["variants"].items():
            lines.append(f"| {variant} | " + " | ".join(_cell(cells[m], m) for m in METRICS) + " |")
        lines.append("")
        if table["differences"]:
            lines += [("| comparison | Δ Dice | seeds with per-run interval > 0 / < 0 | Dice verdict | Δ IoU | Δ HD95 (px) "
                      "| HD95 verdict |"), "|---|---|---|---|---|---|---|"]
            n = len(table["seeds"])
            for key, cells in table["differences"].items():
                dice = cells["dice"]
                lines.append(
                    f"| {key.replace('_vs_', ' − ')} | {_cell(dice['spread'], 'dice', True)} | "
                    f"{dice['seeds_above_zero']}/{n} / {dice['seeds_below_zero']}/{n} | **{dice['verdict']}** | "
                    f"{_cell(cells['iou']['spread'], 'iou', True)} | {_cell(cells['hd95']['spread'], 'hd95', True)} | "
                    f"**{cells['hd95']['verdict']}** |"
                )
            lines.append("")
        if table["synthetic"]:
            shown = [k for k in ("fid", "kid", "reference_fid", "reference_kid", "inception_score", "mask_consistency_dice")
                     if k in table["synthetic"]]
            lines += ["| synthetic data | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown),
                      "| over seeds | " + " | ".join(_cell(table["synthetic"][k], k) for k in shown) + " |", ""]
    return "\n".join(lines)


def _fail(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"error: {first}", file=sys.stderr)
    raise typer.Exit(1)
