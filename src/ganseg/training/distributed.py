"""Data-parallel training through ``torchrun``: process group, device, reductions.

``torchrun --nproc_per_node=N -m pipelines train ...`` starts N copies with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` set; :func:`init_distributed` joins them (NCCL on CUDA, gloo
on CPU) and gives each its device. Everything here is a no-op in a single process, so loops
call these helpers unconditionally. Only rank 0 writes files and talks to MLflow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ganseg.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """What ``torchrun`` announced in the environment (a single process when nothing)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun; returns this process's place in it."""
    info = env_dist_info()
    if not info.enabled or dist.is_initialized():
        return info
    if device.type == "cuda":
        if torch.cuda.device_count() <= info.local_rank:
            raise ConfigError(
                f"torchrun started local rank {info.local_rank} but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible; lower --nproc_per_node"
            )
        torch.cuda.set_device(info.local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return info


def process_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each process on its own GPU (``cuda:LOCAL_RANK``); CPU processes share the CPU."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def wrap_ddp(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    if not info.enabled:
        return model
    if device.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (in place, also returned); identity in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
