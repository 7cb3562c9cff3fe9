"""Test set-up shared by every test: no phoning home, tracking into a temporary store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before any library import: nothing talks to the network during tests.
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["GX_ANALYTICS_ENABLED"] = "False"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI puts the shared folder beside the clone; elsewhere point GANSEG_DSB_ROOT at the data set.
DSB_ROOT = Path(os.environ.get("GANSEG_DSB_ROOT", REPO_ROOT.parent / "shared" / "data" / "dsb2018_nuclei"))


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path_factory, monkeypatch):
    """Each test logs to its own SQLite store, never to the project's mlruns/."""
    store = tmp_path_factory.mktemp("mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db?timeout=60")
    monkeypatch.delenv("GANSEG_PIPELINE_RUN", raising=False)
    yield


@pytest.fixture
def dsb_root() -> Path:
    """The shared DSB 2018 nuclei set (read in place, never copied into the repo)."""
    if not (DSB_ROOT / "images").is_dir():
        pytest.fail(f"DSB 2018 data set missing at {DSB_ROOT}; CI provides ../shared beside the repo, "
                    "elsewhere set GANSEG_DSB_ROOT")
    return DSB_ROOT


@pytest.fixture
def single_thread():
    """One intra-op torch thread for the test: tiny tensors gain nothing from threads, and on a
    shared 2-core CPU the spare threads only spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
