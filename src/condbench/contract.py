"""The adapter contract: what every adapter must honour for condbench's numbers to mean what they say.

Each rule is a function of a :class:`ContractCase` (an adapter on its own tiny configuration, a few
conditions, and what its task expects from ``decode``). ``condbench check-adapter NAME`` runs them on the
registry entry's case; plugin authors call :func:`condbench.testing.assert_adapter_contract` in their tests.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from .adapters.base import Adapter, SamplerState
from .checkpoints import file_sha256
from .policies import BASELINE, BRANCH_COND, Policy, parse_policy
from .policy_group import PolicyGroup, tile_conditions
from .pruning import c_readers
from .seeding import PairedNoise
from .stored_arrays import exact_numpy, state_arrays, state_tensor, widened

RULES: dict[str, str] = {
    "c-shape": "embed_parts gives c (N, D) with D = embed_dim, floating point and finite, and parts of c's shape",
    "parts-sum": "c is its timestep part plus its condition part",
    "hook-every-step": "the policy hook is called at every sampling step for every row of every guidance branch, "
                       "with c = its parts' sum, the branch of each row, and the conditions' own condition part",
    "hook-reaches-network": "masking c through the hook equals masking it inside the network (the input columns "
                            "of every Linear that reads c, or its SiLU, zeroed)",
    "baseline-identical": "the baseline policy gives samples bit-identical to no policy",
    "noise-paired": "noise depends on (seed, index) only: one batch, or one sample at a time in reverse order, "
                    "gives the same samples",
    "policies-together": "policies sampled in one batch (the conditions repeated, a PolicyGroup) give each policy "
                         "the samples and trace it gives alone",
    "stored-round-trip": "what the runner stores goes through numpy unchanged in the adapter's own dtype: a kept "
                         "sampler state comes back bit for bit, a late policy resumed from it equals the policy run "
                         "from step 0, and decoded outputs keep their values",
    "describe": "describe() is JSON (no object addresses), names the checkpoint's sha256 and the sampler settings (with the steps)",
    "decode": "decode gives the task's shape and range, finite",
}
SEED = 1234
TOLERANCE = 1e-4  # of the reference's scale: another batch size may round matrix products differently


@dataclass
class ContractCase:
    """An adapter on a configuration small enough to check in seconds, and what its task expects."""

    adapter: Adapter
    conditions: Any  # N >= 2 conditions, sliceable like a task's conditions()
    output_shape: tuple[int, ...]  # one decoded output: (C, H, W) images, (L,) waveforms
    output_range: Optional[tuple[float, float]] = (0.0, 1.0)  # None: any finite values
    checkpoint: Optional[Path] = None  # the file the adapter loaded; its sha256 must be in describe()
    c_in_linears: bool = True  # False: the network reads c other than through Linear layers (U-ViT's tokens)
    scratch: Any = None  # what must live as long as the case (a temporary folder holding the checkpoint)


@dataclass
class RuleResult:
    rule: str
    passed: Optional[bool]  # None: not checked (``detail`` says why)
    detail: str = ""

    def line(self) -> str:
        status = {True: "ok  ", False: "FAIL", None: "skip"}[self.passed]
        return f"{status} {self.rule:<21} {self.detail or RULES[self.rule]}"


class ContractError(AssertionError):
    """An adapter broke rules of the contract; the message names each broken rule."""


class RuleBroken(Exception):
    pass


class RuleSkipped(Exception):
    pass


def _close(ours: torch.Tensor, reference: torch.Tensor, tolerance: float = 1e-5) -> tuple[bool, float]:
    scale = max(1.0, float(reference.abs().max())) if reference.numel() else 1.0
    error = float((ours.double() - reference.double()).abs().max()) if reference.numel() else 0.0
    return ours.shape == reference.shape and error <= tolerance * scale, error


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise RuleBroken(problem)


@dataclass
class _Run:
    """One contract check: the case, and the samples it computed once for several rules."""

    case: ContractCase
    memo: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.case.conditions)

    def sample(self, policy: Optional[Policy] = None, indices: Optional[range] = None) -> torch.Tensor:
        indices = indices if indices is not None else range(self.n)
        conditions = self.case.conditions[indices.start:indices.stop]
        noise = PairedNoise(SEED, indices, self.case.adapter.device)
        return self.case.adapter.sample(conditions, noise, policy).samples.detach().cpu()

    def plain(self) -> torch.Tensor:
        if "plain" not in self.memo:
            self.memo["plain"] = self.sample()
        return self.memo["plain"]

    def timesteps(self) -> torch.Tensor:
        return self.case.adapter.sampler_timesteps()


def _rule_c_shape(run: _Run) -> str:
    adapter = run.case.adapter
    for t in run.timesteps()[[0, -1]]:
        parts = adapter.embed_parts(run.case.conditions, t)
        _require(tuple(parts.c.shape) == (run.n, adapter.embed_dim),
                 f"c has shape {tuple(parts.c.shape)}, expected ({run.n}, {adapter.embed_dim}) (N, embed_dim)")
        _require(parts.c.dtype in (torch.float32, torch.float16, torch.bfloat16),
                 f"c has dtype {parts.c.dtype}, expected the network's floating dtype (float32/16, bfloat16)")
        _require(bool(torch.isfinite(parts.c).all()), "c has NaN or infinite values")
        _require(parts.t.shape == parts.c.shape and parts.cond.shape == parts.c.shape,
                 f"parts have shapes {tuple(parts.t.shape)} and {tuple(parts.cond.shape)}, c {tuple(parts.c.shape)}")
    return f"c ({run.n}, {adapter.embed_dim}) {parts.c.dtype}"


def _rule_parts_sum(run: _Run) -> str:
    for t in run.timesteps()[[0, -1]]:
        parts = run.case.adapter.embed_parts(run.case.conditions, t)
        ok, error = _close(parts.t + parts.cond, parts.c)
        _require(ok, f"|t_part + cond_part - c| = {error:.3g} at t = {float(t):g}")
    return "c = t_part + cond_part"


@dataclass(frozen=True)
class _RecordingPolicy(Policy):
    """A policy that changes nothing (``tail:0``) and records every call the sampler's hook makes."""

    calls: list = field(default_factory=list, compare=False, hash=False)

    def apply(self, c, t_part, cond_part, **options):
        branch = options.get("branch")
        self.calls.append((options["step"], c.detach().cpu(), t_part.detach().cpu(), cond_part.detach().cpu(),
                           None if branch is None else branch.detach().cpu()))
        return super().apply(c, t_part, cond_part, **options)


