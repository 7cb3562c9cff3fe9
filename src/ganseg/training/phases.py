"""One optimisation iteration as a sequence of phases: the StyleGAN2-ADA pattern, for every trainer.

A phase is a module, its optimizer, a list of loss terms and an interval. One iteration runs
each phase that is due at its step: zero the module's gradients, sum its terms, backward
(through the one grad scaler, for fp16), optionally clip the global gradient norm, step, then
the phase's constraints (weight clipping) and hooks (the EMA generator). The scaler is updated
once per iteration, after every phase, as the AMP documentation prescribes for several
optimizers. The three trainers are three phase lists:

    segmenter (train)           seg: segmentation loss
    GAN (augment)               D: d_loss + eager penalties; Dreg/<p>: a lazy penalty; G: g_loss + task
    adversarial (finetune)      D, Dreg/<p> as above; G: segmentation + adversarial [+ semi-supervised]

A term is ``term(judge, inputs) -> (loss, stats)``: ``judge`` is the module the term scores
with (the discriminator for D and G phases, None for a plain segmenter) and ``inputs`` what the
iteration prepared once (a batch, or the generator's output). Phases never ask which loss they
run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Stats = dict[str, torch.Tensor]
Term = Callable[[nn.Module | None, Any], tuple[torch.Tensor, Stats]]


@dataclass
class Phase:
    name: str
    module: nn.Module  # whose parameters this phase trains
    optimizer: torch.optim.Optimizer
    terms: list[Term]
    interval: int = 1
    judge: nn.Module | None = None  # the module the terms receive (D for both D and G phases)
    grad_clip: float | None = None  # max global gradient norm of ``module``; None = no clipping
    grad_norm_stat: str = "grad_norm"  # the stat that reports the norm before clipping
    constraints: list[Callable[[nn.Module], None]] = field(default_factory=list)
    after_step: list[Callable[[], None]] = field(default_factory=list)

    def due(self, step: int) -> bool:
        return step % self.interval == 0


def run_phases(
    phases: list[Phase], inputs: Any, step: int, scaler: torch.amp.GradScaler | None
) -> tuple[Stats, dict[str, torch.Tensor]]:
    """One iteration at ``step`` (1-based): every due phase, then one scaler update.

    Returns the terms' stats and each phase's total loss (detached), by phase name.
    """
    scaler = scaler if scaler is not None and scaler.is_enabled() else None
    stats: Stats = {}
    totals: dict[str, torch.Tensor] = {}
    for phase in phases:
        if not phase.due(step):
            continue
        if phase.judge is not None:
            # Only the trained module builds weight gradients: a G phase backpropagates
            # through the discriminator to its input but skips D's weight gradients.
            phase.judge.requires_grad_(phase.judge is phase.module)
        phase.module.requires_grad_(True)
        phase.optimizer.zero_grad(set_to_none=True)
        total = None
        for term in phase.terms:
            term_loss, term_stats = term(phase.judge, inputs)
            total = term_loss if total is None else total + term_loss
            stats.update(term_stats)
        (scaler.scale(total) if scaler else total).backward()
        if phase.grad_clip is not None:
            if scaler:
                scaler.unscale_(phase.optimizer)
            params = [p for group in phase.optimizer.param_groups for p in group["params"]]
            stats[phase.grad_norm_stat] = torch.nn.utils.clip_grad_norm_(params, phase.grad_clip).detach()
        if scaler:
            scaler.step(phase.optimizer)
        else:
            phase.optimizer.step()
        for constraint in phase.constraints:
            constraint(phase.module)
        for hook in phase.after_step:
            hook()
        totals[phase.name] = total.detach()
    if scaler:
        scaler.update()
    for phase in phases:
        if phase.judge is not None:
            phase.judge.requires_grad_(True)
    return stats, totals
