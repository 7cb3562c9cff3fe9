"""kill -9 in the middle of training, run again: it resumes and ends where an unkilled run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ganseg.models.model_file import read_model_file
from tests.helpers import write_params
from tests.pipelines.test_train_cli import TINY, make_project

# More epochs than the CLI tests so that the kill lands mid-run; no early stop.
RESUMABLE = {**TINY, "train": {**TINY["train"], "epochs": 5, "early_stopping": {"patience": 0},
                               "model": {"depth": 2, "base_width": 4, "dropout": 0.2}}}


def _command(variant: str = "real") -> list[str]:
    return [sys.executable, "-m", "pipelines", "train", "--params", "params.yaml", "--variant", variant]


def _env(root: Path) -> dict:
    env = dict(os.environ)
    repo = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = f"{repo / 'src'}:{repo}"
    env["OMP_NUM_THREADS"] = "1"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db?timeout=60"
    return env


def _finished_run(root: Path) -> tuple[dict, pd.DataFrame, str]:
    result = subprocess.run(_command(), cwd=root, env=_env(root), capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((root / "metrics" / "train_real.json").read_text())
    return metrics, pd.read_csv(root / "plots" / "train_real.csv"), result.stderr


def _comparable(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns=["time/epoch_s", "train/images_per_s"])


@pytest.mark.slow
def test_killed_run_resumes_and_matches_the_uninterrupted_run(tmp_path):
    straight_root, killed_root = tmp_path / "straight", tmp_path / "killed"
    for root in (straight_root, killed_root):
        root.mkdir()
        make_project(root, RESUMABLE)
    straight_metrics, straight_history, _ = _finished_run(straight_root)

    checkpoint = killed_root / "checkpoints" / "train_real" / "last.pt"
    process = subprocess.Popen(_command(), cwd=killed_root, env=_env(killed_root),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed; raise the epochs"
    os.kill(process.pid, signal.SIGKILL)  # no handler, no cleanup: like a crash or an OOM kill
    process.wait()
    assert not (killed_root / "models" / "unet_real.pt").exists()  # never a half-written model

    resumed_metrics, resumed_history, log = _finished_run(killed_root)
    assert "resuming from checkpoints/train_real/last.pt after epoch" in log
    assert not checkpoint.exists()
    assert list(resumed_history["epoch"]) == [1, 2, 3, 4, 5]
    # Same data order, augmentation draws, dropout masks and weights: the same numbers on CPU.
    pd.testing.assert_frame_equal(_comparable(resumed_history), _comparable(straight_history))
    assert resumed_metrics["val"] == straight_metrics["val"]
    assert resumed_metrics["best_epoch"] == straight_metrics["best_epoch"]
    straight = read_model_file(straight_root / "models" / "unet_real.pt")["state_dict"]
    resumed = read_model_file(killed_root / "models" / "unet_real.pt")["state_dict"]
    difference = max(float((straight[k].double() - resumed[k].double()).abs().max()) for k in straight)
    print(f"\ntrain, 5 epochs straight vs kill -9 and resume: max abs parameter difference {difference} "
          f"over {len(straight)} tensors")
    assert difference == 0.0


@pytest.mark.slow
def test_changed_params_do_not_resume_a_stale_checkpoint(tmp_path):
    make_project(tmp_path, RESUMABLE)
    stale = tmp_path / "checkpoints" / "train_real"
    stale.mkdir(parents=True)
    import torch

    from ganseg.training.checkpoint import CheckpointManager, TrainState

    model = torch.nn.Conv2d(1, 1, 1)
    CheckpointManager(stale, "some-other-fingerprint").save(
        TrainState(modules={"unet": model}, optimizers={"unet": torch.optim.SGD(model.parameters(), lr=1)}))
    write_params(tmp_path / "params.yaml", {**RESUMABLE, "train": {**RESUMABLE["train"], "epochs": 1}})
    _, history, log = _finished_run(tmp_path)
    assert "written for other params or data" in log and "starting fresh" in log
    assert list(history["epoch"]) == [1]
