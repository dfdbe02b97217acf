"""Block diversity (the study's seed 003, DiverseDiT): how alike the outputs of a network's blocks are.

For each policy, each chosen sampling step s: the sampler runs the policy's own trajectory to step s, then one
network call at step s (the conditional branch, with the policy acting) records every block's output (N, T, D).
Between every pair of blocks it reports linear CKA (Kornblith et al. 2019, tokens of all samples as examples)
and the mean cosine of the same token's two vectors. ``condbench analyze --blocks`` writes ``blocks.json``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .adapters.base import Adapter, PolicyHook
from .policies import BRANCH_COND, Policy
from .seeding import PairedNoise

BLOCKS_FILE = "blocks.json"  # in a run directory, the report shows its heatmaps


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same M examples, x (M, D1), y (M, D2): in [0, 1]."""
    x, y = x.double(), y.double()
    x, y = x - x.mean(0), y - y.mean(0)
    cross = (y.T @ x).norm() ** 2
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()))


def mean_token_cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over samples and tokens of cos(x[n, t], y[n, t]); x, y (N, T, D)."""
    return float(torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=-1).mean())


def pairwise(outputs: list[torch.Tensor]) -> dict[str, list[list[float]]]:
    """CKA and mean token cosine between every pair of block outputs, each (N, T, D): two (L, L) matrices."""
    flat = [o.reshape(-1, o.shape[-1]) for o in outputs]  # (N*T, D)
    count = len(outputs)
    cka = [[linear_cka(flat[i], flat[j]) for j in range(count)] for i in range(count)]
    cosine = [[mean_token_cosine(outputs[i], outputs[j]) for j in range(count)] for i in range(count)]
    return {"cka": cka, "cosine": cosine}


def network_blocks(adapter: Adapter) -> nn.ModuleList:
    """The stack of transformer blocks of the adapter's network (``model.blocks``)."""
    blocks = getattr(getattr(adapter, "model", None), "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) < 2:
        raise ValueError(f"{adapter.name}: block diversity needs a network with a list of blocks (model.blocks)")
    return blocks


@torch.no_grad()
def block_outputs(adapter: Adapter, conditions: Any, policy: Policy, steps: Sequence[int],
                  seed: int = 0) -> dict[int, list[torch.Tensor]]:
    """Every block's output (N, T, D) at each sampling step of ``steps`` on the policy's trajectory (one sampling
    run), conditional branch."""
    n = len(conditions)
    states = adapter.sample(conditions, PairedNoise(seed, range(n), adapter.device), policy, keep_states=steps).states
    branch = torch.full((n,), BRANCH_COND, device=adapter.device)
    outputs: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda module, inputs, out: outputs.append(out.detach().cpu()))
               for b in network_blocks(adapter)]
    found = {}
    try:
        for step in steps:
            t = adapter.sampler_timesteps()[step].expand(n).to(adapter.device)
            hook = PolicyHook(policy, adapter.sampler_steps, reference=adapter.mean_embedding, first_step=step,
                              timestep_embedding=adapter.timestep_embedding).at(step, t, branch)
            outputs.clear()
            adapter.denoise(states[step].x, t, conditions, hook=hook)
            found[step] = list(outputs)
    finally:
        for handle in handles:
            handle.remove()
    return found


def block_diversity(adapter: Adapter, conditions: Any, policies: Sequence[Policy], steps: Sequence[int],
                    seed: int = 0) -> dict:
    """For each policy and step: the CKA and cosine matrices between blocks, and their means off the diagonal."""
    out = {"model": adapter.name, "num_samples": len(conditions), "steps": list(steps),
           "timesteps": [float(adapter.sampler_timesteps()[s]) for s in steps], "policies": {}}
    for policy in policies:
        per_step, outputs = {}, block_outputs(adapter, conditions, policy, steps, seed)
        for step in steps:
            matrices = pairwise(outputs[step])
            count = len(matrices["cka"])
            for name in ("cka", "cosine"):
                off = [matrices[name][i][j] for i in range(count) for j in range(count) if i != j]
                matrices[f"mean_{name}"] = sum(off) / len(off)
            per_step[str(step)] = matrices
        out["policies"][policy.key()] = per_step
    return out
