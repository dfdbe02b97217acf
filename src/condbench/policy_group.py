"""Several policies sampled in one batch, so a GPU sees P times the rows and reads the weights once per step.

The runner repeats a batch of N samples P times (the same conditions, the same paired noise per index) and
hands the sampler a :class:`PolicyGroup` instead of a policy. The policy hook then applies policy p to the rows
of samples p*N .. (p+1)*N - 1 of every guidance branch; nothing else a sampler does depends on the policy, so
each block follows the trajectory it would follow alone. It is the same arithmetic row by row: bit for bit
equal wherever a network's per-row result does not depend on the batch size (tested on the CPU; on a GPU another
batch size may select other kernels, exactly as a change of ``batch_size`` does, unless the adapter evaluates
its network in fixed ``microbatch`` calls).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .policies import Policy


@dataclass(frozen=True)
class PolicyGroup:
    """``policies[p]`` acts on samples p*block .. (p+1)*block - 1 of a sampler batch of len(policies)*block."""

    policies: tuple[Policy, ...]
    block: int  # samples per policy

    def active(self, step: int, num_steps: int) -> bool:
        """Whether some member acts at ``step`` (a sampler refuses to resume past a step where one acts)."""
        return any(p.active(step, num_steps) for p in self.policies)

    def canonical(self) -> str:
        return " + ".join(p.canonical() for p in self.policies)

    @property
    def samples(self) -> int:
        return len(self.policies) * self.block

    def sample_of_row(self, branch: Optional[torch.Tensor], rows: int) -> torch.Tensor:
        """The sample index (rows,), on the CPU, of every row of a network batch: its rank among the rows of its guidance branch.

        Every built-in sampler lays each branch out in sample order (``[cond; uncond]``, or diffusers'
        ``[negative; positive]``); a batch with another number of rows per branch cannot be split by policy.
        """
        if branch is None:
            sample = torch.arange(rows)
        else:
            branch = branch.cpu()  # (rows,)
            sample = torch.empty(len(branch), dtype=torch.long)
            for value in branch.unique():
                where = branch == value
                sample[where] = torch.arange(int(where.sum()))
        counts = torch.bincount(sample, minlength=self.samples)
        if len(counts) != self.samples or bool((counts != counts[0]).any()):
            raise ValueError(f"policies {self.canonical()} run together on {self.samples} samples, but the network "
                             f"batch holds {len(sample)} rows in {1 if branch is None else len(branch.unique())} "
                             "branch(es): this sampler's batch is not one row per sample and branch; run its "
                             "policies one at a time (together: 1)")
        return sample


def tile_conditions(cond: Any, times: int) -> Any:
    """The conditions of a batch, repeated ``times`` times along the sample axis (one copy per policy).

    Tensors (N, ...) are concatenated, lists (prompts) repeated, dicts of tensors tiled key by key, and objects
    with a ``tile(times)`` method (the pose tasks' lazily read pair batches) tile themselves.
    """
    if times == 1:
        return cond
    if isinstance(cond, torch.Tensor):  # before ``tile``: Tensor.tile repeats the last dimension
        return cond.repeat(times, *([1] * (cond.ndim - 1)))  # (times * N, ...)
    if hasattr(cond, "tile"):
        return cond.tile(times)
    if isinstance(cond, Mapping):
        return {key: tile_conditions(value, times) for key, value in cond.items()}
    if isinstance(cond, (list, tuple)):
        return type(cond)(list(cond) * times)
    raise TypeError(f"cannot repeat conditions of type {type(cond).__name__} for policies run together; "
                    "give the condition type a tile(times) method, or run with together: 1")
