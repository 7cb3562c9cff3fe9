"""Stop a stage whose `dvc` parent was killed, instead of running on as an orphan.

A `kill -9` of `dvc repro` does not reach the stage command it started: the stage would run on,
unrecorded (no `dvc.lock` entry will ever be written for it), and race with the next
`dvc repro` over the same outputs and checkpoints. So when DVC started this process
(it sets ``DVC_STAGE`` for every stage command), a daemon thread watches the nearest `dvc`
ancestor and, once it is gone, sends this process SIGTERM: the stage ends its MLflow run as
KILLED and exits, leaving its last checkpoint for the next `dvc repro` to resume from.

Only DVC-started stages are watched: a stage run by hand under `nohup` must outlive its shell.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil

POLL_SECONDS = 1.0


def _nearest_dvc_ancestor() -> psutil.Process | None:
    for ancestor in psutil.Process().parents():
        try:
            # `dvc ...`, `python .../bin/dvc ...` or `python -m dvc ...`
            if any(os.path.basename(part) in ("dvc", "dvc.exe") for part in ancestor.cmdline()[:3]):
                return ancestor
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def process_alive(process: psutil.Process) -> bool:
    """Running and not a zombie (exited, not yet reaped)."""
    # is_running() compares the creation time too, so a recycled pid does not fool it.
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_with_dvc_parent() -> threading.Thread | None:
    """Start the watch if DVC started this stage; returns the thread (None when not watching)."""
    if not os.environ.get("DVC_STAGE"):
        return None
    parent = _nearest_dvc_ancestor()
    if parent is None:
        if os.getppid() == 1:
            # Started by DVC, already adopted by init: dvc died while this process was starting.
            os.kill(os.getpid(), signal.SIGTERM)
        return None

    def watch() -> None:
        while process_alive(parent):
            time.sleep(POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="dvc-parent-watch", daemon=True)
    thread.start()
    return thread
