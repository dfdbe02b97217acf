"""Runs a suite: embedding analysis, then every (model, policy) cell with paired seeds, then the scores.

Every policy of a model samples index i from the noise of (seed, i), so the cells differ only by the
policy. Each finished cell is appended to ``results.jsonl`` at once (a crash loses at most the cell in
progress); ``results.json`` gathers everything with provenance at the end.
"""
from __future__ import annotations

import datetime
import json
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from . import __version__
from .adapters.base import Adapter, PolicyTrace
from .analysis import analyze
from .policies import Policy, parse_policy
from .progress import progress_bar
from .registry import load_adapter, load_task
from .seeding import PairedNoise
from .suites import Suite

SCHEMA_VERSION = 1
GRID_PER_CLASS = 8

Log = Callable[[str], None]


class NonFiniteSamplesError(RuntimeError):
    """A cell produced NaN or infinite samples; earlier cells are kept."""


def environment() -> dict:
    """Versions and device, for the provenance of every result."""
    return {"condbench": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "numpy": np.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


@dataclass
class CellOutput:
    features: torch.Tensor  # (N, F)
    logits: torch.Tensor  # (N, K)
    grid: np.ndarray  # (G, C, H, W) decoded images in [0, 1] of the first G indices
    trace: dict
    seconds: float


def sample_cell(adapter: Adapter, task, policy: Policy, seed: int, batch_size: int,
                desc: str = "") -> CellOutput:
    """Sample every index of the task under ``policy`` and extract the evaluator's features on the fly."""
    conditions = task.conditions()  # (N,)
    n = len(conditions)
    grid_count = min(n, GRID_PER_CLASS * len(task.class_names))
    features, logits, grid, traces, sizes = [], [], [], [], []
    started = time.time()
    with progress_bar(total=n, desc=desc, unit="sample") as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            out = adapter.sample(conditions[start:stop], PairedNoise(seed, range(start, stop), adapter.device), policy)
            bad = ~torch.isfinite(out.samples.flatten(1)).all(dim=1)
            if bad.any():
                first = start + int(bad.nonzero()[0])
                raise NonFiniteSamplesError(f"{desc}: {int(bad.sum())} of {stop - start} samples in indices "
                                            f"{start}..{stop - 1} are NaN or infinite (first: index {first})")
            images = adapter.decode(out.samples).cpu()
            f, l = task.evaluator.features(images)
            features.append(f)
            logits.append(l)
            if start < grid_count:
                grid.append(images[: grid_count - start].numpy())
            traces.append(out.trace)
            sizes.append(stop - start)
            bar.update(stop - start)
    trace = PolicyTrace.merge(traces, sizes).to_dict()
    return CellOutput(torch.cat(features), torch.cat(logits), np.concatenate(grid), trace, time.time() - started)


def paired_bootstrap(values: np.ndarray, baseline: np.ndarray, resamples: int, seed: int = 0) -> dict:
    """Mean difference (policy - baseline) of paired per-sample values, with a 95% percentile interval."""
    diff = values - baseline
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"delta": float(diff.mean()), "ci95": [float(low), float(high)], "resamples": resamples}


def run_suite(suite: Suite, out_dir: str | Path, device: str = "cpu", log: Log = print) -> Path:
    """Run every model of the suite under every policy; returns the path of ``results.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = load_task(suite.task, **suite.task_options)
    env = environment()
    jsonl = out / "results.jsonl"
    jsonl.write_text("")
    summary = {"schema_version": SCHEMA_VERSION, "suite": suite.__dict__, "task": task.describe(),
               "environment": env, "models": {}, "analysis": {}, "records": []}
    grids: dict[str, np.ndarray] = {}
    for model_name in suite.models:
        adapter = load_adapter(model_name, device=device, **suite.model_options.get(model_name, {}))
        summary["models"][model_name] = adapter.describe()
        log(f"[{model_name}] embedding analysis over {len(task.analysis_conditions())} conditions")
        stats, arrays = analyze(adapter, task.analysis_conditions(), **suite.analysis)
        np.savez_compressed(out / f"analysis_{slug(model_name)}.npz", **arrays)
        summary["analysis"][model_name] = stats
        c = stats["c"]
        log(f"[{model_name}] d={c['dim']} PR={c['pr']['mean']:.2f} nPR={c['npr']['mean']:.2%} "
            f"mean cosine={c['cosine']['mean']:.4f}")
        baseline_samples: Optional[dict] = None
        for spec in suite.policies:
            policy = parse_policy(spec)
            cell = sample_cell(adapter, task, policy, suite.seed, suite.batch_size, desc=f"{model_name} {policy.canonical()}")
            labels = task.conditions()
            metrics = task.evaluator.score(cell.features, cell.logits, labels)
            per_sample = task.evaluator.per_sample(cell.logits, labels)
            if policy.is_baseline:
                baseline_samples = per_sample
            deltas = ({k: paired_bootstrap(v, baseline_samples[k], suite.bootstrap) for k, v in per_sample.items()}
                      if baseline_samples is not None and not policy.is_baseline else {})
            record = {
                "schema_version": SCHEMA_VERSION, "task": suite.task, "model": model_name, "policy": policy.canonical(),
                "spec": spec, "metrics": metrics, "paired_vs_baseline": deltas,
                "dims_removed": cell.trace["mean_removed_dims"],
                "dims_removed_first_step": cell.trace["first_active_removed_dims"],
                "dims_removed_fraction": cell.trace["mean_removed_dims"] / adapter.embed_dim,
                "trace": cell.trace, "num_samples": len(labels), "seed": suite.seed,
                "protocol": task.describe()["metric_protocol"],
                "timing": {"seconds": cell.seconds, "samples_per_s": len(labels) / cell.seconds},
                "environment": {k: env[k] for k in ("condbench", "torch", "cuda")}, "device": str(adapter.device),
            }
            with jsonl.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            summary["records"].append(record)
            grids[f"{model_name}|{policy.canonical()}"] = cell.grid
            log(f"[{model_name}] {policy.canonical():<28} removed {record['dims_removed']:6.1f}/{adapter.embed_dim} "
                f"FID {metrics['fid']:8.3f}  IS {metrics['is']:6.3f}  class fidelity {metrics['class_fidelity']:.3f}  "
                f"({cell.seconds:.1f}s)")
    np.savez_compressed(out / "samples_grid.npz", **{slug(k): v for k, v in grids.items()})
    summary["grids"] = {k: slug(k) for k in grids}
    track = getattr(task, "training_track", lambda: None)()
    if track is not None:
        summary["training_track"] = track
    results = out / "results.json"
    tmp = results.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    tmp.replace(results)
    return results

