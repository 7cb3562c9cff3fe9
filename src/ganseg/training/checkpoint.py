"""Resumable checkpoints: plain dicts, written atomically, loaded with ``weights_only=True``.

A checkpoint folder holds two files:

- ``last.pt``: everything needed to continue after the last finished epoch: module,
  optimiser, scheduler and grad-scaler states, epoch and step counters, the best metric, the
  early-stopping state, the history rows, every process's RNG states, and a fingerprint of
  the config and data it was trained with.
- ``best.pt``: the model file (see :mod:`ganseg.models.model_file`) of the best epoch so far.

Each is replaced atomically (write a temporary, fsync, rename): a kill at any moment leaves the
previous complete file. ``best.pt`` is written before ``last.pt`` records it, so the pair is
always consistent (a kill between the two only repeats that epoch, deterministically).

The fingerprint guards resuming: a checkpoint written for other params or other data is not
resumed (the caller is told why and starts fresh).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganseg import io

FORMAT = "ganseg-checkpoint/1"
LAST = "last.pt"
BEST = "best.pt"


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (config dicts, data hashes, variant names)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Keys that change how fast a run goes or what it reports, not what it trains: a checkpoint
# stays resumable across them (e.g. a run killed on a GPU machine continues on the CPU).
NOT_FINGERPRINTED = {"common": {"device", "precision", "tracking_required"}}


def config_fingerprint(resolved: dict[str, dict], *parts: Any, ignore: dict[str, set[str]] | None = None) -> str:
    """The one fingerprint policy of every trainer: the resolved config without the keys of
    :data:`NOT_FINGERPRINTED` (and the stage's own ``ignore``), plus data digests and names."""
    skipped = {block: NOT_FINGERPRINTED.get(block, set()) | (ignore or {}).get(block, set())
               for block in resolved}
    kept = {block: {k: v for k, v in values.items() if k not in skipped[block]}
            for block, values in resolved.items()}
    return fingerprint(kept, *parts)


# -- RNG -------------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) RNG states as weights_only-safe values."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- training state --------------------------------------------------------------------------
@dataclass
class TrainState:
    """The objects a training run mutates, and its counters; one checkpoint = one of these.

    ``modules``/``optimizers``/``schedulers``/``scalers`` are keyed by role (``"unet"``;
    the GAN has ``"generator"`` and ``"discriminator"``). ``extras`` are the other stateful
    helpers a run needs back exactly (the EMA generator, an image pool, a batch sampler, the
    divergence guard's record), each with ``state_dict`` / ``load_state_dict``. ``step`` counts
    finished steps, ``epoch`` finished intervals (epochs for the segmenters).
    """

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any] = field(default_factory=dict)
    scalers: dict[str, Any] = field(default_factory=dict)
    early_stopping: Any = None  # ganseg.training.early_stopping.EarlyStopping or None
    epoch: int = 0
    step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        from ganseg.models.model_file import bare_module

        return {
            "modules": {k: _cpu(bare_module(m).state_dict()) for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping else None,
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "extras": {k: v.state_dict() for k, v in self.extras.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from ganseg.models.model_file import bare_module

        for key, module in self.modules.items():
            bare_module(module).load_state_dict(state["modules"][key])
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][key])
        for key, scaler in self.scalers.items():
            scaler.load_state_dict(state["scalers"][key])
        if self.early_stopping is not None and state["early_stopping"] is not None:
            self.early_stopping.load_state_dict(state["early_stopping"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])
        self.stopped_early = bool(state["stopped_early"])
        self.history = list(state["history"])
        for key, extra in self.extras.items():
            extra.load_state_dict(state["extras"][key])


def _cpu(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in state_dict.items()}


# -- the folder ------------------------------------------------------------------------------
@dataclass
class Resumed:
    """What :meth:`CheckpointManager.load` found: the checkpoint dict, or why there is none."""

    checkpoint: dict[str, Any] | None
    reason: str


class CheckpointManager:
    def __init__(self, folder: Path, fingerprint: str, config: dict[str, Any] | None = None):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.config = config or {}

    @property
    def last_path(self) -> Path:
        return self.folder / LAST

    @property
    def best_path(self) -> Path:
        return self.folder / BEST

    def save(self, state: TrainState, rng_states: list[dict] | None = None) -> None:
        """Write ``last.pt`` atomically. ``rng_states``: one per process (default: this one)."""
        checkpoint = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "config": self.config,
            "state": state.state_dict(),
            "rng": rng_states if rng_states is not None else [capture_rng()],
        }
        io.torch_save(checkpoint, self.last_path)

    def load(self) -> Resumed:
        """The last checkpoint if it exists, is readable and matches this run's fingerprint.

        Temporaries left by a process killed mid-write (``.last.pt.*.tmp``) are removed first.
        """
        if self.folder.is_dir():
            for name in (LAST, BEST):
                for stale in self.folder.glob(f".{name}.*.tmp"):
                    stale.unlink(missing_ok=True)
        if not self.last_path.is_file():
            return Resumed(None, f"no checkpoint in {self.folder}")
        try:
            checkpoint = torch.load(self.last_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a corrupt file means: start fresh, say why
            return Resumed(None, f"{self.last_path} is unreadable ({type(exc).__name__}); starting fresh")
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
            return Resumed(None, f"{self.last_path} is not a ganseg checkpoint; starting fresh")
        if checkpoint.get("fingerprint") != self.fingerprint:
            return Resumed(
                None,
                f"{self.last_path} was written for other params or data "
                f"(fingerprint {checkpoint.get('fingerprint')} != {self.fingerprint}); starting fresh",
            )
        if checkpoint["state"]["best_epoch"] > 0 and not self.best_path.is_file():
            return Resumed(None, f"{self.best_path} is missing; starting fresh")
        return Resumed(checkpoint, f"resuming from {self.last_path} after epoch {checkpoint['state']['epoch']}")

    def clear(self) -> None:
        """Remove the folder's checkpoints once the run's outputs are safely written."""
        for path in (self.last_path, self.best_path):
            path.unlink(missing_ok=True)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
