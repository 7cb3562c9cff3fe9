"""The machine's practical FLOP ceiling, shared by the benchmarks that report a share of it."""

from __future__ import annotations

import time

import torch


def matmul_gflops(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 3) -> float:
    """Best of ``repeats`` ``size``x``size`` matrix multiplies in ``dtype``, GFLOP/s."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best
