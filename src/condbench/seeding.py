"""Paired, invariant noise: the noise of sample i comes from (seed, i) alone.

Never from the rank, the batch size, the number of devices or the device: the streams are CPU generators whose
draws are moved to the device (a CUDA generator's stream differs from the CPU's for the same seed), so every
policy of a model sees the same noise for the same index, and a cache shared or resumed across a CPU and a GPU
run holds one noise stream.
"""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

from .lazy import torch  # torch-free import: the dataset listings of the run's preflight use sample_seed


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of a run seeded with ``seed`` (a hash, so neighbours are unrelated)."""
    digest = hashlib.sha256(f"condbench:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class PairedNoise:
    """One random stream per sample (a CPU generator); each ``draw`` takes the next block of every stream and
    moves it to ``device``."""

    def __init__(self, seed: int, indices: Sequence[int], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.indices = [int(i) for i in indices]
        self.generators = [torch.Generator().manual_seed(sample_seed(seed, index)) for index in self.indices]

    def __len__(self) -> int:
        return len(self.generators)

    def draw(self, shape: Sequence[int], dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """Standard normal noise (N, *shape), row i from sample i's stream (float32 unless ``dtype``)."""
        rows = [torch.randn(tuple(shape), generator=g, dtype=dtype or torch.float32) for g in self.generators]
        return torch.stack(rows).to(self.device)  # (N, *shape)

    def skip(self, shape: Sequence[int], count: int, dtype: Optional[torch.dtype] = None) -> None:
        """Advance every stream by ``count`` draws of ``shape`` (to resume a trajectory part-way)."""
        for _ in range(count):
            for g in self.generators:
                torch.randn(tuple(shape), generator=g, dtype=dtype or torch.float32)
