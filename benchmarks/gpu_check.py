"""condbench's GPU figures in one run: one JSON file and one Markdown table (``benchmarks/gpu_check.sh`` runs it on
a machine with nothing of condbench installed and no network).

Every network is built at its real size with RANDOM weights (speed does not depend on the values):

- denoiser throughput of DiT-XL/2 and REPA SiT-XL/2 (256 px) at ``--batch`` rows in fp32, tf32, bf16 and
  bf16 + torch.compile (``gpu_sampling.measure``: rows/s, FLOPs by ``FlopCounterMode``, TFLOP/s, MFU against the
  device's dense bf16 peak, peak memory, the sampler's rows/s and samples/s of the full sampler);
- DiT's own float32 sampling loop (``sample_ddp.py``: the network and ``p_sample_loop`` with ``forward_with_cfg``,
  written out below with no condbench code in the loop), plain and with TF32, and each DiT row's ratio to it;
- one end-to-end cell (DiT-XL/2 in bf16, SD-VAE decoder at the sd-vae-ft-ema size, Inception features): samples/s
  of the sampler alone, with decoding and features after each batch, and beside sampling (``condbench.overlap``);
- the ``imagenet`` suite's policies sampled together in one call against one call each (REPA, bf16);
- the REPA grid of the ``imagenet`` suite projected from the measured rates (``condbench run imagenet --dry-run
  --throughput FILE``), and the issue's targets, met or not.

It stops starting measurements once ``--budget-s`` has passed (the compiled rows come last) and rewrites both files
after every measurement, so a run cut short still leaves what it measured. ``--small`` runs tiny networks of the
same architectures on the CPU (the same files, for CI).

    bash benchmarks/gpu_check.sh OUT_DIR                  # on the GPU machine
    python benchmarks/gpu_check.py --small --out check.json --markdown check.md
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from gpu_sampling import (build, header, measure, measure_together, peak_memory_mb, rows_per_sample, synchronize,
                          timed)

from condbench.adapters.zoo import RELEASES, ReleasedModel
from condbench.seeding import PairedNoise

DENOISERS = ("dit-xl-2", "repa-sit-xl-2")
OFFICIAL_MODEL = "dit-xl-2"  # the model whose official sampling loop is written out below
E2E_MODEL, E2E_PRECISION = "dit-xl-2", "bf16"
GRID_SUITE, GRID_MODEL = "imagenet", "repa-sit-xl-2"
TARGETS = {"dit_bf16_mfu": 0.55, "x_official_fp32": 5.0, "x_official_tf32": 2.0, "e2e_fraction": 0.90,
           "grid_hours": 2.0}
WEIGHTS = "random (real network sizes, no checkpoint; speed does not depend on the weights' values)"
# sd-vae-ft-ema's config.json (diffusers AutoencoderKL), written out so that nothing is fetched from the hub
SD_VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                     down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                     layers_per_block=2, act_fn="silu", norm_num_groups=32, sample_size=256)
SMALL_VAE_CONFIG = dict(latent_channels=4, block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4,
                        sample_size=16)
GPU_SETTINGS = dict(device="cuda", batch=256, steps=6, repeats=3, e2e_steps=25, e2e_batches=3, together_samples=16,
                    compile=True, budget_s=300.0)
SMALL_SETTINGS = dict(device="cpu", batch=4, steps=2, repeats=1, e2e_steps=2, e2e_batches=2, together_samples=1,
                      compile=False, budget_s=600.0)


# ---- DiT's sample_ddp.py, written out (facebookresearch/DiT diffusion/gaussian_diffusion.py and respace.py) ----

def dit_respaced_process(num_steps: int, num_timesteps: int = 1000) -> dict[str, np.ndarray]:
    """DiT's linear-beta process respaced to ``num_steps`` (``space_timesteps`` + ``SpacedDiffusion``): the float64
    coefficients ``p_sample`` reads and ``timestep_map`` (process step -> the network's t)."""
    base = np.cumprod(1.0 - np.linspace(0.0001, 0.02, num_timesteps, dtype=np.float64))
    stride = 1 if num_steps <= 1 else (num_timesteps - 1) / (num_steps - 1)
    taken, position = set(), 0.0
    for _ in range(num_steps):
        taken.add(round(position))
        position += stride
    betas, timestep_map, last = [], [], 1.0
    for i, alpha_cumprod in enumerate(base):
        if i in taken:
            betas.append(1 - alpha_cumprod / last)
            last = alpha_cumprod
            timestep_map.append(i)
    betas = np.array(betas, dtype=np.float64)
    alphas_cumprod = np.cumprod(1.0 - betas)
    prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
    return {"timestep_map": np.array(timestep_map), "log_betas": np.log(betas),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1),
            "posterior_log_variance_clipped": np.log(np.append(posterior_variance[1], posterior_variance[1:])),
            "posterior_mean_coef1": betas * np.sqrt(prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod)}


