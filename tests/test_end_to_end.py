"""The real pipeline, end to end: CI's retrain script (`dvc repro` + metrics diff) in a copy of the repo.

Runs every stage of dvc.yaml on a shrunk config (tiny images, few pairs, few steps) with
tracking into the copy's own mlruns/, then checks outputs, MLflow grouping and that a second
`dvc repro` has nothing to do.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.tiny_project import dvc, make_tiny_project, mlflow_runs


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    """A committed copy of the repository whose params.yaml is shrunk to TINY."""
    return make_tiny_project(tmp_path_factory.mktemp("e2e") / "repo")


@pytest.mark.slow
def test_retrain_runs_every_stage_pushes_pulls_and_then_is_a_no_op(tiny_repo):
    repo, env = tiny_repo
    # What CI runs: scripts/retrain.sh = dvc repro + metrics/params diff as markdown.
    run = subprocess.run(["bash", "scripts/retrain.sh", "HEAD"], cwd=repo, env={**env, "GANSEG_PIPELINE_RUN": "e2e-1"}, check=False,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = (repo / "reports" / "ci_summary.md").read_text()
    assert "## ganseg retrain" in summary and "| Path" in summary and "metrics/prepare.json" in summary

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    expected = set()
    for name, stage in stages.items():
        items = stage.get("foreach") or []
        expected |= {f"{name}@{item}" for item in items} if items else {name}
    assert expected <= set(lock)
    assert json.loads((repo / "metrics" / "prepare.json").read_text())["pairs"] == 24

    # Every stage run of this invocation is nested under one pipeline run, none left RUNNING.
    runs = mlflow_runs(repo)
    parents = [r for r in runs if r.data.tags.get("ganseg.role") == "pipeline"]
    stage_runs = [r for r in runs if r.data.tags.get("ganseg.role") == "stage"]
    assert len(parents) == 1 and parents[0].data.tags["ganseg.pipeline_run"] == "e2e-1"
    assert {r.data.tags["mlflow.parentRunId"] for r in stage_runs} == {parents[0].info.run_id}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {name.split("@")[0] for name in expected} <= {r.data.tags["ganseg.stage"] for r in stage_runs}

    # Team storage: push the outputs to a DVC remote (a local directory here, S3 in docs),
    # lose them, pull them back.
    remote = repo.parent / "dvc-remote"
    assert dvc(repo, env, "remote", "add", "-d", "team", str(remote)).returncode == 0
    pushed = dvc(repo, env, "push")
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    shutil.rmtree(repo / "data" / "prepared")
    shutil.rmtree(repo / ".dvc" / "cache")
    pulled = dvc(repo, env, "pull")
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    assert len(list((repo / "data" / "prepared" / "train" / "images").iterdir())) > 0

    again = dvc(repo, env, "repro")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Running stage" not in again.stdout
    assert "up to date" in dvc(repo, env, "status").stdout

    # Offline: the whole pipeline ran without trying to reach anything but loopback.
    attempts = (repo.parent / "sockets.log").read_text().splitlines() if (repo.parent / "sockets.log").exists() else []
    print(f"\nnon-loopback connection attempts during the pipeline: {len(attempts)}")
    assert attempts == []
