"""Runs a suite: embedding analysis, then every cell (task, model, policy) shard by shard, then the scores.

- Paired seeds: sample i is drawn from the noise of (seed, i) alone, never from the rank or batch.
- Cache: each finished shard (features, logits, the grid images, the policy trace) is stored under a key
  of everything that determines it; a killed run, resumed, recomputes no finished shard.
- Prefix sharing: the baseline keeps its states at the steps where later-acting policies start, and
  those policies continue from them.
- Many processes (torchrun): shard j goes to rank j mod world size; features, not images, are gathered
  to rank 0, which scores and writes. Shards are computed identically wherever they run, so the numbers
  do not depend on the number of processes.
- Scoring beside sampling: with ``overlap``, rank 0 scores cell k (metrics, paired bootstrap, record) in a worker
  thread while cell k + 1 samples (:class:`CellScorer`); the same numbers, records in cell order. A record's
  ``timing.seconds`` is the cell's sampling (or cache reading) up to the gather, ``timing.scoring_seconds`` its
  scoring.
- Records: one per finished cell, appended to ``results.jsonl`` at once. A run never truncates it: every
  input is checked before the output folder is touched, and ``results.json`` (written at the end) holds the
  newest record of each (task, model, policy) in ``results.jsonl``, so a failed run loses no finished cell.
- Every file is written atomically (:mod:`condbench.storage`); temporaries of killed writes are removed on
  start.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import json
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from . import __version__
from .adapters.base import Adapter, PolicyTrace, SamplerState
from .analysis import analyze
from .cache import Check, ShardCache, cache_key, content_problem
from .distributed import World
from .finite import NonFiniteError, require_finite, require_finite_metrics
from .paired import PairedBootstrap
from .metrics.inception import quantize_uint8
from .metrics.reference_batch import BatchNpzWriter
from .overlap import BatchWorker
from .plan import Cell, expand, first_active_step, shared_prefix
from .preflight import check_inputs, check_model_options, load_tasks
from .policies import Policy, parse_policy
from .policy_group import PolicyGroup, tile_conditions
from .progress import progress_bar
from .provenance import git_revision
from .registry import load_adapter
from .seeding import PairedNoise
from .stored_arrays import exact_numpy, state_arrays, state_tensor, widened
from .storage import (append_line, atomic_save_npz, atomic_write, clean_stale_temporaries, ensure_folder,
                      read_jsonl)
from .suites import Suite

SCHEMA_VERSION = 1
# Images per feature-extractor call, counted from the start of each shard: features then do not depend on
# the sampler's batch size (matrix kernels may round differently for another number of rows).
FEATURE_BATCH = 250

Log = Callable[[str], None]


class NonFiniteSamplesError(NonFiniteError):
    """A cell produced NaN or infinite samples, features or logits; earlier cells are kept."""


class MissingShardsError(RuntimeError):
    """``condbench score`` found cells that were never sampled into the cache."""


def float32_precision() -> dict:
    """How float32 matrix products and convolutions ran: TF32 changes GPU numbers (the official DiT, SiT, REPA,
    MG and MDT sampling scripts turn it on; condbench leaves PyTorch's defaults unless told otherwise)."""
    return {"dtype": "float32", "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32), "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "applies": "cuda" if torch.cuda.is_available() else "no (CPU: TF32 exists only on NVIDIA GPUs)"}


def environment() -> dict:
    """Versions, device and arithmetic, for the provenance of every result."""
    return {"condbench": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "numpy": np.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "precision": float32_precision(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv), "git": git_revision()}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


@dataclass
class RunOptions:
    """How (not what) to run: none of these enter a cache key."""

    device: str = "cpu"
    batch_size: Optional[int] = None  # default: the suite's
    together: Optional[int | str] = None  # policies per sampler call, "all" or a count; default: the suite's
    # work beside sampling (condbench.overlap): decoding and features, and rank 0's scoring of the previous cell;
    # default: on where the sampler runs on CUDA, off on the CPU (whose cores sampling uses)
    overlap: Optional[bool] = None
    cache_dir: Optional[Path] = None  # default: RUN_DIR/cache
    score_only: bool = False  # never sample; fail if a shard is missing
    tasks: Optional[list[str]] = None
    models: Optional[list[str]] = None
    policies: Optional[list[str]] = None
    log: Log = print


@dataclass
class CellContext:
    """What every shard of one (task, model) needs."""

    suite: Suite
    task: object
    adapter: Adapter
    cache: ShardCache
    batch_size: int
    state_steps: list[int]  # steps at which the baseline keeps its states for later-acting policies
    grid_count: int
    identity: dict = field(default_factory=dict)  # the cache-key parts shared by all shards
    task_name: str = ""
    overlap: bool = False  # decode and extract features in a worker while the next batch samples

    def cell(self, policy: Policy) -> str:
        """The cell's name in messages: task / model / policy."""
        return f"{self.task_name} / {self.adapter.name} / {policy.key()}"


def _cell_key(ctx: CellContext, policy: Policy, shard: tuple[int, int]) -> str:
    return _shard_key(ctx, "cell", *shard, policy=policy.key())


def _shard_key(ctx: CellContext, kind: str, start: int, stop: int, **extra) -> str:
    return cache_key(kind=kind, start=start, stop=stop, **ctx.identity, **extra)


def _cell_check(ctx: CellContext, start: int, stop: int) -> Check:
    """What a cell's shard of indices start..stop-1 must hold: a row per sample (the grid: per sample shown), all
    finite (logits: but for placeholder columns)."""
    rows = {"features": stop - start, "logits": stop - start, "grid": max(0, min(ctx.grid_count, stop) - start)}

    def check(arrays: dict[str, np.ndarray]) -> Optional[str]:
        kept = {"samples": stop - start} if "samples" in arrays else {}
        return content_problem(arrays, {**rows, **kept}, finite=("features", "grid", "samples"),
                               placeholders=("logits",))
    return check


def _state_check(start: int, stop: int) -> Check:
    """What a kept state of indices start..stop-1 must hold: one finite row per sample."""
    return lambda arrays: content_problem(arrays, {"x": stop - start}, finite=("x",))


def stored_samples(decoded: torch.Tensor) -> np.ndarray:
    """What ``keep_samples`` keeps: images (N, C, H, W) quantised to uint8 NHWC as samplers save them; waveforms
    (N, L) as they are (float32)."""
    if decoded.ndim == 2:
        return decoded.float().numpy()  # (N, L)
    return quantize_uint8(decoded).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)


