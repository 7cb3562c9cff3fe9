"""How the tensors run: memory format, cuDNN autotuning, torch.compile; chosen by measurement.

``channels_last`` pays on CUDA (tensor-core convolutions want NHWC). On this project's
reference CPU (2-core AMD EPYC, AVX2, oneDNN) it measured slower than NCHW for the U-Net
training step, so ``auto`` keeps NCHW on CPU; ``benchmarks/train_bench.py`` prints both.
"""

from __future__ import annotations

import torch
from torch import nn


def memory_format_for(setting: str | bool, device: torch.device) -> torch.memory_format:
    use = device.type == "cuda" if setting == "auto" else bool(setting)
    return torch.channels_last if use else torch.contiguous_format


def configure_backends(device: torch.device, cudnn_benchmark: bool, deterministic: bool) -> None:
    """cuDNN autotuning on GPU (fastest kernels; not bit-reproducible, so off when
    ``deterministic``), TF32 matmuls on Ampere+."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile`` when asked. Compilation happens lazily at the first forward pass
    (about a minute on a 2-core CPU for the default U-Net, then faster steps on GPU)."""
    return torch.compile(model) if enabled else model
