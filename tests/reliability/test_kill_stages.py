"""SIGKILL every stage of the real pipeline, and separately its `dvc repro` parent, then `dvc repro`.

For each trial a stage is forced to run alone (`dvc repro -f -s STAGE`) and killed at a seeded
random moment of its life (startup, MLflow run creation, training, writing outputs: the moment is
drawn uniformly over the stage's duration measured in a first, complete `dvc repro`). Half the
trials kill the stage process, half the `dvc` process that started it (the stage must then stop
by itself, see pipelines/dvc_parent.py). The recovery is a plain `dvc repro`, with no clean-up
by hand: it must run the stage again (each killed run is new work to DVC, see _make_new_work),
succeed and leave `dvc status` clean. At the end no MLflow run is RUNNING and
no temporary file is left in the outputs.

`GANSEG_KILL_TRIALS` sets the trials per stage (default 5: 3 of one kind and 2 of the other,
alternating between stages); 10 gives 5 of each kind per stage.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml

from pipelines.dvc_parent import process_alive
from tests.tiny_project import DVC, dvc, make_tiny_project, mlflow_runs

TRIALS_PER_STAGE = int(os.environ.get("GANSEG_KILL_TRIALS", "5"))
SEED = 20261123


def _stage_names(repo: Path) -> list[str]:
    names = []
    for name, stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].items():
        items = stage.get("foreach") or []
        names += [f"{name}@{item}" for item in items] if items else [name]
    return names


def _stage_process(dvc_process: psutil.Process) -> psutil.Process | None:
    """The `python -m pipelines ...` process DVC started (a shell may sit in between)."""
    try:
        for child in dvc_process.children(recursive=True):
            try:
                if "pipelines" in child.cmdline():
                    return child
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return None


def _start_dvc(repo: Path, env: dict, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(DVC), "repro", *args], cwd=repo, env=env, stdout=open(log, "a"),
                            stderr=subprocess.STDOUT)


def _durations(repo: Path, env: dict, log: Path) -> dict[str, float]:
    """Run the whole pipeline once, timing each stage process from first sight to exit."""
    started = _start_dvc(repo, env, log)
    watched, seen = psutil.Process(started.pid), {}
    while started.poll() is None:
        stage = _stage_process(watched)
        if stage is not None:
            try:
                name = stage.environ()["DVC_STAGE"]
            except (psutil.Error, KeyError):
                continue
            first = time.monotonic()
            while process_alive(stage):
                time.sleep(0.02)
            seen[name] = time.monotonic() - first
        time.sleep(0.02)
    assert started.returncode == 0, log.read_text()[-3000:]
    return seen


def _make_new_work(repo: Path, stage: str, mark: str) -> None:
    """Give ``stage``'s command a new shell comment, so that DVC sees a stage it never ran.

    With the stage's earlier result in DVC's cache, `dvc repro` would restore that instead of
    running the stage. A changed command is new work, as a params change is in real use: the
    recovery must run the stage and cope with what the kill left behind (a checkpoint to resume,
    temporaries, an MLflow run still marked RUNNING). The comment changes nothing the stage
    computes, so stages downstream re-run only if its outputs differ.
    """
    dvc_yaml = repo / "dvc.yaml"
    pipeline = yaml.safe_load(dvc_yaml.read_text())
    name, _, item = stage.partition("@")
    definition = pipeline["stages"][name]
    target = definition["do"] if item else definition
    # The items of a foreach stage share one command: all of them become new work.
    target["cmd"] = f"{target['cmd'].split(' # ')[0]} # {mark}"
    dvc_yaml.write_text(yaml.safe_dump(pipeline, sort_keys=False))


def _kill_once(repo: Path, env: dict, log: Path, stage: str, kind: str, fraction: float, duration: float,
               trial_mark: str) -> dict:
    """Force ``stage`` to run alone, SIGKILL it (or its dvc) ``fraction`` of the way through."""
    _make_new_work(repo, stage, trial_mark)
    started = _start_dvc(repo, env, log, "-f", "-s", stage)
    watched = psutil.Process(started.pid)
    deadline = time.monotonic() + 120
    process = None
    while process is None:
        assert time.monotonic() < deadline and started.poll() is None, f"{stage} never started:\n{log.read_text()[-2000:]}"
        process = _stage_process(watched)
        time.sleep(0.01)
    time.sleep(fraction * duration)
    # Kill only while the stage runs. Once it has ended, DVC writes dvc.lock in place
    # (`open(path, "w+")` in DVC 3.67), and a kill then can truncate the lock: a DVC limit
    # this test does not measure (docs/reliability.md says how to recover). A miss is retried.
    hit = process_alive(process)
    if hit:
        try:
            (process if kind == "stage" else watched).send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:  # it ended between the check and the kill: nothing was hit
            hit = False
    started.wait(timeout=120)
    # With its dvc parent dead the stage must stop on its own (SIGTERM from its watch).
    stopped_after = time.monotonic()
    while process_alive(process):
        assert time.monotonic() - stopped_after < 30, f"{stage} ran on for 30 s after its dvc parent was killed"
        time.sleep(0.05)
    return {"hit": hit, "orphan_s": time.monotonic() - stopped_after}


def _temporaries(repo: Path) -> list[Path]:
    # ganseg.io names its temporaries `.<name>.<pid>.*`; none may survive into DVC's outputs.
    folders = ["data", "models", "reports", "metrics", "plots"]
    return [path for folder in folders if (repo / folder).exists()
            for path in (repo / folder).rglob(".*") if re.fullmatch(r"\..+\.\d+\..+", path.name)]


@pytest.mark.reliability
@pytest.mark.timeout(3600)
def test_sigkill_of_a_stage_or_its_dvc_parent_is_recovered_by_dvc_repro(tmp_path):
    repo, env = make_tiny_project(tmp_path / "repo", socket_guard=False)
    log = tmp_path / "dvc.log"
    durations = _durations(repo, env, log)
    stages = _stage_names(repo)
    assert set(stages) <= set(durations), durations

    rng = random.Random(SEED)
    results = []
    for trial in range(TRIALS_PER_STAGE):
        for index, stage in enumerate(stages):
            kind = "stage" if (trial + index) % 2 == 0 else "parent"
            fraction = rng.uniform(0.0, 0.95)
            killed = _kill_once(repo, env, log, stage, kind, fraction, durations[stage], f"trial-{trial}-{index}-0")
            for attempt in range(1, 4):  # the stage outran its calibrated duration: a kill that hit nothing
                if killed["hit"]:
                    break
                fraction /= 2
                killed = _kill_once(repo, env, log, stage, kind, fraction, durations[stage],
                                    f"trial-{trial}-{index}-{attempt}")
            recovery = dvc(repo, env, "repro", timeout=600)
            rerun = [line.split("'")[1] for line in recovery.stdout.splitlines() if line.startswith("Running stage")]
            status = dvc(repo, env, "status")
            clean = recovery.returncode == 0 and "up to date" in status.stdout
            results.append({"stage": stage, "kind": kind, "fraction": fraction, "clean": clean, "rerun": rerun,
                            **killed})
            assert clean and stage in rerun, (f"{stage}, {kind} killed at {fraction:.2f}: repro exit {recovery.returncode}\n"
                           f"{recovery.stdout[-2000:]}{recovery.stderr[-2000:]}\n{status.stdout}")

    running = [run.info.run_id for run in mlflow_runs(repo) if run.info.status == "RUNNING"]
    print(f"\nSIGKILL then `dvc repro` ({TRIALS_PER_STAGE} trials per stage, seed {SEED}):")
    for stage in stages:
        for kind in ("stage", "parent"):
            mine = [r for r in results if r["stage"] == stage and r["kind"] == kind]
            if mine:
                moments = ", ".join(f"{r['fraction']:.2f}" for r in mine)
                print(f"  {stage:16s} kill {kind:6s}: {sum(r['clean'] for r in mine)}/{len(mine)} recovered "
                      f"(at {moments} of the stage's duration)")
    downstream = sum(len(r["rerun"]) - 1 for r in results)
    print(f"  recoveries re-ran the killed stage {sum(r['stage'] in r['rerun'] for r in results)}/{len(results)} times, "
          f"and {downstream} downstream stages in all")
    orphans = [r["orphan_s"] for r in results if r["kind"] == "parent"]
    print(f"  stage stopped after its dvc parent died: within {max(orphans):.1f} s (max of {len(orphans)})")
    print(f"  total {sum(r['clean'] for r in results)}/{len(results)} recovered; "
          f"RUNNING MLflow runs left: {len(running)}; temporaries in outputs: {len(_temporaries(repo))}")
    assert all(r["clean"] and r["hit"] for r in results)
    assert running == []
    assert _temporaries(repo) == []