class ShardOutputs:
    """One cell's outputs over one shard, fed batch by batch in index order: the features and logits (in
    ``FEATURE_BATCH`` calls counted from the shard's start), the grid images, the kept samples and the trace."""

    def __init__(self, ctx: CellContext, policy: Policy, start: int):
        self.ctx, self.policy = ctx, policy
        self.done = start  # index of the first sample not yet through the feature extractor
        self.features: list[np.ndarray] = []
        self.logits: list[np.ndarray] = []
        self.grid: list[np.ndarray] = []
        self.kept: list[np.ndarray] = []  # the samples themselves, when the suite keeps them
        self.traces: list[PolicyTrace] = []
        self.sizes: list[int] = []
        self.pending: list[torch.Tensor] = []  # decoded images not yet through the feature extractor

    def add(self, first: int, samples: torch.Tensor, trace: PolicyTrace, last: bool) -> None:
        """Samples (N, ...) in model space of indices first..first+N-1; ``last``: the shard's final batch."""
        ctx, cell = self.ctx, self.ctx.cell(self.policy)
        require_finite(samples, f"{cell}: samples", first_index=first, error=NonFiniteSamplesError)
        images = widened(ctx.adapter.decode(samples)).cpu()  # (N, ...) float32 where decoded in bf16 / fp16: exact
        if ctx.suite.keep_samples:
            self.kept.append(stored_samples(images))
        self.pending.append(images)
        self._extract(final=last)
        self.grid.append(images[: max(0, ctx.grid_count - first)].numpy())
        self.traces.append(trace)
        self.sizes.append(len(samples))

    def _extract(self, final: bool) -> None:
        conditions, cell = self.ctx.task.conditions(), self.ctx.cell(self.policy)
        images = torch.cat(self.pending) if self.pending else torch.empty(0)
        self.pending.clear()
        while len(images) >= FEATURE_BATCH or (final and len(images)):
            chunk = images[:FEATURE_BATCH]
            f, l = self.ctx.task.evaluator.features(chunk, conditions[self.done:self.done + len(chunk)])
            require_finite(f, f"{cell}: features of the samples", first_index=self.done,  # (N, F)
                           error=NonFiniteSamplesError)
            require_finite(l, f"{cell}: logits of the samples", first_index=self.done,  # (N, K)
                           error=NonFiniteSamplesError, placeholders=True)
            self.features.append(exact_numpy(f))
            self.logits.append(exact_numpy(l))
            images, self.done = images[FEATURE_BATCH:], self.done + len(chunk)
        if len(images):
            self.pending.append(images)

    def arrays(self) -> dict[str, np.ndarray]:
        """What the cache stores for the shard."""
        trace = PolicyTrace.merge(self.traces, self.sizes)
        arrays = {"features": np.concatenate(self.features), "logits": np.concatenate(self.logits),
                  "grid": np.concatenate(self.grid), "removed_per_step": np.array(trace.removed_per_step),
                  "active_steps": np.array(trace.active_steps, dtype=np.int64)}
        if self.kept:
            arrays["samples"] = np.concatenate(self.kept)
        return arrays


