"""Device, precision and seeding: one place decides how the tensors run."""

from __future__ import annotations

import os
import random
from contextlib import nullcontext

import numpy as np
import torch

from ganseg.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; an unavailable explicit device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"common.device: '{name}' requested but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("common.device: 'mps' requested but MPS is not available")
    return torch.device(name)


def select_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype; float32 means no autocast.

    ``auto``: float32 on CPU (CPUs without native bf16 run bf16 matmuls hundreds of times
    slower: measured ~300x here; see benchmarks/), bf16 on CUDA when supported, else fp16.
    """
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise ConfigError("common.precision: fp16 autocast is not supported on CPU; use bf16 or fp32")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """An autocast context for ``dtype``, or a no-op for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; on CPU with ``deterministic`` results repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
