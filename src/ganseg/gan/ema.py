"""An exponential moving average of the generator's weights, used for every sample.

Averaging over the last ~1/(1 - decay) steps removes the step-to-step jitter of adversarial
training (Karras 2018; Yazici 2019), so grids and synthetic pairs come from a steadier model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class Ema:
    """``shadow = decay * shadow + (1 - decay) * weights`` after every generator step.

    Early on the effective decay is ``min(decay, (1 + n) / (10 + n))`` (n = updates so far),
    so the average is not dominated by the random initial weights. Buffers (norm running
    statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        shadow = [p for p in self.model.parameters()]
        live = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(shadow, live, 1.0 - decay)
        for shadow_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            shadow_buffer.copy_(buffer)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
