"""Time of one resampled Frechet distance (what the paired bootstrap recomputes per resample and metric), printed
as a table and optionally written as the JSON ``condbench run SUITE --dry-run`` reads.

One resampled distance is :meth:`FrechetToReference.distance` on N rows drawn with replacement from (N, d) float64
features: the gather, the covariance (O(N d^2)), R^1/2 S R^1/2 (two d x d products, O(d^3)) and one symmetric
eigen-decomposition (O(d^3)), all in float64 on ``--device``. The time is modelled as ``a N d^2 + b d^3`` (least
squares on relative error), which the dry run extrapolates to the run's N and feature sizes.

    python benchmarks/scoring_cost.py                       # this CPU, 2 threads, N up to 5,000
    python benchmarks/scoring_cost.py --device cuda --write src/condbench/assets/scoring_cost.json

``--write`` adds (or replaces) this device type's entry of the JSON file, keeping the other devices' entries.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from condbench.metrics.frechet import FrechetToReference, feature_statistics
from condbench.plan import ScoringTable

SIZES = (1000, 2000, 5000)
DIMS = (128, 512, 1024, 2048)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resampled_distance_seconds(n: int, dim: int, device: torch.device, repeat: int, seed: int = 0) -> float:
    """Best-of-``repeat`` seconds of one FID of a with-replacement resample of n random d-dim features (after one
    untimed call), against the statistics of another random set."""
    rng = np.random.default_rng(seed)
    reference = FrechetToReference(*feature_statistics(rng.normal(size=(n, dim))), device=str(device))
    features = torch.as_tensor(rng.normal(size=(n, dim)), device=device)  # (N, d) float64
    index = torch.as_tensor(rng.integers(0, n, size=n), device=device)  # (N,) one bootstrap resample
    reference.distance(features[index])
    best = float("inf")
    for _ in range(repeat):
        _synchronize(device)
        start = time.perf_counter()
        reference.distance(features[index])
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def measure(device: torch.device, sizes: tuple[int, ...], dims: tuple[int, ...], repeat: int) -> dict:
    """The JSON entry of ``device``: what it is and the measured seconds of every (N, d)."""
    rows = []
    for dim in dims:
        for n in sizes:
            seconds = resampled_distance_seconds(n, dim, device, repeat)
            rows.append({"n": n, "dim": dim, "seconds": seconds})
            print(f"N {n:>6,}  d {dim:>5}  {seconds * 1000:10.1f} ms", flush=True)
    return {"device": device_description(device), "date": datetime.date.today().isoformat(),
            "torch": torch.__version__, "load_average": round(os.getloadavg()[0], 1), "measurements": rows}


def print_fit(entry: dict) -> None:
    """The fitted model, its error on every measurement, and what it gives at the study's sizes."""
    table = ScoringTable.from_entry("measured", entry)
    print(f"\nfit: {table.formula()}")
    for row in entry["measurements"]:
        model = table.seconds(row["n"], row["dim"])
        print(f"N {row['n']:>6,}  d {row['dim']:>5}  measured {row['seconds']:8.3f} s  model {model:8.3f} s  "
              f"({model / row['seconds'] - 1:+.0%})")
    for n in (5000, 50000):
        print(f"extrapolated: one resampled FID (d 2048) at N {n:,} = {table.seconds(n, 2048):.2f} s")


def write_entry(path: Path, device_type: str, entry: dict) -> None:
    tables = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    tables[device_type] = entry
    path.write_text(json.dumps(tables, indent=1) + "\n", encoding="utf-8")
    print(f"wrote the {device_type} entry of {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the issue's figures use 2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--write", type=Path, help="add this device's entry to a scoring-cost JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    entry = measure(device, tuple(args.sizes), tuple(args.dims), args.repeat)
    print_fit(entry)
    if args.write:
        write_entry(args.write, device.type, entry)


if __name__ == "__main__":
    main()