def _extract_into_tensor(arr: np.ndarray, timesteps: torch.Tensor, broadcast_shape: torch.Size) -> torch.Tensor:
    """DiT's helper: arr[timesteps] as float32, broadcast to ``broadcast_shape``."""
    res = torch.from_numpy(arr).to(device=timesteps.device)[timesteps].float()
    while len(res.shape) < len(broadcast_shape):
        res = res[..., None]
    return res + torch.zeros(broadcast_shape, device=timesteps.device)


def official_dit_sample(model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor, num_steps: int, cfg_scale: float,
                        noise_like: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like) -> torch.Tensor:
    """DiT's ``sample_ddp.py``: latents z (N, 4, H, W) and labels y (N,) -> samples (N, 4, H, W) by
    ``p_sample_loop(model.forward_with_cfg, ...)``, ``clip_denoised=False``, the batch doubled with the null class
    1000 and guidance on channels [:3]; ``noise_like`` draws each step's noise (``torch.randn_like`` there)."""
    process = dit_respaced_process(num_steps)
    n = len(z)
    x = torch.cat([z, z], 0)  # (2N, 4, H, W)
    y = torch.cat([y, torch.tensor([1000] * n, device=z.device)], 0)
    map_tensor = torch.tensor(process["timestep_map"], device=z.device)
    with torch.no_grad():
        for i in list(range(num_steps))[::-1]:
            t = torch.tensor([i] * len(x), device=z.device)
            half = x[: len(x) // 2]  # forward_with_cfg
            model_out = model(torch.cat([half, half], 0), map_tensor[t], y)  # (2N, 8, H, W)
            eps, rest = model_out[:, :3], model_out[:, 3:]
            cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
            half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
            model_out = torch.cat([torch.cat([half_eps, half_eps], 0), rest], dim=1)
            eps, var_values = torch.split(model_out, x.shape[1], dim=1)  # p_mean_variance, learned range
            min_log = _extract_into_tensor(process["posterior_log_variance_clipped"], t, x.shape)
            max_log = _extract_into_tensor(process["log_betas"], t, x.shape)
            frac = (var_values + 1) / 2
            log_variance = frac * max_log + (1 - frac) * min_log
            pred_xstart = (_extract_into_tensor(process["sqrt_recip_alphas_cumprod"], t, x.shape) * x
                           - _extract_into_tensor(process["sqrt_recipm1_alphas_cumprod"], t, x.shape) * eps)
            mean = (_extract_into_tensor(process["posterior_mean_coef1"], t, x.shape) * pred_xstart
                    + _extract_into_tensor(process["posterior_mean_coef2"], t, x.shape) * x)
            noise = noise_like(x)  # p_sample
            nonzero_mask = (t != 0).float().view(-1, *([1] * (len(x.shape) - 1)))
            x = mean + nonzero_mask * torch.exp(0.5 * log_variance) * noise
    return x.chunk(2, dim=0)[0]


@contextlib.contextmanager
def tf32_flags(enabled: bool):
    """``sample_ddp.py``'s ``--tf32`` (its default): TF32 matmul and cuDNN flags for the loop, restored after."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


# ---- measurements ----

def measure_official(release: ReleasedModel, args: argparse.Namespace, tf32: bool) -> dict:
    """The official loop's rows/s in float32 (``tf32``: with sample_ddp.py's TF32 flags), at ``--batch`` rows."""
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    adapter = build(release, device, args.small, "fp32", False, args.steps)  # its network and default settings
    c, h, w = adapter.latent_shape
    samples = max(1, args.batch // 2)
    z = torch.randn(samples, c, h, w, device=device)
    y = torch.randint(0, adapter.num_classes, (samples,), device=device)
    with tf32_flags(tf32):
        seconds = timed(device, lambda: official_dit_sample(adapter.model, z, y, args.steps, adapter.cfg_scale), 1)
    rows = 2 * samples * args.steps
    return {"model": release.name, "loop": "DiT sample_ddp.py (p_sample_loop, forward_with_cfg), written out",
            "precision": "tf32" if tf32 else "fp32", "batch_rows": 2 * samples, "sampler_steps": args.steps,
            "sampler_rows_per_s": rows / seconds,
            "samples_per_s_full_steps": rows / seconds / rows_per_sample(release, args.small),
            "peak_memory_mb": peak_memory_mb(device)}


def random_sd_vae(folder: Path, small: bool) -> Path:
    """A diffusers folder holding an AutoencoderKL with random weights, at sd-vae-ft-ema's size (or tiny)."""
    from diffusers import AutoencoderKL

    path = folder / ("sd-vae-small" if small else "sd-vae-ft-ema-size")
    AutoencoderKL(**(SMALL_VAE_CONFIG if small else SD_VAE_CONFIG)).save_pretrained(path)
    return path


