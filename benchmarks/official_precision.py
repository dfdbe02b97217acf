"""What ``precision: official`` (X-MDPT's and MDSGen's bf16 autocast, c included) does to the numbers of the shipped
tiny models, against fp32 (printed as a table, never asserted).

For xmdpt-digits (pose-digits pairs) and mdsgen-shapes (audio-shapes clips): the relative error (Frobenius) against
fp32 of c and of the denoiser output at the first, middle and last sampling step, then of the sampler's final
latents and of the decoded outputs (images, waveforms; for waveforms also of their |STFT|, as the vocoder's phase
moves far for small changes), with the same paired noise. On the CPU this is CPU
autocast, whose op lists differ a little from CUDA's (both run matrix products and convolutions in bf16 and
layer norms in float32).

    python benchmarks/official_precision.py --device cpu --samples 32
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch

import condbench
from condbench.seeding import PairedNoise

CASES = (("xmdpt-digits", "pose-digits", "num_pairs"), ("mdsgen-shapes", "audio-shapes", "num_clips"))


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """||ours - reference|| / ||reference|| (Frobenius)."""
    return float((ours.float() - reference.float()).norm() / reference.float().norm())


def step_errors(adapters: dict, cond, steps: list[int]) -> list[tuple[str, float]]:
    """(row name, relative error of official vs fp32) of c and of the denoiser output at each of ``steps``."""
    fp32, official = adapters["fp32"], adapters["official"]
    generator = torch.Generator().manual_seed(0)
    times, rows = fp32.sampler_timesteps(), []
    for step in steps:
        n = len(fp32.embed(cond, times[step]))
        t = times[step].repeat(n).to(fp32.device)
        x = torch.randn(n, *fp32.latent_shape, generator=generator).to(fp32.device)
        with torch.no_grad():
            rows.append((f"c, step {step}", relative_error(official.embed(cond, t), fp32.embed(cond, t))))
            rows.append((f"denoiser output, step {step}",
                         relative_error(official.denoise(x, t, cond), fp32.denoise(x, t, cond))))
    return rows


def sample_errors(adapters: dict, cond, n: int) -> list[tuple[str, float]]:
    """Relative errors of official vs fp32 of the final latents and of the decoded outputs, same paired noise."""
    latents, outputs = {}, {}
    for name, adapter in adapters.items():
        latents[name] = adapter.sample(cond, PairedNoise(0, range(n), adapter.device)).samples
        outputs[name] = adapter.decode(latents[name])
    rows = [("final latents", relative_error(latents["official"], latents["fp32"])),
            ("decoded outputs", relative_error(outputs["official"], outputs["fp32"]))]
    if outputs["fp32"].dim() == 2:  # waveforms (N, L): a vocoder's phase moves far for small changes; |STFT| less
        rows.append(("decoded |STFT| (no phase)", relative_error(magnitudes(outputs["official"]),
                                                                 magnitudes(outputs["fp32"]))))
    return rows


def magnitudes(waveforms: torch.Tensor) -> torch.Tensor:
    """|STFT| (N, 257, frames) of waveforms (N, L): 512-point frames, hop 128."""
    return torch.stft(waveforms.float().cpu(), 512, 128, window=torch.hann_window(512), return_complex=True).abs()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=32, help="pairs / clips per model")
    args = parser.parse_args(argv)
    print(f"{'model':<15} {'quantity':<30} {'relative error vs fp32':>22}")
    for model, task_name, count_option in CASES:
        task = condbench.load_task(task_name, **{count_option: args.samples})
        cond = task.conditions()[0:args.samples]
        adapters = {p: condbench.load_adapter(model, device=args.device, precision=p) for p in ("fp32", "official")}
        last = adapters["fp32"].sampler_steps - 1
        for quantity, error in step_errors(adapters, cond, [0, last // 2, last]) + sample_errors(adapters, cond,
                                                                                                    args.samples):
            print(f"{model:<15} {quantity:<30} {error:>22.2e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
