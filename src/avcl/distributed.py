"""Process-group set-up and autograd-aware collectives for losses over the global batch.

Every helper is the identity (or the single-process answer) when no process group is initialised,
so the same code runs in one process and under ``torchrun``. All ranks must pass tensors of the same
shape (equal per-rank batches, as ``DistributedSampler`` with ``drop_last`` gives).
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor


def _autograd_collective(fn, x: Tensor):
    """``fn(x)`` from torch.distributed.nn.functional, the autograd-aware API that runs on gloo (CPU) as well
    as NCCL. Its deprecation notice names a replacement without that backward: silenced here, for this
    call only (the caller's warning filters stay as they are)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional", category=FutureWarning)
        return fn(x)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def gather_with_grad(x: Tensor) -> Tensor:
    """``(B, ...)`` -> ``(world * B, ...)``, the ranks' tensors concatenated in rank order.

    The backward sends each slice's gradient, summed over all ranks' losses, back to the rank that
    owns it, so ``sum over ranks of the per-rank losses`` is differentiated correctly.
    """
    if world_size() == 1:
        return x
    return torch.cat(_autograd_collective(dist_fn.all_gather, x), dim=0)


def all_reduce_with_grad(x: Tensor) -> Tensor:
    """Sum of ``x`` over ranks; the backward sums the incoming gradients over ranks as well."""
    if world_size() == 1:
        return x
    return _autograd_collective(dist_fn.all_reduce, x)


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """``(B, ...)`` -> ``(world * B, ...)`` without autograd (queues of negatives, evaluation)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def setup(backend: str | None = None) -> tuple[int, int, int, torch.device]:
    """Join the process group described by torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``.

    Returns ``(rank, world_size, local_rank, device)``: ``cuda:<local_rank>`` when CUDA is available,
    else the CPU. The backend defaults to nccl on CUDA and gloo otherwise. Without torchrun's
    variables (or with ``WORLD_SIZE=1``) nothing is initialised and ``(0, 1, 0, device)`` comes back.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world == 1:
        return 0, 1, 0, device
    if not is_distributed():
        dist.init_process_group(backend=backend or ("nccl" if cuda else "gloo"))
    return dist.get_rank(), dist.get_world_size(), local_rank, device


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()