def measure_end_to_end(release: ReleasedModel, args: argparse.Namespace, folder: Path) -> dict:
    """Samples/s of one cell's batches as the runner does them: the sampler alone, then with each batch decoded
    (SD-VAE, float32) and put through Inception after it, then beside the next batch (``BatchWorker``)."""
    from condbench.adapters.vae import SDVAEDecoder
    from condbench.metrics.inception import InceptionFeatures, random_state_dict
    from condbench.overlap import BatchWorker
    from condbench.tasks.imagenet_metrics import ImageNetEvaluator

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    inception = InceptionFeatures.from_state_dict(random_state_dict(seed=0)).to(device)
    evaluator = ImageNetEvaluator(inception, reference=None, prompts=[], device=device)
    adapter = build(release, device, args.small, E2E_PRECISION, False, args.e2e_steps,
                    decoder=SDVAEDecoder(str(random_sd_vae(folder, args.small))))
    samples = max(1, args.batch // adapter.evaluations_per_step())
    labels = torch.randint(0, adapter.num_classes, (samples,))

    def score(batch: torch.Tensor) -> None:  # the runner's ShardOutputs.add: decode, to the CPU, features
        evaluator.features(adapter.decode(batch).float().cpu(), labels)

    def cell(worker: Optional[BatchWorker]) -> None:
        for b in range(args.e2e_batches):
            out = adapter.sample(labels, PairedNoise(0, range(b * samples, (b + 1) * samples), device))
            if worker is not None:
                worker.submit(functools.partial(score, out.samples), out.samples)

    def with_worker(overlap: bool) -> Callable[[], None]:
        def run() -> None:
            with BatchWorker(device, overlap) as worker:
                cell(worker)
        return run

    score(adapter.sample(labels, PairedNoise(0, range(samples), device)).samples)  # warm-up: loads the VAE
    alone, after, beside = (timed_once(device, run) for run in (lambda: cell(None), with_worker(False),
                                                                 with_worker(True)))
    count = samples * args.e2e_batches
    full_scale = rows_per_sample(release, args.small) / adapter.planned_evaluations(0)
    exposed = max(0.0, beside - alone) / args.e2e_batches  # s per batch the overlap does not hide
    alone_full = alone / args.e2e_batches * full_scale  # s per batch at the model's own step count
    size = "tiny" if args.small else "sd-vae-ft-ema size"
    return {"model": release.name, "precision": E2E_PRECISION, "decoder": f"SD-VAE ({size}), float32",
            "features": "Inception (torch-fidelity inception-v3-compat) pool3 + sFID", "sampler_steps":
            adapter.sampler_steps, "full_sampler_steps": release.sampler_defaults.get("num_steps"),
            "samples_per_batch": samples, "batches": args.e2e_batches,
            "samples_per_s_sampler_alone": count / alone, "samples_per_s_decode_after": count / after,
            "samples_per_s_decode_beside": count / beside, "fraction_decode_after": alone / after,
            "fraction_decode_beside": alone / beside,
            "decode_features_s_per_batch": max(0.0, after - alone) / args.e2e_batches,
            "exposed_s_per_batch": exposed, "projected_fraction_beside_full_steps": alone_full / (alone_full + exposed),
            "peak_memory_mb": peak_memory_mb(device)}


def timed_once(device: torch.device, run: Callable[[], object]) -> float:
    """Seconds of one call of ``run`` (warmed up by the caller)."""
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def measure_suite_together(release: ReleasedModel, args: argparse.Namespace) -> dict:
    """The grid suite's policies in one sampler call against one call each (bf16, ``--together-samples`` each)."""
    from condbench.suites import load_suite

    device = torch.device(args.device)
    adapter = build(release, device, args.small, "bf16", False, args.steps)
    return {**measure_together(adapter, device, load_suite(GRID_SUITE).policies, args.together_samples),
            "suite": GRID_SUITE}


def with_official_ratios(results: list[dict], official: list[dict]) -> list[dict]:
    """Each row with its sampler's rate over the official loop's (fp32 and tf32; None where no loop was timed)."""
    rates = {(r["model"], r["precision"]): r["sampler_rows_per_s"] for r in official}

    def ratio(r: dict, precision: str) -> Optional[float]:
        rate = rates.get((r["model"], precision))
        return r["sampler_rows_per_s"] / rate if rate else None

    return [{**r, "x_official_fp32": ratio(r, "fp32"), "x_official_tf32": ratio(r, "tf32")} for r in results]


def project_grid(path: Path, results: list[dict]) -> Optional[dict]:
    """The grid suite's cells of GRID_MODEL projected from ``path`` at its fastest measured setting, as
    ``condbench run imagenet --dry-run --models GRID_MODEL --precision P [--compile] --throughput path`` prints."""
    from condbench.plan import costs, expand, format_plan, read_throughput
    from condbench.preflight import load_tasks
    from condbench.suites import load_suite

    rows = [r for r in results if r["model"] == GRID_MODEL]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["sampler_rows_per_s"])
    suite = load_suite(GRID_SUITE)
    suite.precision, suite.compile = best["precision"], bool(best["compile"])
    cells = expand(suite, models=[GRID_MODEL])
    plan = costs(suite, cells, load_tasks(suite)[cells[0].task].num_samples)
    throughput = read_throughput(path, suite.precision, suite.compile)
    seconds = sum(throughput.seconds(c) for c in plan)
    return {"suite": GRID_SUITE, "model": GRID_MODEL, "precision": suite.precision, "compile": suite.compile,
            "cells": len(plan), "samples_per_cell": plan[0].samples, "sampling_hours": seconds / 3600,
            "command": f"condbench run {GRID_SUITE} --dry-run --models {GRID_MODEL} --precision {suite.precision}"
                       f"{' --compile' if suite.compile else ''} --throughput {path.name}",
            "dry_run": format_plan(plan, throughput)}


