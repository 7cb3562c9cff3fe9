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
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

# Shrinks each stage to seconds; a block is applied only if params.yaml has it.
TINY = {
    "common": {"image_size": 32},
    "prepare": {"synthetic": {"num_images": 24}},
    "augment": {"steps": 6, "batch_size": 4, "num_samples": 8, "log_interval": 3, "sample_interval": 3,
                "checkpoint_interval": 3, "grid_samples": 4, "pix2pix": {"base_channels": 8},
                "discriminator": {"base_channels": 8, "layers": 2},
                "consistency": {"steps": 3, "base_channels": 4, "batch_size": 4},
                "quality": {"max_images": 8, "kid_subset_size": 4, "kid_subsets": 5}},
    "train": {"epochs": 2, "batch_size": 4, "model": {"depth": 2, "base_width": 4}, "overlay_images": 2},
    "finetune": {"epochs": 1, "batch_size": 4, "discriminator": {"base_channels": 8, "layers": 2},
                 "overlay_images": 2},
    "evaluate": {"bootstrap": {"resamples": 200}, "overlays": {"count": 2},
                 "synthetic_quality": {"max_images": 8, "kid_subset_size": 4, "kid_subsets": 5}},
}


# Loaded into every Python process of the pipeline (dvc, each stage, mlflow): records any
# connection attempt to a non-loopback address, then lets it fail as on an offline machine.
SOCKET_GUARD = """
import ipaddress, os, socket
_connect = socket.socket.connect
def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            with open(os.environ["GANSEG_SOCKET_LOG"], "a") as log:
                log.write(f"{os.getpid()} {host}:{address[1]}\\n")
            raise OSError(101, "network blocked by the test's socket guard")
    return _connect(self, address)
socket.socket.connect = _guarded
"""


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


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    """A committed copy of the repository whose params.yaml is shrunk to TINY."""
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    _copy_repo(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params = _merge(params, {k: v for k, v in TINY.items() if k in params})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "dvc.lock").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GANSEG_PIPELINE_RUN")}
    bin_dir = str(Path(sys.executable).parent)
    guard = repo.parent / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(SOCKET_GUARD)
    # DVC experiments commit to git: give them an identity even where git has none configured.
    env.update(GIT_AUTHOR_NAME="ganseg-e2e", GIT_AUTHOR_EMAIL="e2e@localhost",
               GIT_COMMITTER_NAME="ganseg-e2e", GIT_COMMITTER_EMAIL="e2e@localhost")
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=f"{guard}:{repo / 'src'}:{repo}",
               VIRTUAL_ENV=str(Path(sys.executable).parents[1]), GANSEG_SOCKET_LOG=str(repo.parent / "sockets.log"))
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=repo, check=True, env=env)
    return repo, env


def _dvc(repo: Path, env: dict, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _mlflow_runs(repo: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ganseg")
    return client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.mark.slow
def test_retrain_runs_every_stage_pushes_pulls_and_then_is_a_no_op(tiny_repo):
    repo, env = tiny_repo
    # What CI runs: scripts/retrain.sh = dvc repro + metrics/params diff as markdown.
    run = subprocess.run(["bash", "scripts/retrain.sh", "HEAD"], cwd=repo, env={**env, "GANSEG_PIPELINE_RUN": "e2e-1"},
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
    runs = _mlflow_runs(repo)
    parents = [r for r in runs if r.data.tags.get("ganseg.role") == "pipeline"]
    stage_runs = [r for r in runs if r.data.tags.get("ganseg.role") == "stage"]
    assert len(parents) == 1 and parents[0].data.tags["ganseg.pipeline_run"] == "e2e-1"
    assert {r.data.tags["mlflow.parentRunId"] for r in stage_runs} == {parents[0].info.run_id}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {name.split("@")[0] for name in expected} <= {r.data.tags["ganseg.stage"] for r in stage_runs}

    # Team storage: push the outputs to a DVC remote (a local directory here, S3 in docs),
    # lose them, pull them back.
    remote = repo.parent / "dvc-remote"
    assert _dvc(repo, env, "remote", "add", "-d", "team", str(remote)).returncode == 0
    pushed = _dvc(repo, env, "push")
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    shutil.rmtree(repo / "data" / "prepared")
    shutil.rmtree(repo / ".dvc" / "cache")
    pulled = _dvc(repo, env, "pull")
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    assert len(list((repo / "data" / "prepared" / "train" / "images").iterdir())) > 0

    again = _dvc(repo, env, "repro")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Running stage" not in again.stdout
    assert "up to date" in _dvc(repo, env, "status").stdout

    # Offline: the whole pipeline ran without trying to reach anything but loopback.
    attempts = (repo.parent / "sockets.log").read_text().splitlines() if (repo.parent / "sockets.log").exists() else []
    print(f"\nnon-loopback connection attempts during the pipeline: {len(attempts)}")
    assert attempts == []


@pytest.mark.slow
def test_two_queued_experiments_run_and_are_tracked(tiny_repo):
    repo, env = tiny_repo
    for seed in (1, 2):
        queued = _dvc(repo, env, "exp", "run", "--queue", "-S", f"common.seed={seed}", "--name", f"seed-{seed}")
        assert queued.returncode == 0, queued.stderr[-2000:]
    started = _dvc(repo, env, "queue", "start", "--jobs", "2")
    assert started.returncode == 0, started.stderr[-2000:]
    deadline = time.time() + 1500
    while time.time() < deadline:
        status = _dvc(repo, env, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    _dvc(repo, env, "queue", "stop")
    assert status.count("Success") == 2, status

    shown = json.loads(_dvc(repo, env, "exp", "show", "--json").stdout)
    names = {exp["name"] for baseline in shown for exp in (baseline.get("experiments") or [])}
    assert {"seed-1", "seed-2"} <= names
    runs = _mlflow_runs(repo)
    per_experiment = {r.data.tags.get("ganseg.dvc_experiment") for r in runs if r.data.tags.get("ganseg.role") == "pipeline"}
    assert {"seed-1", "seed-2"} <= per_experiment
