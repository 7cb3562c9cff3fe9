"""The MLflow UI as a user sees it: `./dev ui` on loopback, opened in headless Chromium.

Chromium comes from Debian's package (installed by .ci/run), never downloaded by a test tool.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from ganseg.tracking import StageRun, tracking_uri
from tests.conftest import REPO_ROOT
from tests.helpers import free_port, wait_until_serving

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1400,900", "--virtual-time-budget=20000",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is not installed: .ci/run installs it (apt-get install chromium)")
    return found


def _populate(root: Path) -> None:
    """A stage run with metrics and a registered model that holds the champion alias."""
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    weights, config = root / "weights.pt", root / "config.json"
    torch.save(model.state_dict(), weights)
    config.write_text('{"kind": "conv"}')
    os.environ["GANSEG_PIPELINE_RUN"] = "ui-test"
    with StageRun("evaluate", root, run_name="evaluate ui-test") as run:
        run.log_metrics({"eval/dice": 0.8765, "eval/iou": 0.78})
        example = torch.zeros(1, 1, 8, 8)
        version = run.log_model(model, registered_name="ganseg-unet", weights_file=weights, config_file=config,
                                input_example=example.numpy(), output_example=model(example).detach().numpy(),
                                tags={"variant": "real"})
    assert version is not None
    MlflowClient(tracking_uri(root)).set_registered_model_alias("ganseg-unet", "champion", version)


def _render(url: str, out_dir: Path, needles: list[str], screenshot: Path | None = None) -> str:
    """The page's DOM once it shows every needle; a loaded CI machine may need another try."""
    args = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={out_dir / 'profile'}"]
    for _ in range(3):
        dom = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
        if all(needle in dom for needle in needles):
            break
    if screenshot is not None:
        subprocess.run([*args, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return dom


@pytest.mark.slow
def test_ui_shows_runs_metrics_and_champion_alias(tmp_path, monkeypatch):
    store = tmp_path / "mlruns"
    store.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    _populate(tmp_path)

    port = free_port()
    env = {**os.environ, "MLRUNS_DIR": str(store), "PORT": str(port)}
    env.pop("MLFLOW_TRACKING_URI")
    server = subprocess.Popen([str(REPO_ROOT / "dev"), "ui"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{base}/health", server, 90, "`./dev ui` serving on loopback")
        experiment = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_experiment_by_name("ganseg")
        reports = REPO_ROOT / "reports"
        reports.mkdir(exist_ok=True)
        runs_page = _render(f"{base}/#/experiments/{experiment.experiment_id}/runs", tmp_path,
                            ["pipeline ui-test", "<strong>2</strong> matching runs"], reports / "mlflow_ui.png")
        # The pipeline run, with its stage run nested under it (collapsed): 2 runs in the table.
        assert "pipeline ui-test" in runs_page and "<strong>2</strong> matching runs" in runs_page
        run_id = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").search_runs(
            [experiment.experiment_id], filter_string="tags.`ganseg.stage` = 'evaluate'")[0].info.run_id
        run_page = _render(f"{base}/#/experiments/{experiment.experiment_id}/runs/{run_id}", tmp_path,
                           ["eval/dice", "0.8765"])
        assert "eval/dice" in run_page and "0.8765" in run_page
        model_page = _render(f"{base}/#/models/ganseg-unet", tmp_path, ["champion"], reports / "mlflow_ui_model.png")
        assert "champion" in model_page
        assert (reports / "mlflow_ui.png").stat().st_size > 10_000
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