def compute_shards(ctx: CellContext, policies: Sequence[Policy], start: int, stop: int) -> list[dict[str, np.ndarray]]:
    """Sample indices start..stop-1 under each of ``policies`` (which share their prefix step) in the same sampler
    calls; returns, per policy, the arrays the cache stores for the shard.

    With P > 1 policies every call holds the batch P times (:mod:`condbench.policy_group`); each block is decoded
    and scored on its own, as when its policy runs alone.
    """
    adapter, count = ctx.adapter, len(policies)
    conditions = ctx.task.conditions()
    prefixes = {shared_prefix(p, adapter.sampler_steps, baseline_planned=True) for p in policies}
    if len(prefixes) > 1:
        raise ValueError(f"policies sampled together must continue from the same step, got steps {sorted(prefixes)}")
    shared = prefixes.pop()
    stored = (ctx.cache.get(_shard_key(ctx, "state", start, stop, step=shared), _state_check(start, stop))
              if shared else None)
    prefix = state_tensor(stored) if stored else None  # (stop - start, ...) in the dtype the baseline had
    baseline = next((i for i, p in enumerate(policies) if p.is_baseline), None)
    keep = ctx.state_steps if baseline is not None else ()
    outputs = [ShardOutputs(ctx, policy, start) for policy in policies]
    states: dict[int, list[torch.Tensor]] = {k: [] for k in keep}
    # the arithmetic's process-wide flags (tf32) over the sampling and the work on its samples alike, so decoding
    # beside the next batch (the worker) sees the same flags as decoding after it
    with adapter.process_flags(), BatchWorker(adapter.device, ctx.overlap) as worker:
        for b0 in range(start, stop, ctx.batch_size):
            b1 = min(b0 + ctx.batch_size, stop)
            n = b1 - b0
            begin = None
            if prefix is not None:
                x = prefix[b0 - start:b1 - start]  # (n, ...)
                begin = SamplerState(shared, x.repeat(count, *([1] * (x.ndim - 1))))  # (count * n, ...)
            policy = policies[0] if count == 1 else PolicyGroup(tuple(policies), n)
            out = adapter.sample(tile_conditions(conditions[b0:b1], count),
                                 PairedNoise(ctx.suite.seed, list(range(b0, b1)) * count, adapter.device), policy,
                                 start=begin, keep_states=keep)
            traces = out.trace if count > 1 else [out.trace]
            for i, target in enumerate(outputs):
                block = out.samples[i * n:(i + 1) * n]  # (n, ...)
                worker.submit(functools.partial(target.add, b0, block, traces[i], last=b1 == stop), block)
            for k in keep:
                states[k].append(out.states[k].x[baseline * n:(baseline + 1) * n].cpu())
    for k, xs in states.items():
        ctx.cache.put(_shard_key(ctx, "state", start, stop, step=k), state_arrays(torch.cat(xs)))
    return [target.arrays() for target in outputs]


def compute_shard(ctx: CellContext, policy: Policy, start: int, stop: int) -> dict[str, np.ndarray]:
    """Sample indices start..stop-1 under ``policy`` alone; returns the arrays the cache stores for the shard."""
    return compute_shards(ctx, [policy], start, stop)[0]


def _cached_shard(ctx: CellContext, policy: Policy, shard: tuple[int, int]) -> Optional[dict]:
    """A cell's shard from the cache, or None (absent, damaged, or stored before the suite asked to keep samples)."""
    found = ctx.cache.get(_cell_key(ctx, policy, shard), _cell_check(ctx, *shard))
    if found is not None and ctx.suite.keep_samples and "samples" not in found:
        return None  # computed before samples were asked for: sample it again, keeping them
    return found


@dataclass
class TogetherWork:
    """What :func:`sample_together` did for one cell: the shards it computed, and its share of the time and of
    the network rows of the sampler calls it was part of."""

    shards: set[tuple[int, int]] = field(default_factory=set)
    seconds: float = 0.0
    evaluations: int = 0


