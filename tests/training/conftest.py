"""One intra-op thread for these tests: their tensors are tiny, and on a shared 2-core machine
OpenMP's spinning threads made them up to 10x slower (measured), not faster."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_thread(single_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""
