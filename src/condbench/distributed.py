"""One process or many (``torchrun``): which shards this process computes and how results reach rank 0.

Under torchrun rank 0 scores each cell while the other ranks wait in a collective. The process group's timeout
must outlast that wait (NCCL's default is 10 minutes; scoring 50k samples with 200 bootstrap resamples can take
longer): it is ``CONDBENCH_DIST_TIMEOUT`` seconds, by default :data:`DEFAULT_TIMEOUT_S` (2 hours).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

TIMEOUT_VARIABLE = "CONDBENCH_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 2 * 3600  # longer than rank 0 scoring a cell of 50k samples while the other ranks wait


def collective_timeout() -> timedelta:
    """How long a rank waits in a collective: ``CONDBENCH_DIST_TIMEOUT`` seconds, else :data:`DEFAULT_TIMEOUT_S`."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"environment variable {TIMEOUT_VARIABLE}={text!r} must be a positive number of seconds "
                         f"(how long ranks wait while rank 0 scores a cell), e.g. {TIMEOUT_VARIABLE}={DEFAULT_TIMEOUT_S}")
    return timedelta(seconds=seconds)


def join_process_group() -> None:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs), with :func:`collective_timeout`."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=collective_timeout())


@dataclass
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "World":
        """Join the process group torchrun set up (:func:`join_process_group`); a single process otherwise."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls()
        if not dist.is_initialized():
            join_process_group()
        return cls(dist.get_rank(), dist.get_world_size())

    def device(self, requested: str) -> str:
        if requested == "cuda" and self.size > 1:
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return requested

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` on rank 0 (in rank order); an empty list elsewhere."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out if self.is_main else []

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()
