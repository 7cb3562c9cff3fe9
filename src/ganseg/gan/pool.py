"""An image history pool (Shrivastava et al. 2017, used by pix2pix/CycleGAN).

The discriminator is shown a mix of the newest fakes and fakes from earlier steps, so it
cannot forget what the generator produced before and the generator cannot oscillate between
modes that the discriminator has stopped penalising. The pool stores whatever the
discriminator judges (here, stacked (mask, image) inputs), detached.
"""

from __future__ import annotations

import torch


class ImagePool:
    """Hold up to ``size`` past fakes; each query swaps about half of the batch for old ones."""

    def __init__(self, size: int, swap_probability: float = 0.5):
        self.size = size
        self.swap_probability = swap_probability
        self.items: torch.Tensor | None = None  # (n <= size, C, H, W)

    def query(self, fakes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return a batch like ``fakes``: new fakes fill the pool first, then a random half of
        the batch is exchanged with random pool entries (which take the new fakes' place)."""
        fakes = fakes.detach()
        if self.size <= 0:
            return fakes
        batch = fakes.shape[0]
        stored = 0 if self.items is None else self.items.shape[0]
        if stored < self.size:
            take = min(self.size - stored, batch)
            fresh = fakes[:take].clone()
            self.items = fresh if self.items is None else torch.cat([self.items, fresh])
            return fakes
        device = fakes.device
        swap = torch.rand(batch, generator=generator, device="cpu") < self.swap_probability
        slots = torch.randint(self.size, (batch,), generator=generator, device="cpu")
        out = fakes.clone()
        for index in torch.nonzero(swap).flatten().tolist():  # at most B small copies
            slot = int(slots[index])
            out[index] = self.items[slot].to(device)
            self.items[slot] = fakes[index]
        return out

    def state_dict(self) -> dict:
        return {"size": self.size, "items": self.items}

    def load_state_dict(self, state: dict) -> None:
        self.size = int(state["size"])
        self.items = state["items"]