def sample_together(ctx: CellContext, policies: Sequence[Policy], shards: list[tuple[int, int]],
                    together: int, desc: str) -> dict[str, TogetherWork]:
    """Compute the missing shards of several cells of one (task, model), up to ``together`` policies per sampler
    call, into the cache; returns what was done per policy key. Policies sharing a prefix step run together (the
    baseline's group first, as the later groups continue from its states). Only shards without a file are
    computed here, so no cached shard is read twice; shards another process holds, and files that turn out damaged
    or lack the kept samples, are left to :func:`run_cell_shards`, which waits for, or recomputes, them alone."""
    steps = ctx.adapter.sampler_steps
    groups: dict[int, list[Policy]] = {}
    for policy in policies:  # by the step each continues from (the baseline's state there, where it is cached)
        groups.setdefault(shared_prefix(policy, steps, baseline_planned=True), []).append(policy)
    work = {p.key(): TogetherWork() for p in policies}

    def absent(policy: Policy, shard: tuple[int, int]) -> bool:  # no file: reading them is left to run_cell_shards
        return not ctx.cache.path(_cell_key(ctx, policy, shard)).is_file()

    missing = [(p, s) for s in shards for p in policies if absent(p, s)]
    with progress_bar(total=sum(b - a for _, (a, b) in missing), desc=desc, unit="sample") as bar:
        for shard in shards:
            for _, members in sorted(groups.items()):
                with contextlib.ExitStack() as locks:
                    mine = [p for p in members if absent(p, shard)
                            and locks.enter_context(ctx.cache.lock(_cell_key(ctx, p, shard), wait=False))
                            and absent(p, shard)]
                    for i in range(0, len(mine), together):
                        chunk = mine[i:i + together]
                        started, evaluations = time.time(), ctx.adapter.denoiser_evaluations
                        computed = compute_shards(ctx, chunk, *shard)
                        seconds = (time.time() - started) / len(chunk)
                        rows = (ctx.adapter.denoiser_evaluations - evaluations) // len(chunk)
                        for policy, arrays in zip(chunk, computed):
                            ctx.cache.put(_cell_key(ctx, policy, shard), arrays)
                            share = work[policy.key()]
                            share.shards.add(shard)
                            share.seconds, share.evaluations = share.seconds + seconds, share.evaluations + rows
                        bar.update(len(chunk) * (shard[1] - shard[0]))
    return work


def run_cell_shards(ctx: CellContext, policy: Policy, shards: list[tuple[int, int]], score_only: bool,
                    desc: str, computed: frozenset[tuple[int, int]] = frozenset()) -> tuple[dict[tuple[int, int], dict], int]:
    """Every shard of this process for one cell, from the cache or computed; returns them and how many were cached
    (``computed``: shards :func:`sample_together` computed for this cell just before, not counted as cached).

    A shard another process is computing (its lock is held) is left for last and then read from the cache,
    so two runs on one cache never compute the same shard twice.
    """
    done: dict[tuple[int, int], dict] = {}
    cached, waiting = 0, []
    key_of = {s: _cell_key(ctx, policy, s) for s in shards}

    def get(shard: tuple[int, int]) -> Optional[dict]:
        return _cached_shard(ctx, policy, shard)

    with progress_bar(total=sum(b - a for a, b in shards), desc=desc, unit="sample") as bar:
        for shard in shards:
            found = get(shard)
            if found is None and score_only:
                raise MissingShardsError(_missing(ctx, policy, shard))
            if found is None:
                with ctx.cache.lock(key_of[shard], wait=False) as mine:
                    if not mine:
                        waiting.append(shard)
                        continue
                    found = get(shard)  # finished by another run while we looked
                    if found is None:
                        found = compute_shard(ctx, policy, *shard)
                        ctx.cache.put(key_of[shard], found)
                    else:
                        cached += 1
            elif shard not in computed:
                cached += 1
            done[shard] = {k: v for k, v in found.items() if k != "samples"}  # samples stay in the cache
            bar.update(shard[1] - shard[0])
        for shard in waiting:
            with ctx.cache.lock(key_of[shard], wait=True):
                found = get(shard)
                if found is None:  # the other run died before finishing it
                    found = compute_shard(ctx, policy, *shard)
                    ctx.cache.put(key_of[shard], found)
                else:
                    cached += 1
            done[shard] = {k: v for k, v in found.items() if k != "samples"}
            bar.update(shard[1] - shard[0])
    return done, cached


def _missing(ctx: CellContext, policy: Policy, shard: tuple[int, int]) -> str:
    """Why a shard ``condbench score`` needs is not in the cache, naming its file."""
    key = _cell_key(ctx, policy, shard)
    why = ctx.cache.quarantine_reason(key)
    state = f"was moved to quarantine ({why})" if why else "was never sampled"
    return (f"{ctx.cell(policy)}: indices {shard[0]}..{shard[1] - 1} are missing from the cache: "
            f"{ctx.cache.path(key)} {state}; run `condbench run` to compute it")


