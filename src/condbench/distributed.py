"""One process or many (``torchrun``): which shards this process computes and how results reach rank 0."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "World":
        """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs); a single process otherwise."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend)
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
