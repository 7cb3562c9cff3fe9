"""The image history pool and the generator EMA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganseg.gan.ema import Ema
from ganseg.gan.pool import ImagePool


def test_pool_fills_before_swapping_then_mixes_old_and_new():
    pool = ImagePool(size=4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: the batch passes through
    assert pool.items.shape[0] == 4
    generator = torch.Generator().manual_seed(0)
    mixed = [pool.query(torch.full((4, 1, 1, 1), 100.0 + i), generator) for i in range(20)]
    values = torch.cat(mixed).flatten()
    assert (values < 100).any()  # some old fakes came back
    assert (values >= 100).any()  # and new ones went through
    assert all(m.shape == (4, 1, 1, 1) for m in mixed)


def test_pool_is_deterministic_and_resumable():
    def run(pool, generator, start, count):
        return [pool.query(torch.full((3, 1, 2, 2), float(start + i)), generator) for i in range(count)]

    reference = ImagePool(5)
    gen = torch.Generator().manual_seed(3)
    expected = run(reference, gen, 0, 10)
    resumed = ImagePool(5)
    gen2 = torch.Generator().manual_seed(3)
    run(resumed, gen2, 0, 4)
    state, gen_state = resumed.state_dict(), gen2.get_state()
    restored = ImagePool(5)
    restored.load_state_dict(state)
    gen3 = torch.Generator()
    gen3.set_state(gen_state)
    got = run(restored, gen3, 4, 6)
    assert all(torch.equal(a, b) for a, b in zip(expected[4:], got))


def test_pool_of_size_zero_is_a_pass_through():
    fakes = torch.randn(2, 1, 4, 4)
    assert torch.equal(ImagePool(0).query(fakes), fakes)


def test_ema_follows_the_lerp_formula_with_warmup():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = Ema(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # warm-up decay min(0.9, 2 / 11)
    expected = 1 - 2 / 11
    assert float(ema.model.weight) == pytest.approx(expected)
    for _ in range(200):
        ema.update(model)
    assert float(ema.model.weight) == pytest.approx(1.0, abs=1e-6)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_with_zero_decay_is_the_live_model_and_copies_buffers():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = Ema(model, decay=0.0)
    model.train()
    model(torch.randn(8, 2))  # moves running stats
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    for live, shadow in zip(model.state_dict().values(), ema.model.state_dict().values()):
        assert torch.equal(live, shadow)