def _rule_hook_every_step(run: _Run) -> str:
    adapter, n = run.case.adapter, run.n
    identity = parse_policy("tail:0")
    policy = _RecordingPolicy(**{k: getattr(identity, k) for k in ("spec", "action", "schedule", "mask", "branch",
                                                                     "seed")})
    run.sample(policy)
    steps = adapter.sampler_steps
    seen = sorted({call[0] for call in policy.calls})
    _require(seen == list(range(steps)), f"the hook was called at steps {seen}, expected every step 0..{steps - 1}")
    own = adapter.embed_parts(run.case.conditions, run.timesteps()[0]).cond.detach().cpu()  # (N, D)
    rows = 0
    for step in range(steps):
        calls = [call for call in policy.calls if call[0] == step]
        c, t_part, cond_part = (torch.cat([call[i] for call in calls]) for i in (1, 2, 3))
        rows += len(c)
        _require(len(c) >= n, f"step {step}: the hook saw {len(c)} rows for {n} samples")
        ok, error = _close(t_part + cond_part, c)
        _require(ok, f"step {step}: the hook's c is not its parts' sum (error {error:.3g})")
        if len(c) > n:
            _require(all(call[4] is not None for call in calls),
                     f"step {step}: {len(c)} rows (guidance branches) but the hook was not told which branch each is")
        branch = torch.cat([call[4] for call in calls]) if all(call[4] is not None for call in calls) else None
        cond_rows = cond_part[branch == BRANCH_COND] if branch is not None else cond_part
        _require(len(cond_rows) == n, f"step {step}: {len(cond_rows)} conditional rows for {n} samples")
        ok, error = _close(cond_rows, own)
        _require(ok, f"step {step}: the conditional rows' condition part differs from embed_parts of the "
                     f"conditions (error {error:.3g})")
    planned = adapter.planned_evaluations()
    if planned is not None:
        _require(rows == n * planned, f"the hook saw {rows} rows, the sampler plans {planned} evaluations x {n}")
    return f"{steps} steps, {rows} rows"


