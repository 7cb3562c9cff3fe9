"""One intra-op thread for these tests: their tensors are tiny, and on a shared 2-core machine
OpenMP's spinning threads made them up to 10x slower (measured), not faster."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
