"""The shared epoch loop: it learns, keeps the best epoch, stops early, and resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from ganseg.config.train import AugmentationConfig
from ganseg.models import UNetConfig, build_unet
from ganseg.training.checkpoint import CheckpointManager, TrainState
from ganseg.training.data import EpochSampler, PairDataset, build_augmentation
from ganseg.training.early_stopping import EarlyStopping
from ganseg.training.loop import SegmentationStep, fit, resume
from ganseg.training.losses import SegmentationLoss
from ganseg.training.optim import build_scheduler
from ganseg.training.validation import evaluate_dice

CPU = torch.device("cpu")


def _data(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(count, 16, 16, dtype=torch.uint8)
    for index in range(count):
        y, x = torch.randint(1, 9, (2,), generator=generator).tolist()
        masks[index, y : y + 6, x : x + 6] = 1
    noise = torch.randint(0, 60, (count, 1, 16, 16), generator=generator, dtype=torch.uint8)
    return noise + masks.unsqueeze(1) * 120, masks


# The longest run below (8 epochs of 6 batches); one length for every run, so that a run killed
# early and resumed anneals exactly as the straight one does.
SCHEDULE_STEPS = 48


def _run(epochs: int, tmp_path, *, checkpoint: CheckpointManager | None = None, resume_from=None,
         patience: int = 0, min_delta: float = 0.0, dropout: float = 0.2, batch_norm: bool = True,
         steps: int | None = None, interval: int | None = None):
    torch.manual_seed(0)
    model = build_unet(UNetConfig(depth=2, base_width=4, dropout=dropout, batch_norm=batch_norm))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = build_scheduler(optimizer, "cosine", steps=SCHEDULE_STEPS)
    criterion = SegmentationLoss()
    state = TrainState(modules={"unet": model}, optimizers={"unet": optimizer},
                       schedulers={"unet": scheduler}, early_stopping=EarlyStopping(patience, min_delta))
    if resume_from is not None:
        resume(state, resume_from)
    images, masks = _data(12, seed=1)
    val_images, val_masks = _data(6, seed=2)
    loader = DataLoader(PairDataset(images, masks, build_augmentation(AugmentationConfig())),
                        batch_size=2, sampler=EpochSampler(12, seed=5), generator=torch.Generator())
    improved = []
    logged = []
    history = fit(
        state,
        epochs=epochs,
        loader=loader,
        train_step=SegmentationStep(model, criterion, optimizer, device=CPU, grad_clip=1.0),
        validate=lambda: evaluate_dice(model, val_images, val_masks, num_classes=1, device=CPU,
                                       criterion=criterion),
        log=lambda name, value, step: logged.append((name, step)),
        checkpoints=checkpoint,
        on_improve=lambda s: improved.append(s.best_epoch),
        progress=False,
        steps=steps,
        interval=interval,
    )
    return state, history, improved, logged


def _comparable(rows):
    return [{k: v for k, v in row.items() if not k.startswith("time/") and k != "train/images_per_s"}
            for row in rows]


def test_fit_learns_logs_and_keeps_the_best_epoch(tmp_path, capsys):
    state, history, improved, logged = _run(8, tmp_path)
    assert [row["epoch"] for row in history] == list(range(1, 9)) and state.epoch == 8
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert history[-1]["val/dice"] > 0.5
    assert all(math.isfinite(v) for row in history for v in row.values())
    best = max(history, key=lambda row: row["val/dice"])
    assert state.best_epoch == best["epoch"] and state.best_metric == best["val/dice"]
    assert improved[-1] == state.best_epoch
    assert ("val/dice", 8) in logged and ("train/loss", 1) in logged and ("train/lr", 3) in logged
    assert state.step == 8 * 6  # 12 images, batches of 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train epoch")]
    assert len(lines) == 8 and "val/dice" in lines[0] and "eta" in lines[0]


def test_same_seed_gives_identical_metrics_on_cpu(tmp_path):
    assert _comparable(_run(2, tmp_path)[1]) == _comparable(_run(2, tmp_path)[1])


def test_resumed_run_matches_the_uninterrupted_one(tmp_path):
    straight = _run(3, tmp_path)[1]
    manager = CheckpointManager(tmp_path / "ck", "fp")
    _run(1, tmp_path, checkpoint=manager)  # "killed" after epoch 1
    manager.best_path.write_bytes(b"stand-in")  # written by on_improve in the real stage
    found = manager.load()
    assert found.checkpoint is not None and found.checkpoint["state"]["epoch"] == 1
    _, resumed, _, _ = _run(3, tmp_path, resume_from=found.checkpoint)
    assert [row["epoch"] for row in resumed] == [1, 2, 3]
    assert _comparable(resumed) == _comparable(straight)  # dropout RNG and data order included


def test_early_stopping_ends_the_run(tmp_path):
    state, history, _, _ = _run(6, tmp_path, patience=1, min_delta=0.5)  # epoch 2 cannot gain 0.5
    assert state.stopped_early and len(history) == 2
    # A finished run resumed does no further work.
    again = _run(6, tmp_path, resume_from={"state": state.state_dict(), "rng": []}, patience=1)[1]
    assert len(again) == len(history)


@pytest.mark.parametrize("kind", ["plateau"])
def test_plateau_scheduler_is_stepped_with_the_metric(kind):
    model = torch.nn.Conv2d(1, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)

    scheduler = build_scheduler(optimizer, kind, steps=10, plateau_patience=0, plateau_factor=0.5)
    state = TrainState(modules={"m": model}, optimizers={"m": optimizer}, schedulers={"m": scheduler})
    fit(state, epochs=3, loader=[(torch.zeros(1, 1, 2, 2),)], train_step=lambda batch, step: {"train/loss": 0.0},
        validate=lambda: {"val/dice": 0.5}, progress=False)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)  # no gain after epoch 1: halved twice


def test_a_step_budget_validates_every_interval_whatever_the_epoch_length(tmp_path):
    """12 images in batches of 2 make 6 steps per epoch; 10 steps validated every 4: at steps
    4, 8 and 10 (the end), crossing the epoch boundary mid-interval."""
    state, history, _, logged = _run(1, tmp_path, steps=10, interval=4)
    assert [row["train/steps"] for row in history] == [4, 8, 10] and state.step == 10
    assert [row["epoch"] for row in history] == [1, 2, 3]  # an "epoch" is one validation interval
    assert ("train/steps", 2) in logged


def test_a_run_resumed_inside_an_epoch_matches_the_uninterrupted_one(tmp_path):
    straight = _run(1, tmp_path, steps=10, interval=4)[1]
    manager = CheckpointManager(tmp_path / "ck", "fp")
    _run(1, tmp_path, checkpoint=manager, steps=4, interval=4)  # "killed" at step 4, inside epoch 1
    manager.best_path.write_bytes(b"stand-in")
    found = manager.load()
    assert found.checkpoint["state"]["step"] == 4
    resumed = _run(1, tmp_path, resume_from=found.checkpoint, steps=10, interval=4)[1]
    assert _comparable(resumed) == _comparable(straight)  # the data stream continues mid-epoch


def test_cosine_is_annealed_step_by_step_not_once_per_validation():
    """10 steps validated every 5: at the first validation the lr is the cosine at step 5 of 10
    (half-way between lr and lr/100), not still the full lr held over the interval."""

    model = torch.nn.Conv2d(1, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    state = TrainState(modules={"m": model}, optimizers={"m": optimizer},
                       schedulers={"m": build_scheduler(optimizer, "cosine", steps=10)})
    history = fit(state, epochs=1, loader=[(torch.zeros(1, 1, 2, 2),)] * 5, steps=10, interval=5,
                  train_step=lambda batch, step: {"train/loss": 0.0}, validate=lambda: {"val/dice": 0.5},
                  progress=False)
    lrs = [row["train/lr"] for row in history]
    assert lrs == pytest.approx([0.01 + 0.99 * 0.5, 0.01])
