"""How far each precision moves the numbers on the built-in digits task, against fp32 (printed, never asserted).

For each precision: the relative error (Frobenius) of c and of the denoiser output against fp32 at the first,
middle and last sampling step; then the digits metrics of the default sampler's samples and their paired change
against fp32 (same noise per index) with the 95% paired bootstrap interval the runner reports.

    python benchmarks/precision_accuracy.py --device cuda --samples-per-class 100
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch

import condbench
from condbench.paired import PairedBootstrap
from condbench.precision import PRECISIONS, Denoiser
from condbench.seeding import PairedNoise


def relative_errors(adapter, precision: str, rows: int = 200) -> tuple[float, list[float]]:
    """(max relative error of c, relative error of the denoiser output per step) against fp32."""
    model, torch_device = adapter.model, adapter.device
    labels = torch.arange(10, device=torch_device).repeat(rows // 10)
    steps = adapter.sampler_timesteps()
    c_error, out_errors = 0.0, []
    generator = torch.Generator().manual_seed(0)
    for step in (0, len(steps) // 2, len(steps) - 1):
        t = steps[step].repeat(len(labels)).to(torch_device)
        x = torch.randn(len(labels), *adapter.latent_shape, generator=generator).to(torch_device)
        seen = {}

        def hook(c, t_part, cond_part):
            seen["c"] = c
            return c

        with torch.no_grad():
            reference, c_reference = model(x, t, labels), model.conditional_vector(t, labels)
            out = Denoiser(model, precision)(x, t, labels, hook)
        c_error = max(c_error, float((seen["c"] - c_reference).norm() / c_reference.norm()))
        out_errors.append(float((out - reference).norm() / reference.norm()))
    return c_error, out_errors


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples-per-class", type=int, default=20)
    parser.add_argument("--precisions", default="tf32,bf16", help=f"compared with fp32; from {', '.join(PRECISIONS)}")
    args = parser.parse_args(argv)
    task = condbench.load_task("digits", samples_per_class=args.samples_per_class)
    evaluator, labels = task.evaluator, task.conditions()
    scored = {}
    for precision in ["fp32", *args.precisions.split(",")]:
        adapter = condbench.load_adapter("dit-digits", device=args.device, precision=precision)
        if precision != "fp32":
            c_error, out_errors = relative_errors(adapter, precision)
            print(f"{precision}: relative error vs fp32 of c {c_error:.2e}, of the denoiser output at the first, "
                  f"middle and last step {', '.join(f'{e:.2e}' for e in out_errors)}")
        samples = adapter.sample(labels, PairedNoise(0, range(len(labels)), adapter.device)).samples
        features, logits = evaluator.features(adapter.decode(samples).cpu(), labels)
        scored[precision] = (features, logits, labels)
        print(f"{precision}: {len(labels)} samples, " + ", ".join(
            f"{k} {v:.4f}" for k, v in evaluator.score(*scored[precision]).items()), flush=True)
    bootstrap = PairedBootstrap(evaluator.bootstrap_score, scored["fp32"], 200,
                                baseline_metrics=evaluator.score(*scored["fp32"]))
    for precision, data in scored.items():
        if precision != "fp32":
            for metric, change in bootstrap.compare(data, evaluator.score(*data)).items():
                low, high = change["ci95"]
                print(f"{precision} - fp32: {metric} {change['delta']:+.4f} [{low:+.4f}, {high:+.4f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
