"""Several processes against one fresh SQLite store: nothing lost, no "database is locked".

Figure reported: errors and the share of metric points present.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

WRITERS = 4
POINTS = 500

WRITER = """
import os, sys
from pathlib import Path
from ganseg.tracking import StageRun
os.environ["GANSEG_PIPELINE_RUN"] = "concurrency"
with StageRun(f"writer-{sys.argv[1]}", Path(sys.argv[2]), required=True) as run:
    for step in range(int(sys.argv[3])):
        run.log_metric("load/value", float(step), step=step)
print("done", run.run_id)
"""


@pytest.mark.reliability
def test_four_writers_on_a_fresh_store_lose_nothing(tmp_path, monkeypatch):
    store = tmp_path / "mlruns"
    uri = f"sqlite:///{store / 'mlflow.db'}?timeout=60"
    env = {"MLFLOW_TRACKING_URI": uri, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    # All start at once against a store that does not exist yet: the schema must not race.
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(i), str(tmp_path), str(POINTS)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(WRITERS)]
    outputs = [w.communicate(timeout=600) for w in writers]
    errors = [err for w, (_, err) in zip(writers, outputs) if w.returncode != 0]
    assert not errors, errors[0][-2000:]
    assert not any("database is locked" in err for _, err in outputs)

    client = MlflowClient(uri)
    run_ids = [out.split()[-1] for out, _ in outputs]
    present = sum(len(client.get_metric_history(run_id, "load/value")) for run_id in run_ids)
    print(f"\nconcurrent tracking: {WRITERS} writers x {POINTS} points, errors 0, "
          f"present {present}/{WRITERS * POINTS} ({100 * present / (WRITERS * POINTS):.0f}%)")
    assert present == WRITERS * POINTS
    statuses = {r.info.status for r in client.search_runs([client.get_experiment_by_name('ganseg').experiment_id])}
    assert statuses == {"FINISHED"}
    import sqlite3

    with sqlite3.connect(store / "mlflow.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
