"""Sampling throughput of the study's ImageNet models at their real sizes, random weights (printed and written as JSON).

For each model and arithmetic (fp32 = the official float32 computation, which condbench's fp32 sampler reproduces
to 1e-5 in the parity tests; tf32 = what DiT's ``sample_ddp.py`` turns on for GPUs; bf16 autocast; optionally
torch.compile), it measures:

- denoiser forwards/s (network rows/s) at ``--batch`` rows, and the FLOPs of one row counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (attention counted through the math backend, whose matrix products
  the counter sees on every device), hence the achieved TFLOP/s and the MFU against the device's dense bf16 peak;
- samples/s of the model's default sampler (guidance included) over ``--steps`` steps (default: all of them);
- peak memory (CUDA: the allocator's peak; CPU: the process's peak resident set);
- the ratio of each row to fp32, and to tf32;
- with ``--together P``: samples/s of P policies sampled in one call (``condbench run --together``) against the
  same P policies one call each, at the same samples per policy (bf16).

    python benchmarks/gpu_sampling.py --device cuda --out gpu_sampling.json
    python benchmarks/gpu_sampling.py --small --device cpu --batch 8 --steps 3     # tiny networks, for the CPU
    python benchmarks/gpu_sampling.py --device cuda --batch 64 --together 13         # REPA Table 2's 13 policies

The JSON's ``rows_per_s`` feeds ``condbench run SUITE --dry-run --throughput FILE.json`` (projected wall time).
``benchmarks/gpu_check.py`` (``gpu_check.sh``) runs these measurements in one prepared GPU run, with DiT's own
sampling loop beside them, one end-to-end cell and the ``imagenet`` suite's policies together.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from condbench.adapters.zoo import RELEASES, ReleasedModel
from condbench.policies import parse_policy
from condbench.policy_group import PolicyGroup, tile_conditions
from condbench.seeding import PairedNoise

MODELS = ("dit-xl-2", "repa-sit-xl-2", "lightningdit-xl-1", "mdt-xl-2")
# Tiny networks of the same architectures, for a CPU run (--small).
SMALL = {"dit-xl-2": dict(input_size=8, depth=2, hidden_size=128, num_heads=4),
         "repa-sit-xl-2": dict(input_size=8, depth=2, hidden_size=128, num_heads=4),
         "lightningdit-xl-1": dict(input_size=8, depth=2, hidden_size=128, num_heads=4),
         "mdt-xl-2": dict(input_size=8, depth=4, decode_layer=2, hidden_size=128, num_heads=4)}
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets; matched on the device name.
BF16_PEAK_TFLOPS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0,
                    "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
ARITHMETIC = (("fp32", False), ("tf32", False), ("bf16", False))


def device_peak(device: torch.device, override: Optional[float]) -> Optional[float]:
    """The device's dense bf16 peak in TFLOP/s (``--peak-tflops`` wins); None where unknown (CPUs)."""
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, run: Callable[[], object], repeats: int) -> float:
    """Seconds per call of ``run`` after one warm-up call (which also builds compiled graphs)."""
    run()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    synchronize(device)
    return (time.perf_counter() - started) / repeats


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def model_config(release: ReleasedModel, small: bool) -> dict:
    """The network sizes to build: the release's own (empty overrides), or the tiny ones of ``--small``."""
    return dict(SMALL[release.name]) if small else {}


def build(release: ReleasedModel, device: torch.device, small: bool, precision: str, compile: bool,
          steps: Optional[int], decoder: Callable[[torch.Tensor], torch.Tensor] = lambda x: x):
    """The release's adapter with random weights at its real size (or the small one), default sampler."""
    _, settings = release.sampler_options(None)
    if steps is not None:
        settings = {**settings, "num_steps": steps}
    with torch.device(device):
        network = release.network(model_config(release, small))
    return release.adapter(network.to(device), release.name, checkpoint={}, decoder=decoder, precision=precision,
                           compile=compile, **settings)