def _rule_hook_reaches_network(run: _Run) -> str:
    adapter, case = run.case.adapter, run.case
    x = torch.randn(run.plain().shape, generator=torch.Generator().manual_seed(SEED)).to(adapter.device)
    t = run.timesteps()[0].expand(run.n).to(adapter.device)
    keep = (torch.arange(adapter.embed_dim) % 2 == 1).to(adapter.device)  # (D,) every other dimension zeroed
    readers, masked = c_readers(adapter, x, t, case.conditions, keep)
    masked = masked.detach().cpu()
    plain = adapter.denoise(x, t, case.conditions).detach().cpu()
    identity = adapter.denoise(x, t, case.conditions, hook=lambda c, tp, cp: c).detach().cpu()
    _require(torch.equal(identity, plain), "a hook returning c unchanged changes the output")
    _require(not torch.equal(masked, plain), "zeroing half of c through the hook changes nothing: the network "
                                             "does not use the hook's c")
    if not case.c_in_linears:
        return "the hook's c reaches the network (read as tokens, not through Linear layers)"
    _require(bool(readers), "no Linear layer reads the hook's c (or its SiLU): the network does not use the hook's c")
    saved = {m: m.weight.detach().clone() for m in readers.values()}
    try:
        with torch.no_grad():
            for m in saved:
                m.weight[:, ~keep] = 0
        inside = adapter.denoise(x, t, case.conditions).detach().cpu()
    finally:
        with torch.no_grad():
            for m, w in saved.items():
                m.weight.copy_(w)
    ok, error = _close(inside, masked)
    _require(ok, f"masking c through the hook differs from zeroing its columns in the {len(readers)} Linear "
                 f"layers that read c (error {error:.3g}): part of the network reads c another way")
    return f"{len(readers)} Linear layers read c; masking through the hook = masking inside"


def _rule_baseline_identical(run: _Run) -> str:
    _require(torch.equal(run.sample(BASELINE), run.plain()), "the baseline's samples differ from no policy's")
    return "bit-identical"


def _rule_noise_paired(run: _Run) -> str:
    singles = {i: run.sample(None, range(i, i + 1)) for i in reversed(range(run.n))}
    ok, error = _close(torch.cat([singles[i] for i in range(run.n)]), run.plain(), TOLERANCE)
    _require(ok, f"one sample at a time (reverse order) differs from one batch by {error:.3g}: the noise depends "
                 "on the batch or the order, not only on (seed, index)")
    return f"{run.n} samples: one batch = one at a time (within {TOLERANCE:g})"


