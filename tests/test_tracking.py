"""Tracking: grouping of stage runs, run status on failure, and the unreachable-store policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ganseg.tracking import StageRun, TrackingError, tracking_uri
from pipelines.__main__ import app
from tests.helpers import write_params

runner = CliRunner()
CLOSED_PORT_URI = "http://127.0.0.1:9"  # discard port: nothing listens, refused at once


def _runs(root: Path):
    client = MlflowClient(tracking_uri(root))
    experiment = client.get_experiment_by_name("ganseg")
    return client.search_runs([experiment.experiment_id])


def test_stage_runs_of_one_pipeline_share_a_parent(tmp_path, monkeypatch):
    monkeypatch.setenv("GANSEG_PIPELINE_RUN", "p-1")
    for stage in ("prepare", "train"):
        with StageRun(stage, tmp_path) as run:
            run.log_metric("x/y", 1.5, step=2)
    monkeypatch.setenv("GANSEG_PIPELINE_RUN", "p-2")
    with StageRun("prepare", tmp_path):
        pass
    runs = _runs(tmp_path)
    parents = {r.data.tags["ganseg.pipeline_run"]: r.info.run_id for r in runs if r.data.tags["ganseg.role"] == "pipeline"}
    assert set(parents) == {"p-1", "p-2"}
    children = [r for r in runs if r.data.tags["ganseg.role"] == "stage"]
    assert sorted(r.data.tags["mlflow.parentRunId"] == parents[r.data.tags["ganseg.pipeline_run"]] for r in children) == [True] * 3
    assert {r.info.status for r in runs} == {"FINISHED"}
    logged = [r for r in children if r.data.metrics]
    assert len(logged) == 2 and all(r.data.metrics["x/y"] == 1.5 for r in logged)


@pytest.mark.parametrize(("error", "status"), [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_failed_and_interrupted_runs_are_not_left_running(tmp_path, error, status):
    with pytest.raises(error), StageRun("train", tmp_path):
        raise error("boom")
    stage = [r for r in _runs(tmp_path) if r.data.tags["ganseg.role"] == "stage"]
    assert [r.info.status for r in stage] == [status]


def test_unreachable_store_warns_and_stage_still_writes_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", CLOSED_PORT_URI)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    params = write_params(tmp_path / "params.yaml", {"common": {"image_size": 32}, "prepare": {"synthetic": {"num_images": 8}}})
    result = runner.invoke(app, ["prepare", "--params", str(params), "--out", "out", "--reports", "rep", "--metrics", "m.json"])
    assert result.exit_code == 0, result.output
    assert "warning: tracking disabled for stage 'prepare'" in result.stderr
    assert json.loads((tmp_path / "m.json").read_text())["pairs"] == 8


def test_unreachable_store_fails_first_when_tracking_is_required(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", CLOSED_PORT_URI)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    params = write_params(tmp_path / "params.yaml", {"common": {"image_size": 32, "tracking_required": True}})
    result = runner.invoke(app, ["prepare", "--params", str(params), "--out", "out", "--reports", "rep", "--metrics", "m.json"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "common.tracking_required is true" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.json").exists()
    with pytest.raises(TrackingError), StageRun("prepare", tmp_path, required=True):
        pass