def targets(report: dict) -> list[dict]:
    """The issue's targets against what was measured (None: not measured in this run)."""
    dit = [r for r in report["results"] if r["model"] == OFFICIAL_MODEL and r["precision"] == "bf16"]
    best = max(dit, key=lambda r: r["sampler_rows_per_s"], default=None)
    e2e, grid = report["end_to_end"], report["projection"]
    e2e_fraction = e2e["projected_fraction_beside_full_steps"] if e2e else None
    grid_hours = grid["sampling_hours"] / e2e_fraction if grid and e2e_fraction else None
    arith = f"bf16{'+compile' if best and best['compile'] else ''}"
    rows = [("DiT-XL/2 bf16 MFU", best and best["mfu_vs_bf16_peak"], "dit_bf16_mfu", f"{arith}, forwards"),
            ("DiT-XL/2 sampler / official fp32 loop", best and best["x_official_fp32"], "x_official_fp32", arith),
            ("DiT-XL/2 sampler / official TF32 loop", best and best["x_official_tf32"], "x_official_tf32", arith),
            ("end-to-end cell / sampler alone", e2e_fraction, "e2e_fraction",
             "decoding beside sampling, projected to the full step count"),
            ("REPA grid, hours (sampling + decoding and features)", grid_hours, "grid_hours",
             "dry-run sampling time / the end-to-end fraction; scoring: see the dry-run")]
    return [{"target": name, "measured": value, "goal": TARGETS[key], "met": None if value is None else
             (value <= TARGETS[key] if key == "grid_hours" else value >= TARGETS[key]), "how": how}
            for name, value, key, how in rows]


