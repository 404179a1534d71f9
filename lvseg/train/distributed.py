"""Distributed data parallel training under ``torchrun``: process group, devices, sharding.

``torchrun --nproc_per_node=N -m lvseg train ...`` starts N copies of the trainer with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in the environment; :func:`setup` sees them and
joins the process group (NCCL between GPUs, gloo on CPU). Every rank draws the same epoch
permutation of the training slices and takes every ``world_size``-th one (what
``DistributedSampler`` does), gradients are averaged by ``DistributedDataParallel``, and only
rank 0 writes the run store and the checkpoints. Without those variables everything here is a
no-op for one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from lvseg.errors import InvalidInputError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(request: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA, else Apple MPS, else CPU. Asking for a missing device is an error."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if request == "auto":
        request = "cuda" if cuda else "mps" if mps else "cpu"
    if request == "cuda":
        if not cuda:
            raise InvalidInputError(None, "--device cuda: no CUDA device is available here")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if request == "mps":
        if not mps:
            raise InvalidInputError(None, "--device mps: Apple MPS is not available here")
        return torch.device("mps")
    return torch.device("cpu")


def setup(device_request: str) -> tuple[Context, torch.device]:
    """Join the torchrun process group if there is one; return the context and this rank's
    device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context(), pick_device(device_request)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_request, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "mps":
        raise InvalidInputError(None, "distributed training runs on CUDA (NCCL) or CPU (gloo)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
    return Context(rank, world_size, local_rank, backend), device


def shutdown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def any_rank(context: Context, flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks take the same branch)."""
    if not context.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def shard(order: np.ndarray, context: Context) -> np.ndarray:
    """This rank's share of an epoch's order, padded by wrapping so every rank has as many
    slices (as DistributedSampler does): ranks then run the same number of steps."""
    if not context.distributed:
        return order
    per_rank = -(-len(order) // context.world_size)
    padded = np.resize(order, per_rank * context.world_size)
    return padded[context.rank :: context.world_size]


def sync_buffers(model: torch.nn.Module, context: Context) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP broadcasts them
    at the start of each forward, but the last forward of an epoch then updates them per rank;
    after this every rank validates, checkpoints and stops with the very same model."""
    if context.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)
