"""SIGKILL while a checkpoint is being written: the newest or the previous one always loads,
and the next write sweeps away the killed writer's temporary file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from ganseg import io

KILLS = 20

WRITER = """
import sys, torch
from ganseg import io
path = sys.argv[1]
step = 0
while True:
    step += 1
    # ~8 MB: a write takes long enough to be killed in the middle of it
    io.torch_save({"step": step, "weights": torch.full((2_000_000,), float(step))}, path)
    print(step, flush=True)
"""


@pytest.mark.reliability
def test_killed_checkpoint_writes_never_leave_an_unloadable_file(tmp_path):
    path = tmp_path / "last.pt"
    io.torch_save({"step": 0, "weights": torch.zeros(2_000_000)}, path)
    rng = random.Random(0)
    loaded_steps = []
    for _ in range(KILLS):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        writer.stdout.readline()  # one write completed: the imports are done, writes are looping
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside a later write
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        state = torch.load(path, weights_only=True)
        assert torch.all(state["weights"] == float(state["step"]))  # whole, not torn
        loaded_steps.append(state["step"])
    orphans_before = list(tmp_path.glob(".last.pt.*"))
    io.torch_save({"step": -1, "weights": torch.zeros(1)}, path)
    print(f"\ncheckpoint kills: {KILLS}/{KILLS} loadable (steps {loaded_steps[:5]}...), "
          f"{len(orphans_before)} orphan temp file(s) swept by the next write")
    assert max(loaded_steps) > 0
    assert not list(tmp_path.glob(".last.pt.*"))
