"""DSB 2018 at native resolution: the train stage's test Dice at a given share of labelled images
and a given time budget (issue 16's targets), through the real stages.

    .venv/bin/python benchmarks/dsb_native.py --train 0.10 --val 0.15 --minutes 15 --out /tmp/dsb10
    .venv/bin/python benchmarks/dsb_native.py --train 0.80 --val 0.05 --minutes 15 --out /tmp/dsb80
    .venv/bin/python benchmarks/dsb_native.py --train 0.80 --val 0.05 --minutes 50 \
        --set train.patch_size=144 --out /tmp/dsb80long

Runs ``prepare`` (params.yaml + the DSB folder, native sizes, the split), ``train --variant
real`` with ``train.time_budget_minutes`` = ``--minutes`` (everything else planned: patch,
batch, steps, validations, unless ``--set`` fixes it) and ``evaluate`` on the test split (studentized bootstrap interval
over test images; synthetic-image quality and the registry off). The test split is drawn first
with ``prepare.split.test_seed``, so runs with different label shares of one test fraction
share their test images. Prints the wall time of each stage and the test Dice with its
interval; writes ``<out>/dsb_native.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.gan_help import nested
from benchmarks.quality_bench import DSB, PYTHON, run_checked
from ganseg.config.base import _deep_merge, load_yaml


def params_for(args: argparse.Namespace) -> dict:
    test = round(1.0 - args.train - args.val, 6)
    overrides = {
        "prepare": {"source": "folder", "folder": {"images_dir": str(args.data / "images"),
                                                   "masks_dir": str(args.data / "masks")},
                    "split": {"train": args.train, "val": args.val, "test": test, "unlabeled": 0.0}},
        "train": {"time_budget_minutes": args.minutes},
        "evaluate": {"variants": ["real"], "baseline": "real", "synthetic_quality": {"enabled": False},
                     "registry": {"enabled": False}},
    }
    return _deep_merge(load_yaml(REPO / "params.yaml"), _deep_merge(overrides, nested(args.set)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=float, default=0.10, help="share of images labelled for training")
    parser.add_argument("--val", type=float, default=0.15, help="share for validation; the rest is test")
    parser.add_argument("--minutes", type=float, default=15.0, help="train.time_budget_minutes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml override applied last, e.g. train.patch_size=144 (repeatable)")
    parser.add_argument("--data", type=Path, default=DSB)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params_for(args), sort_keys=False))
    times = {}
    for stage, command in [
        ("prepare", ["prepare"]),
        ("train", ["train", "--variant", "real"]),
        ("evaluate", ["evaluate"]),
    ]:
        start = time.perf_counter()
        run_checked([PYTHON, "-m", "pipelines", *command, "--params", "params.yaml"], work, work / f"{stage}.log", stage)
        times[stage] = round(time.perf_counter() - start, 1)
        print(f"{stage}: {times[stage]:.0f} s", flush=True)
    evaluation = json.loads((work / "metrics" / "evaluate.json").read_text())
    trained = json.loads((work / "metrics" / "train_real.json").read_text())
    result = {"split": {"train": args.train, "val": args.val}, "minutes": args.minutes, "set": args.set,
              "times_s": times,
              "plan": trained.get("plan"), "train": trained.get("run"), "data": trained.get("data"),
              "evaluate": evaluation}
    (work / "dsb_native.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"plan": trained.get("plan"), "run": trained.get("run"), "val": trained.get("val")}, indent=1))
    print(json.dumps(evaluation.get("real", evaluation), indent=1)[:1500])
    return result


if __name__ == "__main__":
    main()
