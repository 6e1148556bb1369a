"""Distributed helpers for torchrun (PyTorch DDP); every helper also works single-process.

Launch with ``torchrun --nproc_per_node N -m dermsynth.cli train-gan ...``: torchrun
sets RANK, WORLD_SIZE and LOCAL_RANK, :func:`init` starts the process group
(NCCL on CUDA, gloo on CPU), and only rank 0 writes files or prints.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Callable

import torch
import torch.distributed as dist

from dermsynth.errors import StorageError


def init() -> torch.device:
    """Start the process group when launched by torchrun; return this process's device."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def print0(*args: Any, **kwargs: Any) -> None:
    if is_main():
        print(*args, **kwargs, flush=True)


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over processes (a copy; the input is unchanged)."""
    out = values.detach().clone()
    if is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= world_size()
    return out


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (a cheap all-reduce; no-op single-process)."""
    if not is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device="cuda" if torch.cuda.is_available() else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def main_writes(action: Callable[[], None]) -> None:
    """``action()`` on the main process only. A write it could not make (a :class:`StorageError`, such as a full
    disk) stops every rank, the main one with its own line and the others with one that says so, instead of
    leaving them waiting in the next collective for a rank that has gone."""
    failure = None
    if is_main():
        try:
            action()
        except StorageError as e:
            failure = e
    if any_rank(failure is not None):
        raise failure if failure is not None else StorageError(
            errno.EIO, f"rank {rank()}: stopping because the main process could not write the run's files "
                       "(its own line says which and why)")


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order (a one-item list single-process)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    if is_initialized():
        dist.destroy_process_group()