def write_samples_npz(ctx: CellContext, policy: Policy, shards: list[tuple[int, int]], path: Path) -> Path:
    """The cell's samples, uint8 NHWC in index order, as ``arr_0`` (the format ADM's evaluator reads), with
    the requested class (or prompt) of each sample as ``labels``; streamed shard by shard from the cache, where every
    rank put its shards. Waveforms (N, L) are written float32 with ``labels`` (the clip indices) and
    ``sample_rate``."""
    def samples(shard: tuple[int, int]) -> np.ndarray:
        found = ctx.cache.get(_cell_key(ctx, policy, shard), _cell_check(ctx, *shard))
        if found is None or "samples" not in found:
            raise MissingShardsError(_missing(ctx, policy, shard))
        return found["samples"]

    if samples(shards[0]).ndim == 2:  # waveforms (N, L): float32, with the clip indices they pair with
        atomic_save_npz(path, {"arr_0": np.concatenate([samples(s) for s in shards]),
                               "labels": np.asarray(sample_labels(ctx.task)),
                               "sample_rate": np.int64(ctx.adapter.sample_rate)})
        return path
    writer = BatchNpzWriter(path)
    for shard in shards:
        writer.append(torch.from_numpy(samples(shard)).permute(0, 3, 1, 2))  # (N, C, H, W)
    labels = sample_labels(ctx.task)
    return writer.close(labels=labels.numpy() if isinstance(labels, torch.Tensor) else labels)


def sample_labels(task) -> torch.Tensor | np.ndarray:
    """What each sample is scored against, indexable by a bootstrap resample: the task's ``labels()`` where its
    conditions are not labels themselves (pose: pair indices; audio: clip indices), else class ids (a tensor) or
    prompts (an array)."""
    labels = task.labels() if hasattr(task, "labels") else task.conditions()
    return labels if isinstance(labels, torch.Tensor) else np.asarray(labels)


