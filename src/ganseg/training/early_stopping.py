"""Stop when the monitored metric has not improved for ``patience`` epochs."""

from __future__ import annotations

import math


class EarlyStopping:
    """Tracks the best value of a metric to maximise (``val/dice``); ``patience=0`` never stops.

    An epoch counts as an improvement when it beats the best value by more than
    ``min_delta``. ``state_dict`` / ``load_state_dict`` make it part of a checkpoint.
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 0 or min_delta < 0:
            raise ValueError("patience and min_delta must be >= 0")
        self.patience = patience
        self.min_delta = min_delta
        self.best = -math.inf
        self.bad_epochs = 0

    def update(self, value: float) -> bool:
        """Record one epoch's value; True when training should stop now."""
        if value > self.best + self.min_delta:
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