def rows_per_sample(release: ReleasedModel, small: bool) -> int:
    """Network rows one sample costs with the model's own sampler at its own step count (guided steps count
    both branches): divides a measured rows/s into the samples/s of the real sampler."""
    return release.plan(model_config(release, small)).planned_evaluations(0)


def flops_per_row(adapter, device: torch.device) -> int:
    """FLOPs of one network row (multiply and add counted separately), from FlopCounterMode on 2 rows."""
    c, h, w = adapter.latent_shape
    x, t, y = torch.randn(2, c, h, w, device=device), adapter.sampler_timesteps()[:1].repeat(2).to(device), \
        torch.zeros(2, dtype=torch.long, device=device)
    backend = contextlib.nullcontext()
    with contextlib.suppress(ImportError):  # torch >= 2.3: count attention as the matrix products it is
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backend = sdpa_kernel(SDPBackend.MATH)
    with torch.no_grad(), backend, FlopCounterMode(display=False) as counter:
        adapter.model(x, t, y)
    return counter.get_total_flops() // 2


def measure(release: ReleasedModel, args: argparse.Namespace, precision: str, compile: bool) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    adapter = build(release, device, args.small, precision, compile, args.steps)
    c, h, w = adapter.latent_shape
    rows = args.batch
    x = torch.randn(rows, c, h, w, device=device)
    t = adapter.sampler_timesteps()[:1].repeat(rows).to(device)
    y = torch.randint(0, adapter.num_classes, (rows,), device=device)
    with torch.no_grad():
        forward_s = timed(device, lambda: adapter.network(x, t, y, None), args.repeats)
    samples = max(1, rows // adapter.evaluations_per_step())  # the sampler's network batch is about `rows`
    labels = torch.randint(0, adapter.num_classes, (samples,))
    before = adapter.denoiser_evaluations
    sample_s = timed(device, lambda: adapter.sample(labels, PairedNoise(0, range(samples), device)), 1)
    evaluated = (adapter.denoiser_evaluations - before) / 2  # rows of the timed call (the warm-up ran the same)
    flops = flops_per_row(adapter, device)
    achieved = flops * rows / forward_s / 1e12
    peak = device_peak(device, args.peak_tflops)
    full = rows_per_sample(release, args.small)
    return {"model": release.name, "precision": precision, "compile": compile, "batch_rows": rows,
            "sampler_steps": adapter.sampler_steps, "sampler_samples": samples,
            "gflop_per_row": flops / 1e9, "forwards_per_s": 1 / forward_s, "rows_per_s": rows / forward_s,
            "sampler_rows_per_s": evaluated / sample_s, "samples_per_s": samples / sample_s,
            "rows_per_sample_full": full, "samples_per_s_full_steps": evaluated / sample_s / full,
            "achieved_tflops": achieved, "mfu_vs_bf16_peak": achieved / peak if peak else None,
            "peak_memory_mb": peak_memory_mb(device)}


def spread_topk(count: int, embed_dim: int) -> list[str]:
    """``count`` policies for ``--together``: the baseline and top-k keeps spread over c's width."""
    return ["baseline"] + [f"topk:{max(1, embed_dim * k // (count + 1))}" for k in range(1, count)]


def measure_together(adapter, device: torch.device, specs: Sequence[str], samples: int) -> dict:
    """samples/s of the policies ``specs`` in one sampler call against one call per policy (``samples`` per
    policy, in the adapter's precision): what ``condbench run --together`` gains where one policy's batch leaves
    the device idle."""
    count = len(specs)
    policies = tuple(parse_policy(spec) for spec in specs)
    labels = torch.randint(0, adapter.num_classes, (samples,))

    def alone() -> None:
        for policy in policies:
            adapter.sample(labels, PairedNoise(0, range(samples), device), policy)

    def together() -> None:
        adapter.sample(tile_conditions(labels, count), PairedNoise(0, list(range(samples)) * count, device),
                       PolicyGroup(policies, samples))

    alone_s, together_s = timed(device, alone, 1), timed(device, together, 1)
    return {"model": adapter.name, "precision": adapter.network.precision, "policies": count,
            "policy_specs": list(specs), "samples_per_policy": samples, "sampler_steps": adapter.sampler_steps,
            "samples_per_s_alone": count * samples / alone_s, "samples_per_s_together": count * samples / together_s,
            "speedup": alone_s / together_s}


def measure_spread_together(release: ReleasedModel, args: argparse.Namespace, count: int) -> dict:
    """``--together P``: P spread top-k policies in bf16, as many samples per policy as one call of ``--batch``."""
    device = torch.device(args.device)
    adapter = build(release, device, args.small, "bf16", False, args.steps)
    samples = max(1, args.batch // adapter.evaluations_per_step())  # per policy
    return measure_together(adapter, device, spread_topk(count, adapter.embed_dim), samples)


def header(device: torch.device, args: argparse.Namespace) -> dict:
    """What every report says of where and how it was measured (``read_throughput`` reads device, date, small)."""
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "device_type": device.type, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "small": args.small, "bf16_peak_tflops": device_peak(device, args.peak_tflops),
            "command": " ".join(sys.argv)}


def table(results: list[dict]) -> str:
    """One line per measurement, with each model's ratios to its fp32 and tf32 rows."""
    base = {(r["model"], r["precision"]): r for r in results if not r["compile"]}
    lines = [f"{'model':<18} {'arith':<11} {'GFLOP/row':>9} {'fwd rows/s':>11} {'TFLOP/s':>8} {'MFU':>6} "
             f"{'samples/s':>10} {'x fp32':>7} {'x tf32':>7} {'peak MB':>9}"]
    for r in results:
        ratio = lambda p: (f"{r['samples_per_s'] / base[(r['model'], p)]['samples_per_s']:.2f}"  # noqa: E731
                           if (r["model"], p) in base else "-")
        mfu = f"{r['mfu_vs_bf16_peak']:.1%}" if r["mfu_vs_bf16_peak"] is not None else "-"
        arith = r["precision"] + ("+compile" if r["compile"] else "")
        lines.append(f"{r['model']:<18} {arith:<11} {r['gflop_per_row']:>9.4g} {r['rows_per_s']:>11.4g} "
                     f"{r['achieved_tflops']:>8.3g} {mfu:>6} {r['samples_per_s']:>10.2f} {ratio('fp32'):>7} "
                     f"{ratio('tf32'):>7} {r['peak_memory_mb']:>9.0f}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--batch", type=int, default=256, help="network rows per forward (default 256)")
    parser.add_argument("--steps", type=int, help="sampler steps timed (default: the model's own, e.g. 250)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards after one warm-up")
    parser.add_argument("--small", action="store_true", help="tiny networks of the same architectures (CPU)")
    parser.add_argument("--compile", action="store_true", help="also measure bf16 with torch.compile")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, where not in the table")
    parser.add_argument("--together", type=int, default=0,
                        help="also measure this many policies in one sampler call against one call each")
    parser.add_argument("--out", default="gpu_sampling.json")
    args = parser.parse_args(argv)
    releases = {r.name: r for r in RELEASES}
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    device = torch.device(args.device)
    arithmetic = ARITHMETIC + ((("bf16", True),) if args.compile else ())
    results = []
    for name in args.models.split(","):
        for precision, compile in arithmetic:
            results.append(measure(releases[name], args, precision, compile))
            print(f"measured {name} {precision}{'+compile' if compile else ''}", file=sys.stderr, flush=True)
    together = [measure_spread_together(releases[name], args, args.together) for name in args.models.split(",")
                if args.together > 1]
    report = {**header(device, args), "results": results, "together": together}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"{report['device']} ({device.type}, torch {torch.__version__}, {report['date']}"
          f"{', SMALL networks' if args.small else ''})\n{table(results)}")
    for r in together:
        print(f"{r['model']:<18} {r['policies']} policies x {r['samples_per_policy']} samples, bf16: "
              f"{r['samples_per_s_alone']:.2f} samples/s one call per policy, {r['samples_per_s_together']:.2f} "
              f"together ({r['speedup']:.2f}x)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
