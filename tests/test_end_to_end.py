"""The real pipeline, end to end: CI's retrain script (`dvc repro` + metrics diff) in a copy of the repo.

Runs every stage of dvc.yaml on a shrunk config (tiny images, few pairs, few steps) with
tracking into the copy's own mlruns/, then checks outputs, MLflow grouping and that a second
`dvc repro` has nothing to do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

# Shrinks each stage to seconds; a block is applied only if params.yaml has it.
TINY = {
    "common": {"image_size": 32},
    "prepare": {"synthetic": {"num_images": 24}},
}


def _copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO_ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO_ROOT / name.decode()
        if source.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_then_is_a_no_op(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    _copy_repo(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params = _merge(params, {k: v for k, v in TINY.items() if k in params})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "dvc.lock").unlink(missing_ok=True)
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI")  # the default store, under the copy's mlruns/
    bin_dir = str(Path(sys.executable).parent)
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=f"{repo / 'src'}:{repo}", GANSEG_PIPELINE_RUN="e2e-1")
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=repo, check=True, env=env)

    # What CI runs: scripts/retrain.sh = dvc repro + metrics/params diff as markdown.
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parents[1])
    run = subprocess.run(["bash", "scripts/retrain.sh", "HEAD"], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = (repo / "reports" / "ci_summary.md").read_text()
    assert "## ganseg retrain" in summary and "| Path" in summary and "metrics/prepare.json" in summary

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) >= {name for name in stages if "foreach" not in stages[name] and "matrix" not in stages[name]}
    metrics = json.loads((repo / "metrics" / "prepare.json").read_text())
    assert metrics["pairs"] == 24

    # Every stage run of this invocation is nested under one pipeline run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ganseg")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ganseg.role") == "pipeline"]
    stage_runs = [r for r in runs if r.data.tags.get("ganseg.role") == "stage"]
    assert len(parents) == 1 and parents[0].data.tags["ganseg.pipeline_run"] == "e2e-1"
    assert {r.data.tags["mlflow.parentRunId"] for r in stage_runs} == {parents[0].info.run_id}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert "prepare" in {r.data.tags["ganseg.stage"] for r in stage_runs}

    again = subprocess.run([f"{bin_dir}/dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Running stage" not in again.stdout
    status = subprocess.run([f"{bin_dir}/dvc", "status"], cwd=repo, env=env, capture_output=True, text=True)
    assert "up to date" in status.stdout
