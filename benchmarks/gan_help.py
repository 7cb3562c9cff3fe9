"""Does GAN augmentation help at few labels? The whole pipeline on DSB 2018 (or, with
``--embedded``, on params.yaml's own few-label data), once per seed.

    .venv/bin/python benchmarks/gan_help.py --seeds 1 2 3 --out /tmp/gan_help
    .venv/bin/python benchmarks/gan_help.py --seeds 1 2 3 --out /tmp/no_diffaug \\
        --set augment.objective.diffaugment=[]            # one row of an ablation
    .venv/bin/python benchmarks/gan_help.py --embedded --seeds 1 2 3 --out /tmp/spade \\
        --set augment.model=spade                         # the embedded default data (minutes a seed)

Per seed, in ``<out>/seed_<k>``: ``params.yaml`` (params.yaml + ``params/dsb.overrides`` + the
seed + every ``--set``), then the stages exactly as ``dvc.yaml`` runs them (its ``cmd`` lines:
prepare, augment, train real, train synthetic, finetune, evaluate). Every seed shares one test
split (``prepare.split.test_seed``); the seed moves the labelled/validation/unlabeled draw, the
GAN and the U-Nets. Then ``aggregate --run`` over the seed folders writes
``<out>/seeds.md``: per model the mean over seeds with a Student-t interval, and per comparison
(synthetic - real, adversarial - real) the verdict, which claims an effect only when every
seed agrees and the interval over seeds excludes 0. Prints each stage's wall time.

``--set`` values are YAML (``train.steps=600``, ``augment.model=spade``). Use explicit step
counts (``train.steps``, ``augment.steps``) for an ablation on a shared machine: a time budget
plans fewer steps when the CPU is busy, a step count does not.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.quality_bench import DSB, PYTHON, run_checked
from ganseg.config.base import _deep_merge, load_yaml

STAGES = ("prepare", "augment", "train@real", "train@synthetic", "finetune", "evaluate")


def stage_commands(dvc_file: Path) -> dict[str, list[str]]:
    """``dvc.yaml``'s command of each stage (``foreach`` expanded), with our interpreter."""
    spec = yaml.safe_load(dvc_file.read_text())["stages"]
    commands = {}
    for name, stage in spec.items():
        if "foreach" in stage:
            for key, item in stage["foreach"].items():
                cmd = stage["do"]["cmd"].replace("${key}", key)
                for field, value in item.items():
                    cmd = cmd.replace(f"${{item.{field}}}", str(value))
                commands[f"{name}@{key}"] = cmd
        else:
            commands[name] = stage["cmd"]
    out = {}
    for name, cmd in commands.items():
        words = shlex.split(cmd)
        if words[0] == "python":
            words[0] = PYTHON
        out[name] = words
    return out


def dsb_overrides(data: Path) -> list[str]:
    """``params/dsb.overrides`` as ``key=value`` strings, pointing at ``data``."""
    lines = (REPO / "params" / "dsb.overrides").read_text().splitlines()
    return [line.split(maxsplit=1)[1].replace("DSB", str(data)) for line in lines
            if line.startswith("-S ")]


def nested(assignments: list[str]) -> dict:
    """``["a.b=1", "c=[x]"]`` -> ``{"a": {"b": 1}, "c": ["x"]}`` (values parsed as YAML)."""
    tree: dict = {}
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        node = tree
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return tree


def run_seed(folder: Path, params: dict, commands: dict[str, list[str]],
             stages: tuple[str, ...] = STAGES) -> dict[str, float]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    times = {}
    for stage in stages:
        if (folder / "done" / stage).exists():  # a rerun after a kill skips finished stages
            continue
        start = time.perf_counter()
        run_checked(commands[stage], folder, folder / f"{stage.replace('@', '_')}.log", f"{folder.name} {stage}")
        times[stage] = round(time.perf_counter() - start, 1)
        (folder / "done").mkdir(exist_ok=True)
        (folder / "done" / stage).write_text(str(times[stage]))
        print(f"{folder.name} {stage}: {times[stage]:.0f} s", flush=True)
    return times


def seeds_arguments(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """The options every seeds protocol takes (``--seeds --set --data --embedded --out``)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", dest="sets", action="append", default=[], help="key=value (YAML), repeatable")
    parser.add_argument("--data", type=Path, default=DSB)
    parser.add_argument("--embedded", action="store_true",
                        help="params.yaml's own data (the embedded few-label set) instead of DSB and its overrides")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    return args


def base_params(args: argparse.Namespace, evaluate: dict | None = None) -> dict:
    """params.yaml, then DSB's overrides (unless ``--embedded``), every ``--set``, ``evaluate``
    keys, and no registry (a seed's run must not promote models)."""
    base = load_yaml(REPO / "params.yaml")
    if not args.embedded:
        base = _deep_merge(base, nested(dsb_overrides(args.data.resolve())))
    base = _deep_merge(base, nested(args.sets))
    return _deep_merge(base, {"evaluate": {**(evaluate or {}), "registry": {"enabled": False}}})


def seed_params(base: dict, seed: int) -> dict:
    return _deep_merge(base, {"common": {"seed": seed}})


def aggregate_seeds(out: Path, times: dict[int, dict[str, float]]) -> None:
    """``aggregate --run`` over the seed folders -> ``<out>/seeds.md`` (printed), and the stage times."""
    folders = [arg for seed in times for arg in ("--run", str(out / f"seed_{seed}"))]
    run_checked([PYTHON, "-m", "pipelines", "aggregate", *folders, "--out", str(out / "seeds.md")],
                out, out / "aggregate.log", "aggregate")
    (out / "times.json").write_text(json.dumps(times, indent=1))
    print((out / "seeds.md").read_text())


def main(argv: list[str] | None = None) -> None:
    args = seeds_arguments(__doc__, argv)
    base = base_params(args)
    commands = stage_commands(REPO / "dvc.yaml")
    times = {seed: run_seed(args.out / f"seed_{seed}", seed_params(base, seed), commands) for seed in args.seeds}
    aggregate_seeds(args.out, times)


if __name__ == "__main__":
    main()