# ---- report ----

def _cell(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict) -> str:
    """The report as Markdown tables (what the README's GPU section shows)."""
    lines = [f"# condbench GPU figures: {report['device']}",
             "", f"torch {report['torch']}, {report['date']}, weights: {report['weights']}"
             + (". **SMALL networks: not the real models' speed.**" if report["small"] else "."), "",
             "| model | arithmetic | GFLOP/row | fwd rows/s | TFLOP/s | MFU | sampler rows/s | samples/s (full "
             "sampler) | x official fp32 | x official tf32 | peak MiB |", "|" + "---|" * 11]
    for r in report["results"]:
        lines.append(f"| {r['model']} | {r['precision']}{'+compile' if r['compile'] else ''} | "
                     f"{r['gflop_per_row']:.4g} | {r['rows_per_s']:.4g} | {r['achieved_tflops']:.3g} | "
                     f"{_cell(r['mfu_vs_bf16_peak'], '.1%')} | {r['sampler_rows_per_s']:.4g} | "
                     f"{r['samples_per_s_full_steps']:.3g} | {_cell(r['x_official_fp32'], '.2f')} | "
                     f"{_cell(r['x_official_tf32'], '.2f')} | {r['peak_memory_mb']:.0f} |")
    for r in report["official"]:
        lines.append(f"| {r['model']} official loop | {r['precision']} | | | | | {r['sampler_rows_per_s']:.4g} | "
                     f"{r['samples_per_s_full_steps']:.3g} | | | {r['peak_memory_mb']:.0f} |")
    if report["end_to_end"]:
        e = report["end_to_end"]
        lines += ["", f"End-to-end cell, {e['model']} {e['precision']}, {e['decoder']}, {e['features']}: "
                      f"{e['batches']} batches of {e['samples_per_batch']} samples at {e['sampler_steps']} steps", "",
                  "| sampler alone | decode after each batch | decode beside sampling | projected at "
                  f"{e['full_sampler_steps']} steps |", "|---|---|---|---|",
                  f"| {e['samples_per_s_sampler_alone']:.3g} samples/s | {e['samples_per_s_decode_after']:.3g} "
                  f"({e['fraction_decode_after']:.1%}) | {e['samples_per_s_decode_beside']:.3g} "
                  f"({e['fraction_decode_beside']:.1%}) | {e['projected_fraction_beside_full_steps']:.1%} |"]
    for t in report["together"]:
        lines += ["", f"{t['policies']} policies of suite {t['suite']} ({t['model']}, {t['precision']}, "
                      f"{t['samples_per_policy']} samples each, {t['sampler_steps']} steps): "
                      f"{t['samples_per_s_alone']:.3g} samples/s one call per policy, "
                      f"{t['samples_per_s_together']:.3g} together ({t['speedup']:.2f}x)"]
    lines += ["", "| target | measured | goal | met | how |", "|---|---|---|---|---|"]
    for t in report["targets"]:
        met = "-" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {t['target']} | {_cell(t['measured'])} | {t['goal']} | {met} | {t['how']} |")
    if report["projection"]:
        p = report["projection"]
        lines += ["", f"`{p['command']}`:", "", "```", p["dry_run"], "```"]
    if report["skipped"]:
        lines += ["", "Not measured: " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def first_line(error: BaseException) -> str:
    """An error's message in one line, for the report's list of what was not measured."""
    return (str(error).strip().splitlines() or [""])[0]


def save(report: dict, out: Path, md: Path) -> None:
    """Both files, rewritten after every measurement (a run cut short keeps what it measured)."""
    out.write_text(json.dumps(report, indent=1, allow_nan=False))
    md.write_text(markdown(report))


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="tiny networks on the CPU (CI)")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--markdown", default="gpu_check.md")
    for name, kind in (("device", str), ("batch", int), ("steps", int), ("repeats", int), ("e2e-steps", int),
                       ("e2e-batches", int), ("together-samples", int), ("budget-s", float)):
        parser.add_argument(f"--{name}", type=kind, help="default: the GPU run's or --small's (see the source)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, help="also bf16 + torch.compile")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, where not known by name")
    args = parser.parse_args(argv)
    for key, value in (SMALL_SETTINGS if args.small else GPU_SETTINGS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def measurement_steps(args: argparse.Namespace, scratch: Path) -> list[tuple[str, Callable[[], dict], str]]:
    """(what, measure, report key) in the order they run: the compiled rows last, as their compile time is the
    least predictable part of the run."""
    releases = {r.name: r for r in RELEASES}
    steps = [(f"{name} {p}", functools.partial(measure, releases[name], args, p, False), "results")
             for name in DENOISERS for p in ("fp32", "tf32", "bf16")]
    steps += [(f"{OFFICIAL_MODEL} official loop {'tf32' if tf32 else 'fp32'}",
               functools.partial(measure_official, releases[OFFICIAL_MODEL], args, tf32), "official")
              for tf32 in (False, True)]
    steps += [("end-to-end cell", functools.partial(measure_end_to_end, releases[E2E_MODEL], args, scratch),
               "end_to_end"),
              (f"{GRID_SUITE} policies together",
               functools.partial(measure_suite_together, releases[GRID_MODEL], args), "together")]
    return steps + [(f"{name} bf16+compile", functools.partial(measure, releases[name], args, "bf16", True),
                     "results") for name in DENOISERS if args.compile]


def attempt(report: dict, what: str, run: Callable[[], object]) -> Optional[object]:
    """``run()``, or None with the failure listed under ``skipped``: one failure (no compiler there, out of
    memory) must not lose the other measurements of a run that cannot be repeated at will."""
    try:
        return run()
    except Exception as error:
        traceback.print_exc()
        report["skipped"].append(f"{what} (failed: {type(error).__name__}: {first_line(error)})")
        return None


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out, md = Path(args.out), Path(args.markdown)
    report = {**header(torch.device(args.device), args), "weights": WEIGHTS, "results": [], "official": [],
              "end_to_end": None, "together": [], "projection": None, "targets": [], "skipped": [], "elapsed_s": 0.0}
    with tempfile.TemporaryDirectory() as scratch:
        for what, run, key in measurement_steps(args, Path(scratch)):
            if time.perf_counter() - started > args.budget_s:
                report["skipped"].append(f"{what} (over the {args.budget_s:.0f} s budget)")
                continue
            print(f"[{time.perf_counter() - started:6.1f} s] measuring {what}", file=sys.stderr, flush=True)
            value = attempt(report, what, run)
            if value is not None:
                report[key] = report[key] + [value] if isinstance(report[key], list) else value
            report["results"] = with_official_ratios(report["results"], report["official"])
            report["elapsed_s"] = time.perf_counter() - started
            save(report, out, md)  # the rates first: the projection below reads them from the file
    if not args.compile:
        report["skipped"].append("bf16+compile (--no-compile; --small leaves it out)")
    report["projection"] = attempt(report, "the grid's projection", lambda: project_grid(out, report["results"]))
    report["targets"] = targets(report)
    report["elapsed_s"] = time.perf_counter() - started
    save(report, out, md)
    print(md.read_text())
    print(f"wrote {out} and {md} in {report['elapsed_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
