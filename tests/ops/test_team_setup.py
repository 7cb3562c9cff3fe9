"""Team set-up on one machine: an MLflow tracking server backed by PostgreSQL with an
artifact root, used by a real stage and by the model registry.

PostgreSQL is Debian's package (installed by `./dev test` / .ci/run), started on loopback
by this test in a throwaway cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ganseg.tracking import StageRun
from pipelines.__main__ import app
from tests.helpers import free_port, wait_until_serving, write_params

PG_BIN = Path("/usr/lib/postgresql")


def _pg_tool(name: str) -> str:
    found = sorted(PG_BIN.glob(f"*/bin/{name}"))
    if not found:
        pytest.fail("Debian's postgresql is not installed: `./dev test` installs it (apt-get install postgresql)")
    return str(found[-1])


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, check=True, capture_output=True, text=True, **kwargs)


@pytest.fixture
def postgres():
    # Outside pytest's tmp tree: that is private to root, and the server runs as postgres.
    data = Path(tempfile.mkdtemp(prefix="ganseg-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    _as_postgres([_pg_tool("initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"])
    _as_postgres([_pg_tool("pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"), "-o",
                  f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"])
    try:
        _as_postgres([_pg_tool("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"])
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        _as_postgres([_pg_tool("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_stage_and_registry_against_postgres_backed_server(tmp_path, monkeypatch, postgres):
    port = free_port()
    mlflow_bin = Path(os.sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", postgres, "--artifacts-destination",
         str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{uri}/health", server, 120, "mlflow server on PostgreSQL")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("GANSEG_PIPELINE_RUN", "team-1")
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)

        params = write_params(work / "params.yaml", {"common": {"image_size": 32, "tracking_required": True},
                                                      "prepare": {"synthetic": {"num_images": 8}}})
        result = CliRunner().invoke(app, ["prepare", "--params", str(params), "--out", "out", "--reports", "rep",
                                          "--metrics", "m.json"])
        assert result.exit_code == 0, result.output

        model = torch.nn.Conv2d(1, 1, 1)
        torch.save(model.state_dict(), work / "w.pt")
        (work / "c.json").write_text("{}")
        with StageRun("train", work, required=True) as run:
            example = torch.zeros(1, 1, 4, 4)
            version = run.log_model(model, registered_name="ganseg-unet", weights_file=work / "w.pt",
                                    config_file=work / "c.json", input_example=example.numpy(),
                                    output_example=model(example).detach().numpy(), tags={"variant": "real"})
        assert version == "1"

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("ganseg")
        runs = client.search_runs([experiment.experiment_id], filter_string="tags.`ganseg.pipeline_run` = 'team-1'")
        stages = {r.data.tags.get("ganseg.stage") for r in runs if r.data.tags.get("ganseg.role") == "stage"}
        assert stages == {"prepare", "train"}
        prepare_run = next(r for r in runs if r.data.tags.get("ganseg.stage") == "prepare")
        assert prepare_run.data.metrics["prepare/pairs"] == 8
        artifacts = {a.path for a in client.list_artifacts(prepare_run.info.run_id)}
        assert "validation" in artifacts
        # Artifacts went through the server into its artifact root, not the client's disk.
        assert any((tmp_path / "artifacts").rglob("validation.json"))
        assert client.get_model_version("ganseg-unet", "1").tags["variant"] == "real"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
