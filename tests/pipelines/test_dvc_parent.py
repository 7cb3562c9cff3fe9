"""A stage started by DVC stops when its `dvc` parent is SIGKILLed; one run by hand does not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO_ROOT

# Stands in for a stage: records its pid, watches its dvc parent, notes a SIGTERM, then waits.
STAGE = """
import os, signal, sys, time
from pathlib import Path
from pipelines.dvc_parent import stop_with_dvc_parent
out = Path(sys.argv[1])
def on_term(signum, frame):
    (out / "terminated").write_text("yes")
    raise SystemExit(143)
signal.signal(signal.SIGTERM, on_term)
stop_with_dvc_parent()
(out / "stage.pid").write_text(str(os.getpid()))
time.sleep(60)
"""

# A process whose executable is called `dvc`, as `dvc repro` is: starts the stage and waits.
FAKE_DVC = """#!{python}
import subprocess, sys
subprocess.run([sys.executable, sys.argv[1], sys.argv[2]])
"""


def _start(tmp_path: Path, dvc_stage: str | None) -> tuple[subprocess.Popen, int]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dvc = bin_dir / "dvc"
    dvc.write_text(FAKE_DVC.format(python=sys.executable))
    dvc.chmod(0o755)
    (tmp_path / "stage.py").write_text(STAGE)
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}:{REPO_ROOT}"}
    env.pop("DVC_STAGE", None)
    if dvc_stage:
        env["DVC_STAGE"] = dvc_stage
    parent = subprocess.Popen([str(dvc), str(tmp_path / "stage.py"), str(tmp_path)], env=env)
    deadline = time.time() + 60
    while not (tmp_path / "stage.pid").exists():
        assert time.time() < deadline and parent.poll() is None, "the stage never started"
        time.sleep(0.1)
    time.sleep(0.1)
    return parent, int((tmp_path / "stage.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    return status not in ("Z", "X")


def test_a_dvc_started_stage_stops_when_dvc_is_killed(tmp_path):
    parent, stage_pid = _start(tmp_path, dvc_stage="train@real")
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while _alive(stage_pid) and time.time() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "terminated").exists(), "the orphaned stage was not sent SIGTERM"
    assert not _alive(stage_pid)


def test_a_stage_started_by_hand_outlives_its_parent(tmp_path):
    parent, stage_pid = _start(tmp_path, dvc_stage=None)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    time.sleep(2.5)  # the watch polls every second: it would have fired by now
    try:
        assert _alive(stage_pid) and not (tmp_path / "terminated").exists()
    finally:
        os.kill(stage_pid, signal.SIGKILL)
