"""Optimisers and learning-rate schedules by name, from explicit arguments."""

from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = ("adam", "adamw", "rmsprop")
SCHEDULERS = ("cosine", "plateau", "none")


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], kind: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Adam (L2 penalty in the gradient), AdamW (decoupled decay) or RMSprop."""
    params = list(parameters)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=0.9)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {kind!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    steps: int,
    plateau_patience: int = 4,
    plateau_factor: float = 0.5,
):
    """cosine: anneal from lr to lr/100 over ``steps`` optimizer steps, stepped after each one
    (a schedule stepped per validation holds the lr flat for a whole interval: with 3
    validations a run spends its first third at full lr). plateau: multiply by ``factor`` after
    ``patience`` validations without improvement of a maximised metric, stepped with the
    metric at each validation. none: None. :func:`ganseg.training.loop.fit` does the stepping.
    """
    if kind == "cosine":
        base = optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1), eta_min=base / 100)
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=plateau_factor, patience=plateau_patience
        )
    if kind == "none":
        return None
    raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {kind!r}")