def _rule_policies_together(run: _Run) -> str:
    adapter = run.case.adapter
    if adapter.planned_evaluations() is None:
        raise RuleSkipped("an adaptive sampler: the runner samples its policies one at a time")
    policies = (BASELINE, parse_policy(f"topk:{max(1, adapter.embed_dim // 3)}"), parse_policy("drop-cond"))
    alone = [adapter.sample(run.case.conditions, PairedNoise(SEED, range(run.n), adapter.device), p) for p in policies]
    group = PolicyGroup(policies, run.n)
    together = adapter.sample(tile_conditions(run.case.conditions, len(policies)),
                              PairedNoise(SEED, list(range(run.n)) * len(policies), adapter.device), group)
    _require(isinstance(together.trace, list) and len(together.trace) == len(policies),
             "sample() with a PolicyGroup must return one trace per policy (the PolicyHook's trace)")
    worst, exact = 0.0, True
    for i, (policy, single) in enumerate(zip(policies, alone)):
        block = together.samples[i * run.n:(i + 1) * run.n].detach().cpu()
        ok, error = _close(block, single.samples.detach().cpu(), TOLERANCE)
        _require(ok, f"{policy.canonical()} sampled together with {group.canonical()} differs from it alone by "
                     f"{error:.3g}: the sampler's batch is not one row per sample and branch in sample order")
        _require(together.trace[i].to_dict() == single.trace.to_dict(),
                 f"{policy.canonical()}'s trace together differs from its trace alone")
        worst, exact = max(worst, error), exact and torch.equal(block, single.samples.detach().cpu())
    return (f"{len(policies)} policies x {run.n} samples: " +
            ("bit-identical to alone" if exact else f"equal to alone within {worst:.2g}"))