def _assemble(parts: list[dict], shards: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """Shards from every rank, in index order (each index exactly once: no padding to drop)."""
    merged: dict[tuple[int, int], dict] = {}
    for part in parts:
        merged.update(part)
    ordered = [merged[s] for s in shards]
    sizes = [b - a for a, b in shards]
    per_step = np.average(np.stack([p["removed_per_step"] for p in ordered]), axis=0, weights=sizes)
    return {"features": np.concatenate([p["features"] for p in ordered]),
            "logits": np.concatenate([p["logits"] for p in ordered]),
            "grid": np.concatenate([p["grid"] for p in ordered]),
            "trace": PolicyTrace(len(per_step), per_step.tolist(), ordered[0]["active_steps"].tolist())}


def _number(value: Optional[float], spec: str) -> str:
    """A statistic for the log ("n/a" when it is undefined, e.g. a cosine over one condition)."""
    return "n/a" if value is None else format(value, spec)


def _read_json(path: Path, log: Log) -> dict:
    """A previous run's ``results.json``, or {} (absent or unreadable: said, and ignored)."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log(f"warning: {path} cannot be read ({error}); its per-model entries are not carried over")
        return {}


def _previous_grids(path: Path, names: set[str], log: Log) -> dict[str, np.ndarray]:
    """The sample grids of cells an earlier run wrote to ``samples_grid.npz`` and this run did not redo."""
    if not names or not path.is_file():
        return {}
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files if k in names}
    except Exception as error:  # a damaged file: its grids are drawn again by the next run of those cells
        log(f"warning: {path} cannot be read ({error.__class__.__name__}); earlier cells' grids are left out")
        return {}


def newest_records(path: Path, log: Log = print) -> list[dict]:
    """The newest record of each (task, model, policy) in a ``results.jsonl``, in the order cells first appeared."""
    newest: dict[tuple, dict] = {}
    for record in read_jsonl(path, log):
        newest[(record.get("task"), record.get("model"), record.get("policy"))] = record
    return list(newest.values())


def _write_summary(out: Path, summary: dict, grids: dict[str, np.ndarray], log: Log) -> Path:
    """``results.json`` and ``samples_grid.npz`` of every cell finished in ``out``: this run's, and earlier
    runs' cells it did not redo (their records, analyses and grids are kept, never dropped)."""
    previous = _read_json(out / "results.json", log)
    for part in ("analysis", "models", "tasks", "grids"):
        for name, value in previous.get(part, {}).items():
            summary[part].setdefault(name, value)
    summary["records"] = newest_records(out / "results.jsonl", log)
    kept = set(summary["grids"].values()) - set(grids)
    atomic_save_npz(out / "samples_grid.npz", {**_previous_grids(out / "samples_grid.npz", kept, log), **grids},
                    compressed=True)
    return atomic_write(out / "results.json", json.dumps(summary, indent=1, default=str))


def kept_summary(out_dir: str | Path, cache_dir: Optional[str | Path] = None) -> str:
    """What an interrupted run leaves: the finished cells in ``results.jsonl`` and the shards in the cache."""
    out = Path(out_dir)
    cache = Path(cache_dir) if cache_dir else out / "cache"
    records = newest_records(out / "results.jsonl", log=lambda _: None)
    cells = ", ".join(f"{r.get('model')} {r.get('policy')}" for r in records[:10]) + (" ..." * (len(records) > 10))
    shards = sum(1 for folder in cache.glob("??") for _ in folder.glob("*.npz")) if cache.is_dir() else 0
    return (f"kept: {len(records)} finished cell(s) in {out / 'results.jsonl'}{': ' + cells if records else ''}; "
            f"{shards} finished shard file(s) in {cache}")


def write_block_diversity(out: Path, adapter, task, settings: dict, log: Callable[[str], None]) -> Path:
    """The suite's ``blocks`` probe for one model: ``blocks_MODEL.json`` in the run folder, for the report."""
    from .blocks import block_diversity

    last = adapter.sampler_steps - 1
    steps = settings.get("steps") or [0, last // 2, last]
    if any(not 0 <= s <= last for s in steps):
        raise ValueError(f"blocks.steps must be sampling steps 0..{last} of {adapter.name}, got {steps}")
    policies = [parse_policy(p) for p in settings.get("policies") or ["baseline"]]
    conditions = task.conditions()[:settings.get("samples", 20)]
    log(f"[{adapter.name}] block diversity: {len(policies)} policies x {len(conditions)} samples at steps {steps}")
    result = block_diversity(adapter, conditions, policies, steps)
    return atomic_write(out / f"blocks_{slug(adapter.name)}.json", json.dumps(result, indent=1))


def scoring_beside_sampling(ctx: CellContext) -> bool:
    """Whether rank 0 scores each cell in a worker while the next cell samples: where ``overlap`` is on (the one
    switch for work beside sampling: on CUDA by default, on the CPU only when asked, off with ``--no-overlap``),
    unless the model's arithmetic holds process-wide flags (TF32) over its sampling, which the scoring's own GPU
    arithmetic would then see or not depending on timing."""
    return ctx.overlap and isinstance(ctx.adapter.process_flags(), contextlib.nullcontext)


@dataclass
class CellScorer:
    """Rank 0's scoring of the cells of one (task, model), called in cell order: the metrics, the paired bootstrap
    (built at the baseline, which comes first, then compared per policy), the record appended to ``results.jsonl``,
    the grid and the log line. It never calls the adapter (only reads its name and sizes) and touches only the
    gathered arrays, the task's evaluator and files, so it may run in a thread while the adapter samples."""

    ctx: CellContext
    out: Path
    shards: list[tuple[int, int]]
    labels: torch.Tensor | np.ndarray
    model_name: str
    description: dict  # the adapter's describe()
    env: dict
    together: int
    has_baseline: bool
    grids: dict[str, np.ndarray]  # written to samples_grid.npz at the end of the run
    grid_names: dict[str, str]  # the summary's grids: cell name -> key in samples_grid.npz
    log: Log
    comparison: Optional[PairedBootstrap] = None

    def score(self, policy: Policy, gathered: list[dict], sampling_seconds: float) -> None:
        """Score one cell from every rank's gathered shards; ``sampling_seconds``: its sampling (or cache reads)
        up to the gather."""
        began, ctx, task = time.time(), self.ctx, self.ctx.task
        data = _assemble([g["shards"] for g in gathered], self.shards)
        scored = (torch.from_numpy(data["features"]), torch.from_numpy(data["logits"]), self.labels)
        metrics = task.evaluator.score(*scored)
        require_finite_metrics(metrics, scored[1], f"{ctx.cell(policy)} (logits)", error=NonFiniteSamplesError)
        if policy.is_baseline:
            resample_score = getattr(task.evaluator, "bootstrap_score", task.evaluator.score)
            self.comparison = PairedBootstrap(resample_score, scored, ctx.suite.bootstrap, seed=ctx.suite.seed,
                                              baseline_metrics=metrics,
                                              device=getattr(ctx.task.evaluator, "bootstrap_device", "cpu"))
        compared = self.comparison is not None and not policy.is_baseline
        deltas = self.comparison.compare(scored, metrics) if compared else {}
        record = self.record(policy, metrics, deltas, data["trace"], gathered)
        if ctx.suite.keep_samples:
            npz = self.out / "samples" / f"{slug(f'{self.model_name}|{policy.key()}')}.npz"
            record["samples_npz"] = str(write_samples_npz(ctx, policy, self.shards, npz))
        timing = {"seconds": sampling_seconds, "scoring_seconds": time.time() - began,
                  "samples_per_s": record["num_samples"] / sampling_seconds if sampling_seconds > 0 else None}
        record["timing"] = timing
        append_line(self.out / "results.jsonl", json.dumps(record), self.log)
        grid_name = f"{self.model_name}|{policy.key()}"
        self.grids[slug(grid_name)] = data["grid"]
        self.grid_names[grid_name] = slug(grid_name)
        headline = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        self.log(f"[{self.model_name}] {policy.canonical():<30} removed {record['dims_removed']:6.1f}/"
                 f"{ctx.adapter.embed_dim}  {headline}  ({sampling_seconds:.1f}s sampling, "
                 f"{timing['scoring_seconds']:.1f}s scoring, "
                 f"{record['work']['shards_from_cache']}/{len(self.shards)} shards cached)")

    def record(self, policy: Policy, metrics: dict, deltas: dict, trace: PolicyTrace, gathered: list[dict]) -> dict:
        """The cell's record (its timing is added by :meth:`score`)."""
        ctx, suite, steps = self.ctx, self.ctx.suite, self.ctx.adapter.sampler_steps
        return {
            "schema_version": SCHEMA_VERSION, "task": ctx.task_name, "model": self.model_name,
            "policy": policy.key(), "spec": policy.spec, "metrics": metrics, "paired_vs_baseline": deltas,
            "dims_removed": trace.mean_removed(), "dims_removed_first_step": trace.first_active_removed(),
            "dims_removed_fraction": trace.mean_removed() / ctx.adapter.embed_dim, "trace": trace.to_dict(),
            "num_samples": ctx.task.num_samples, "seed": suite.seed,
            "protocol": ctx.identity["task"]["metric_protocol"],
            "config": {"suite": suite.name, "task_options": suite.task_options,
                       "model_options": suite.model_options.get(self.model_name, {}), "shard_size": suite.shard_size,
                       "sampler": self.description["sampler"], "precision": suite.precision, "compile": suite.compile,
                       "policies_together": self.together,
                       "first_active_step": first_active_step(policy, steps),
                       "shared_prefix_steps": shared_prefix(policy, steps, self.has_baseline)},
            "checkpoint": self.description["checkpoint"],
            "work": {"shards": len(self.shards), "shards_from_cache": sum(g["cached"] for g in gathered),
                     "denoiser_evaluations": sum(g["evaluations"] for g in gathered), "processes": len(gathered)},
            "environment": {k: self.env[k] for k in ("condbench", "torch", "cuda", "precision")},
            "device": str(ctx.adapter.device),
        }


def policies_together(suite: Suite, options: RunOptions, adapter: Adapter, cells: int) -> int:
    """How many policies of a model share a sampler call: the run's or the suite's ``together``, at most the
    model's number of cells; 1 for adaptive samplers (dopri5's step control would see the other policies' rows)."""
    setting = options.together if options.together is not None else suite.together
    if adapter.planned_evaluations() is None:
        return 1
    return cells if setting == "all" else max(1, min(int(setting), cells))


def run_suite(suite: Suite, out_dir: str | Path, options: Optional[RunOptions] = None,
              world: Optional[World] = None) -> Optional[Path]:
    """Run (or, with ``score_only``, re-score) the suite's cells; returns ``results.json`` on rank 0.

    Everything is checked before the output folder is touched: the suite, the task options, every
    checkpoint and model option, and that the output and cache folders can be written.
    """
    options = options or RunOptions()
    world = world or World.from_environment()
    log = options.log if world.is_main else (lambda _: None)
    out = Path(out_dir)
    cells = expand(suite, options.tasks, options.models, options.policies)
    if not cells:
        raise ValueError("the filters leave no cell to run")
    selected = Suite(**{**suite.__dict__, "task": sorted({c.task for c in cells}),
                        "models": [m for m in suite.models if m in {c.model for c in cells}]})
    tasks = load_tasks(selected)  # one instance per task
    runnable = check_inputs(selected, log, tasks).models  # every missing file is reported before any work
    check_model_options(selected, runnable)
    cells = [c for c in cells if c.model in runnable]
    if world.is_main:
        ensure_folder(out, "output folder")
    # every rank reports the cache files it moves aside; score only reads the cache (it may be read-only)
    cache_dir = options.cache_dir or out / "cache"
    cache = (ShardCache(cache_dir, log=options.log, read_only=True) if options.score_only else
             ShardCache(ensure_folder(cache_dir, "cache folder"), log=options.log))
    if world.is_main:
        clean_stale_temporaries([out, out / "samples", *([] if options.score_only else cache.folders())], log)
    env = environment()
    summary = {"schema_version": SCHEMA_VERSION, "suite": suite.__dict__, "tasks": {}, "environment": env,
               "models": {}, "analysis": {}, "records": [], "grids": {}}
    grids: dict[str, np.ndarray] = {}
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.task, cell.model), []).append(cell)
    for (task_name, model_name), group in groups.items():
        task = tasks[task_name]  # its metric networks are loaded once, whatever the number of models
        adapter = load_adapter(model_name, device=world.device(options.device), **suite.adapter_options(model_name))
        if hasattr(task, "prepare_adapter"):
            task.prepare_adapter(adapter)  # e.g. pose: the mean condition over the pairs, for mask=fixed policies
        description = adapter.describe()
        task_description = task.describe()
        summary["models"][model_name] = description
        # the report's across-tasks columns; outside describe(), which keys the cache
        summary["tasks"][task_name] = {**task_description,
                                       "headline_metrics": list(getattr(task, "headline_metrics", ()))}
        if world.is_main:
            log(f"[{model_name}] embedding analysis over {len(task.analysis_conditions())} conditions")
            try:
                stats, arrays = analyze(adapter, task.analysis_conditions(), **suite.analysis)
            except NonFiniteError as error:
                raise NonFiniteError(f"{task_name} / {model_name} (embedding analysis): {error}") from None
            summary["analysis"][model_name] = stats
            c = stats["c"]
            log(f"[{model_name}] d={c['dim']} PR={_number(c['pr']['mean'], '.2f')} "
                f"nPR={_number(c['npr']['mean'], '.2%')} mean cosine={_number(c['cosine']['mean'], '.4f')}")
            if suite.blocks is not None:
                write_block_diversity(out, adapter, task, suite.blocks, log)
        n = task.num_samples
        shards = [(a, min(a + suite.shard_size, n)) for a in range(0, n, suite.shard_size)]
        steps = adapter.sampler_steps
        has_baseline = any(c.policy.is_baseline for c in group)
        state_steps = sorted({shared_prefix(c.policy, steps, has_baseline) for c in group} - {0})
        ctx = CellContext(suite, task, adapter, cache, options.batch_size or suite.batch_size, state_steps,
                          min(n, task.grid_count),
                          {"adapter": description, "task": task_description, "seed": suite.seed,
                           "schema": SCHEMA_VERSION, "feature_batch": FEATURE_BATCH}, task_name=task_name,
                          overlap=options.overlap if options.overlap is not None else adapter.device.type == "cuda")
        if options.score_only:  # every missing shard of the model at once, before any of its cells is scored
            absent = [_missing(ctx, c.policy, s) for c in group for s in shards[world.rank::world.size]
                      if not cache.path(_cell_key(ctx, c.policy, s)).is_file()]
            if absent:
                raise MissingShardsError(f"{len(absent)} shard(s) missing:\n" + "\n".join(absent))
        labels = sample_labels(task)
        if world.is_main and hasattr(task, "grid_context"):  # paired tasks: inputs and ground truth of the grids
            for part, images in task.grid_context(ctx.grid_count).items():
                grids[f"context_{slug(task_name)}_{part}"] = images
        together = policies_together(suite, options, adapter, len(group))
        shared_work: dict[str, TogetherWork] = {}
        if together > 1 and not options.score_only:
            shared_work = sample_together(ctx, [c.policy for c in group], shards[world.rank::world.size], together,
                                          f"{model_name} {len(group)} policies, {together} per call")
        scorer = CellScorer(ctx, out, shards, labels, model_name, description, env, together, has_baseline, grids,
                            summary["grids"], log)
        # rank 0 scores cell k while cell k + 1 samples (ordered, one waiting: the baseline's bootstrap exists before
        # a later cell's comparison); drained, with its first error raised, before the model's analysis is written
        with BatchWorker(torch.device("cpu"), world.is_main and scoring_beside_sampling(ctx), depth=1,
                         name="condbench-score") as scoring:
            for cell in group:
                policy = cell.policy
                own = shared_work.get(policy.key(), TogetherWork())
                started, evaluations = time.time() - own.seconds, adapter.denoiser_evaluations - own.evaluations
                mine, cached = run_cell_shards(ctx, policy, shards[world.rank::world.size], options.score_only,
                                               f"{model_name} {policy.canonical()}", frozenset(own.shards))
                gathered = world.gather({"shards": mine, "cached": cached,  # a collective: every rank, main thread
                                         "evaluations": adapter.denoiser_evaluations - evaluations})
                if world.is_main:
                    scoring.submit(functools.partial(scorer.score, policy, gathered, time.time() - started))
        if world.is_main:  # once every cell of the model is finished: a failed run leaves the earlier file
            atomic_save_npz(out / f"analysis_{slug(model_name)}.npz", arrays, compressed=True)
    world.barrier()
    if not world.is_main:
        return None
    summary["task"] = next(iter(summary["tasks"].values()))
    track = getattr(tasks[cells[0].task], "training_track", lambda: None)()
    if track is not None:
        summary["training_track"] = track
    return _write_summary(out, summary, grids, log)
