"""Checkpoints: plain dicts, atomic, fingerprinted, with RNG states that really restore."""

from __future__ import annotations

import random

import numpy as np
import torch

from ganseg.models import UNetConfig, build_unet
from ganseg.training.checkpoint import (
    CheckpointManager,
    TrainState,
    capture_rng,
    fingerprint,
    restore_rng,
)
from ganseg.training.early_stopping import EarlyStopping


def _state(seed: int = 0) -> TrainState:
    torch.manual_seed(seed)
    model = build_unet(UNetConfig(depth=1, base_width=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5)
    model(torch.rand(2, 1, 8, 8)).mean().backward()
    optimizer.step()
    scheduler.step()
    return TrainState(modules={"unet": model}, optimizers={"unet": optimizer},
                      schedulers={"unet": scheduler}, early_stopping=EarlyStopping(3))


def test_rng_states_restore_every_generator():
    state = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(3)  # move on
    restore_rng(state)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])


def test_round_trip_restores_modules_optimisers_and_counters(tmp_path):
    saved = _state(seed=0)
    saved.epoch, saved.step, saved.best_metric, saved.best_epoch = 3, 21, 0.75, 2
    saved.early_stopping.update(0.75)
    saved.history = [{"epoch": 1, "val/dice": 0.5}, {"epoch": 2, "val/dice": 0.75}]
    manager = CheckpointManager(tmp_path / "ck", fingerprint({"lr": 1}))
    manager.save(saved)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["last.pt"]  # atomic: no temporaries
    manager.best_path.write_bytes(b"best model file")  # the loop writes it before recording a best

    found = manager.load()
    assert found.checkpoint is not None and "after epoch 3" in found.reason
    fresh = _state(seed=1)
    fresh.load_state_dict(found.checkpoint["state"])
    for a, b in zip(saved.modules["unet"].state_dict().values(), fresh.modules["unet"].state_dict().values()):
        assert torch.equal(a, b)
    assert fresh.optimizers["unet"].state_dict()["state"][0]["step"] == 1
    assert fresh.schedulers["unet"].last_epoch == 1
    assert (fresh.epoch, fresh.step, fresh.best_metric, fresh.best_epoch) == (3, 21, 0.75, 2)
    assert fresh.early_stopping.best == 0.75 and fresh.history == saved.history


def test_other_params_or_corrupt_files_start_fresh_with_a_reason(tmp_path):
    CheckpointManager(tmp_path, fingerprint({"lr": 1})).save(_state())
    other = CheckpointManager(tmp_path, fingerprint({"lr": 2})).load()
    assert other.checkpoint is None and "other params or data" in other.reason
    (tmp_path / "last.pt").write_bytes(b"\x00" * 10)
    corrupt = CheckpointManager(tmp_path, fingerprint({"lr": 1})).load()
    assert corrupt.checkpoint is None and "unreadable" in corrupt.reason
    assert CheckpointManager(tmp_path / "none", "x").load().reason.startswith("no checkpoint")


def test_temporaries_of_a_killed_write_are_removed(tmp_path):
    manager = CheckpointManager(tmp_path, "f")
    manager.save(_state())
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    assert manager.load().checkpoint is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_missing_best_file_is_not_resumed(tmp_path):
    state = _state()
    state.best_epoch = 1
    manager = CheckpointManager(tmp_path, "f")
    manager.save(state)
    assert manager.load().checkpoint is None


def test_clear_removes_the_folder(tmp_path):
    manager = CheckpointManager(tmp_path / "ck", "f")
    manager.save(_state())
    manager.best_path.write_bytes(b"x")
    manager.clear()
    assert not (tmp_path / "ck").exists()


def test_fingerprint_is_order_insensitive_and_value_sensitive():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