def _stored_state(run: _Run, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline's state at ``step`` as sampled, and as the runner's cache gives it back (through numpy)."""
    adapter = run.case.adapter
    kept = adapter.sample(run.case.conditions, PairedNoise(SEED, range(run.n), adapter.device), BASELINE,
                          keep_states=[step]).states[step].x.detach()  # (N, ...)
    return kept, state_tensor(state_arrays(kept)).to(adapter.device)


def _decoded_round_trip(run: _Run) -> str:
    """Whether decoded outputs keep their values through numpy (what the grids and kept samples store)."""
    try:
        decoded = run.case.adapter.decode(run.plain().to(run.case.adapter.device)).detach().cpu()
    except FileNotFoundError:  # the decoder's files are absent: the decode rule says so
        return "decoded outputs not checked (decoder files absent)"
    _require(torch.equal(torch.from_numpy(exact_numpy(decoded)), widened(decoded)),
             f"decoded outputs ({decoded.dtype}) change through numpy")
    return f"decoded {decoded.dtype} kept"


def _rule_stored_round_trip(run: _Run) -> str:
    adapter, steps = run.case.adapter, run.case.adapter.sampler_steps
    step = max(1, steps // 2)  # where a late-acting policy takes over the baseline's trajectory
    kept, back = _stored_state(run, step)
    _require(back.dtype == kept.dtype and torch.equal(back.cpu(), kept.cpu()),
             f"the kept state ({kept.dtype}) comes back from numpy as {back.dtype} with other values")
    late = parse_policy(f"topk:{max(1, adapter.embed_dim // 3)}@last:{steps - step}")
    noise = lambda: PairedNoise(SEED, range(run.n), adapter.device)  # noqa: E731
    resumed = adapter.sample(run.case.conditions, noise(), late, start=SamplerState(step, back)).samples.cpu()
    whole = adapter.sample(run.case.conditions, noise(), late).samples.cpu()
    _, error = _close(resumed, whole)
    _require(torch.equal(resumed, whole), f"{late.canonical()} resumed at step {step} from the stored state differs "
                                          f"from it sampled from step 0 by {error:.3g}")
    return f"state {kept.dtype} at step {step} bit for bit, resumed = from step 0; {_decoded_round_trip(run)}"


def _hashes(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [h for v in value.values() for h in _hashes(v)]
    if isinstance(value, (list, tuple)):
        return [h for v in value for h in _hashes(v)]
    return [value] if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) else []


def _rule_describe(run: _Run) -> str:
    adapter, case = run.case.adapter, run.case
    description = adapter.describe()
    text = json.dumps(description, sort_keys=True, default=str)  # as the cache key writes it
    address = re.search(r"<[^<>]* at 0x[0-9a-f]+>", text)
    _require(address is None, f"describe() holds {address.group(0) if address else ''}: an object address, "
                              "different in every process, would make every cache key new")
    hashes = _hashes(description.get("checkpoint"))
    _require(bool(hashes), "describe()['checkpoint'] names no sha256: results of two checkpoints would share a cache key")
    if case.checkpoint is not None:
        _require(file_sha256(case.checkpoint) in hashes, f"describe() does not name the sha256 of {case.checkpoint}")
    sampler = description.get("sampler")
    _require(isinstance(sampler, dict) and sampler, "describe() has no 'sampler' settings")
    _require(adapter.sampler_steps in [v for v in sampler.values() if isinstance(v, int)],
             f"describe()['sampler'] does not say the sampler's {adapter.sampler_steps} steps")
    return f"checkpoint {hashes[0][:12]}..., sampler {', '.join(sampler)}"


def _rule_decode(run: _Run) -> str:
    case = run.case
    try:
        out = case.adapter.decode(run.plain().to(case.adapter.device)).detach().cpu()
    except FileNotFoundError as error:  # a decoder whose files are absent (offline, or not downloaded yet)
        raise RuleSkipped(f"the decoder's files are absent: {str(error).splitlines()[0]}") from None
    _require(tuple(out.shape) == (run.n, *case.output_shape),
             f"decode gives {tuple(out.shape)}, the task expects ({run.n}, {', '.join(map(str, case.output_shape))})")
    _require(bool(torch.isfinite(out).all()), "decode gives NaN or infinite values")
    if case.output_range is not None:
        low, high = case.output_range
        _require(float(out.min()) >= low and float(out.max()) <= high,
                 f"decode gives values in [{float(out.min()):.3g}, {float(out.max()):.3g}], the task expects "
                 f"[{low:g}, {high:g}]")
    return f"({run.n}, {', '.join(map(str, case.output_shape))})" + (
        f" in [{case.output_range[0]:g}, {case.output_range[1]:g}]" if case.output_range else "")


CHECKS: dict[str, Callable[[_Run], str]] = {
    "c-shape": _rule_c_shape, "parts-sum": _rule_parts_sum, "hook-every-step": _rule_hook_every_step,
    "hook-reaches-network": _rule_hook_reaches_network, "baseline-identical": _rule_baseline_identical,
    "noise-paired": _rule_noise_paired, "policies-together": _rule_policies_together,
    "stored-round-trip": _rule_stored_round_trip, "describe": _rule_describe,
    "decode": _rule_decode,
}


def check_adapter_contract(case: ContractCase) -> list[RuleResult]:
    """Every rule on ``case``, in order; a rule that raises is broken, with the error as the reason."""
    if len(case.conditions) < 2:
        raise ValueError("a contract case needs at least 2 conditions (the noise rule compares batch sizes)")
    run, results = _Run(case), []
    for rule, check in CHECKS.items():
        try:
            results.append(RuleResult(rule, True, check(run)))
        except RuleBroken as broken:
            results.append(RuleResult(rule, False, str(broken)))
        except RuleSkipped as skipped:
            results.append(RuleResult(rule, None, str(skipped)))
        except Exception as error:  # an adapter that crashes under a rule breaks it
            results.append(RuleResult(rule, False, f"{error.__class__.__name__}: {error}"))
    return results


def assert_adapter_contract(case: ContractCase) -> list[RuleResult]:
    """Raise :class:`ContractError` naming every broken rule; returns the results when all hold."""
    results = check_adapter_contract(case)
    broken = [r for r in results if r.passed is False]
    if broken:
        raise ContractError(f"{case.adapter.name} breaks the adapter contract:\n" +
                            "\n".join(f"rule {r.rule!r} broken: {r.detail}" for r in broken))
    return results


def randomize_(network: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Every parameter drawn at random (official inits zero the adaLN layers, which would hide c)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)
    return network
