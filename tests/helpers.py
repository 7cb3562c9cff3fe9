"""Small builders shared by tests: crafted image/mask folders and params files."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import yaml
from PIL import Image


def write_pair(images: Path, masks: Path, stem: str, size=(40, 48), seed: int = 0, fg_value: int = 255) -> None:
    """A textured image and a blob mask of ``size`` (H, W)."""
    rng = np.random.default_rng(seed)
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    h, w = size
    image = rng.integers(0, 120, size=(h, w), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 < (min(h, w) // 5) ** 2
    image[inside] = 200
    mask[inside] = fg_value
    Image.fromarray(image).save(images / f"{stem}.png")
    Image.fromarray(mask).save(masks / f"{stem}.png")


def folder_dataset(root: Path, count: int = 12, **kwargs) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    for index in range(count):
        write_pair(images, masks, f"cell_{index:02d}", seed=index, **kwargs)
    return images, masks


def write_params(path: Path, blocks: dict) -> Path:
    path.write_text(yaml.safe_dump(blocks, sort_keys=False))
    return path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Poll ``url`` until it answers; fail naming ``what`` if it does not within ``timeout_s``
    or the server process exits first."""
    import pytest

    deadline = time.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                pytest.fail(f"{what} did not come up within {timeout_s:.0f} s")
            time.sleep(1)


def run_dvc_queue(dvc: Path, repo: Path, env: dict, jobs: int, timeout_s: float) -> str:
    """``dvc queue start --jobs N``, then wait until nothing is queued or running; returns the status.

    The queue's workers inherit the starting process's stdout: read through a pipe, ``queue
    start`` would seem to hang until every experiment finished. A log file lets it return at once.
    """
    log_path = repo.parent / f"queue-start-{time.time_ns()}.log"
    with open(log_path, "w") as log:
        started = subprocess.run([str(dvc), "queue", "start", "--jobs", str(jobs)], cwd=repo, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False)
    assert started.returncode == 0, log_path.read_text()[-2000:]
    deadline = time.time() + timeout_s
    status = ""
    while time.time() < deadline:
        status = subprocess.run([str(dvc), "queue", "status"], cwd=repo, env=env, capture_output=True,
                                text=True, timeout=120, check=False).stdout
        if "Queued" not in status and "Running" not in status:
            _wait_for_queue_workers_to_exit(repo, timeout_s=120)
            return status
        time.sleep(3)
    subprocess.run([str(dvc), "queue", "stop", "--kill"], cwd=repo, env=env, capture_output=True, timeout=120, check=False)
    raise AssertionError(f"the queue did not finish within {timeout_s:.0f} s:\n{status}")


def _queue_worker_pids(repo: Path) -> list[int]:
    """Processes running ``dvc exp queue-worker`` from inside ``repo``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = Path(proc / "cwd").resolve()
        except OSError:  # the process ended while we looked, or is not ours to read
            continue
        if b"queue-worker" in command and cwd.is_relative_to(repo.resolve()):
            pids.append(int(proc.name))
    return pids


def _wait_for_queue_workers_to_exit(repo: Path, timeout_s: float) -> None:
    """Wait until the queue's workers have shut down after their idle timeout (10 s in DVC).

    A worker that is shutting down when new experiments are queued and started can take one
    and exit with it still marked Running (seen in CI: 7 of 8 Success, one Running forever,
    "0 active, 0 idle"). Waiting for the old workers to exit before the next round starts
    fresh ones, as a user who queues a second batch later would.
    """
    deadline = time.time() + timeout_s
    while (pids := _queue_worker_pids(repo)) and time.time() < deadline:
        time.sleep(1)
    assert not pids, f"queue workers {pids} still alive {timeout_s:.0f} s after the queue emptied"
