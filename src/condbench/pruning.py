"""Weight savings of pruning c (the study's "computational reduction", appendix B.4): ``condbench export-pruned``.

A dimension of c that is zero at every step contributes nothing to the Linear layers that read c (adaLN's input
is SiLU(c), and SiLU(0) = 0), so their input columns for it can be dropped. The exported network keeps those
layers as :class:`SelectedLinear` (the kept input indices, and the smaller weight); everything else is the model's.

A ``mask=fixed`` policy computes its mask from the mean c over the task's conditions at each step; the timestep
part moves that mean, so the mask may change from step to step. A static checkpoint can drop only the dimensions
removed at EVERY step: the export drops exactly those, says how many the policy removes per step on average, and
records whether the two agree (``exact_for_policy``: the pruned samples are then the policy's samples).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .adapters.base import Adapter
from .checkpoints import file_sha256
from .policies import Policy, parse_policy

PRUNED_CONFIG = "pruned.json"
PRUNED_WEIGHTS = "model.safetensors"
SAVINGS = "savings.json"


class SelectedLinear(nn.Linear):
    """A Linear that reads only the input features ``kept`` (D',) of its (..., D) input: (..., D) -> (..., out)."""

    def __init__(self, kept: torch.Tensor, out_features: int, bias: bool = True):
        super().__init__(len(kept), out_features, bias=bias)
        self.register_buffer("kept", kept.clone().long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.index_select(-1, self.kept), self.weight, self.bias)


@torch.no_grad()
def c_readers(adapter: Adapter, x: torch.Tensor, t: torch.Tensor, cond: Any, keep: torch.Tensor) -> tuple[dict[str, nn.Linear], torch.Tensor]:
    """The Linear layers of the adapter's networks that read c or SiLU(c), found in one ``denoise`` whose hook zeroes
    the dimensions not in ``keep`` (D,) bool; returns them by name, and that denoise's output."""
    hooked: list[torch.Tensor] = []

    def masking(c, t_part, cond_part):
        hooked.append(c * keep.to(c))
        return hooked[-1]

    found: dict[nn.Module, None] = {}

    def spy(module, inputs):
        value = inputs[0]
        if hooked and value.dim() == 2 and value.shape == hooked[-1].shape:
            c = hooked[-1].to(value.dtype)
            if torch.allclose(value, c) or torch.allclose(value, F.silu(c)):
                found[module] = None

    named = {m: f"{prefix}{name}" for prefix, net in _networks(adapter) for name, m in net.named_modules()
             if isinstance(m, nn.Linear)}
    handles = [m.register_forward_pre_hook(spy) for m in named]
    try:
        out = adapter.denoise(x, t, cond, hook=masking)
    finally:
        for handle in handles:
            handle.remove()
    return {named[m]: m for m in found}, out


def _networks(adapter: Adapter) -> list[tuple[str, nn.Module]]:
    """The adapter's attributes that are networks, with the prefix their modules' names get ('' for ``model``)."""
    return [("" if key == "model" else f"{key}.", m) for key, m in vars(adapter).items() if isinstance(m, nn.Module)]


@torch.no_grad()
def static_mask(adapter: Adapter, policy: Policy) -> tuple[torch.Tensor, list[int]]:
    """The dimensions (D,) bool that the ``mask=fixed`` policy removes at every sampler step, and how many it removes
    at each step."""
    if policy.mask != "fixed" or policy.schedule.kind != "all" or policy.branch != "both":
        raise ValueError(f"export-pruned needs a policy with mask=fixed acting at every step on both branches (one "
                         f"mask for every input), got {policy.key()!r}; e.g. tail:0.1,mask=fixed")
    timesteps, steps = adapter.sampler_timesteps(), adapter.sampler_steps
    every = torch.ones(adapter.embed_dim, dtype=torch.bool)
    counts = []
    for step in range(steps):
        reference = adapter.mean_embedding(timesteps[step:step + 1].to(adapter.device))  # (1, D)
        removed = policy.apply(reference, reference, reference, step=step, num_steps=steps,
                               reference=lambda: reference).removed[0].cpu()
        every &= removed
        counts.append(int(removed.sum()))
    return every, counts


def prune_network(network: nn.Module, readers: dict[str, nn.Linear], kept: torch.Tensor) -> nn.Module:
    """Replace each named Linear by a :class:`SelectedLinear` over ``kept`` (D',), its columns copied when it has
    weights (a network on the meta device gets empty ones, to be loaded)."""
    for name, linear in readers.items():
        parent_name, _, child = name.rpartition(".")
        parent = network.get_submodule(parent_name) if parent_name else network
        selected = SelectedLinear(kept, linear.out_features, bias=linear.bias is not None).to(linear.weight.device)
        if not linear.weight.is_meta:
            with torch.no_grad():
                selected.weight.copy_(linear.weight[:, kept])
                if linear.bias is not None:
                    selected.bias.copy_(linear.bias)
        setattr(parent, child, selected)
    return network


def _state_bytes(network: nn.Module) -> tuple[int, int]:
    """Parameters, and bytes of the whole state dict (buffers included: the kept indices cost bytes too)."""
    tensors = network.state_dict().values()
    return sum(p.numel() for p in network.parameters()), sum(t.numel() * t.element_size() for t in tensors)


@torch.no_grad()
def export_pruned(name: str, spec: str, out: str | Path, ckpt: Optional[str] = None,
                  model_config: Optional[dict] = None) -> dict:
    """Write the pruned checkpoint of model ``name`` under policy ``spec`` to ``out``; returns the savings."""
    from safetensors.torch import save_file

    from .registry import load_adapter, load_task, model_entry
    from .storage import atomic_write, ensure_folder

    entry = model_entry(name)
    policy = parse_policy(spec)
    options = {"model_config": model_config} if model_config else {}
    adapter = load_adapter(name, ckpt=ckpt, **options)
    if not hasattr(adapter, "model") or not hasattr(adapter, "latent_shape"):
        raise ValueError(f"export-pruned covers adapters with one network (``model``) and a latent shape; {name} has none")
    dropped, per_step = static_mask(adapter, policy)
    kept = torch.nonzero(~dropped).flatten()  # (D',)
    conditions = load_task(entry.task).analysis_conditions()[:2]
    x = torch.randn(len(conditions), *adapter.latent_shape, generator=torch.Generator().manual_seed(0)).to(adapter.device)
    t = adapter.sampler_timesteps()[:1].expand(len(conditions)).to(adapter.device)
    readers, _ = c_readers(adapter, x, t, conditions, ~dropped.to(adapter.device))
    if not readers:
        raise ValueError(f"{name}: no Linear layer reads c (or its SiLU): nothing to prune")
    params_before, bytes_before = _state_bytes(adapter.model)
    reader_params_before = sum(m.weight.numel() for m in readers.values())
    macs_dropped = sum(m.out_features for m in readers.values()) * int(dropped.sum())  # per network row evaluated
    network = prune_network(adapter.model, readers, kept)
    params_after, bytes_after = _state_bytes(network)
    folder = ensure_folder(out, "output folder")
    state = {k: v.contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(folder / PRUNED_WEIGHTS), metadata={"format": "condbench-pruned"})
    evaluations = adapter.planned_evaluations()
    savings = {
        "model": name, "policy": policy.key(), "c_dim": adapter.embed_dim, "dims_dropped": int(dropped.sum()),
        "dims_removed_per_step_mean": sum(per_step) / len(per_step), "exact_for_policy": len(set(per_step)) == 1
        and per_step[0] == int(dropped.sum()), "readers": len(readers),
        "params": {"before": params_before, "after": params_after, "saved": params_before - params_after,
                   "adaln_before": reader_params_before},
        "bytes": {"before": bytes_before, "after": bytes_after, "saved": bytes_before - bytes_after,
                  "file": (folder / PRUNED_WEIGHTS).stat().st_size},
        "flops": {"saved_per_evaluation": 2 * macs_dropped,
                  "saved_per_sample": 2 * macs_dropped * evaluations if evaluations is not None else None,
                  "counted": "multiply-adds x 2 of the dropped adaLN input columns; evaluations = network rows per "
                             "sample (both guidance branches)"},
    }
    config = {"model": name, "model_config": model_config or {}, "policy": policy.key(), "kept": kept.tolist(),
              "readers": sorted(readers), "source_checkpoint": adapter.checkpoint, "savings": savings}
    atomic_write(folder / PRUNED_CONFIG, json.dumps(config, indent=1, default=str))
    atomic_write(folder / SAVINGS, json.dumps(savings, indent=1))
    return savings


def load_pruned(folder: str | Path, device: str = "cpu") -> Adapter:
    """The adapter of an exported pruned checkpoint: the model's network without weights, its c readers made
    :class:`SelectedLinear`, then the folder's weights loaded strictly."""
    from safetensors.torch import load_file

    from .checkpoints import require_file
    from .registry import model_entry

    folder = Path(folder)
    config = json.loads(require_file(folder / PRUNED_CONFIG, "pruned checkpoint config",
                                     "write it with `condbench export-pruned MODEL --policy SPEC -o DIR`").read_text())
    weights = require_file(folder / PRUNED_WEIGHTS, "pruned checkpoint weights", "export it again")
    entry = model_entry(config["model"])
    adapter = entry.planner(**({"model_config": config["model_config"]} if config["model_config"] else {}))
    kept = torch.tensor(config["kept"], dtype=torch.long)
    readers = {name: adapter.model.get_submodule(name) for name in config["readers"]}
    prune_network(adapter.model, readers, kept)
    adapter.model.load_state_dict(load_file(str(weights)), strict=True, assign=True)
    adapter.checkpoint = {"path": str(weights), "sha256": file_sha256(weights), "pruned": config["policy"]}
    return adapter.to(device)
