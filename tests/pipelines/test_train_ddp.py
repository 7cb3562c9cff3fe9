"""torchrun --nproc_per_node=2 -m pipelines train: two CPU processes (gloo), one set of outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.pipelines.test_train_cli import TINY, make_project
from tests.pipelines.test_train_resume import _env

DDP = {**TINY, "train": {**TINY["train"], "epochs": 2, "batch_size": 2}}


@pytest.mark.slow
def test_two_processes_train_one_model_and_one_tracked_run(tmp_path):
    make_project(tmp_path, DDP)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               "-m", "pipelines", "train", "--params", "params.yaml", "--variant", "real"]
    result = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = json.loads((tmp_path / "metrics" / "train_real.json").read_text())
    assert metrics["run"]["processes"] == 2 and metrics["epochs_run"] == 2
    assert 0.0 <= metrics["val"]["dice"] <= 1.0
    history = pd.read_csv(tmp_path / "plots" / "train_real.csv")
    assert list(history["epoch"]) == [1, 2]
    assert (tmp_path / "models" / "unet_real.pt").is_file()
    # Rank 0 alone prints the per-epoch lines and the summary.
    assert result.stderr.count("train[real] epoch 1/2") == 1
    assert result.stdout.count("val Dice") == 1

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("ganseg")
    runs = client.search_runs([experiment.experiment_id], "tags.`ganseg.role` = 'stage'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert len(client.search_model_versions("name = 'ganseg-unet'")) == 1
    steps = client.get_metric_history(runs[0].info.run_id, "train/loss")
    assert [m.step for m in steps] == [1, 2]
    # The 16 training pairs are split between the processes: 4 steps of 2 pairs each per epoch.
    assert metrics["run"]["optimizer_steps"] == 2 * 4
