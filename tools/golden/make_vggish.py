"""Golden fixture for VGGish (FD_VGG): torchvggish's front end and av-benchmark's VGGish on random weights.

Usage: python tools/golden/make_vggish.py --official PATH/TO/torchvggish --av-benchmark PATH/TO/av-benchmark
       [--out tests/fixtures/audio_metrics]

- Front end: harritaylor/torchvggish ``torchvggish/vggish_input.py`` ``waveform_to_examples(x, 16000,
  return_tensor=False)`` (float64 log-mel patches (P, 96, 64)) of each test waveform.
- Network: hkchengrex/av-benchmark ``av_bench/vggish/vggish.py`` ``VGGish(pretrained=False, postprocess=False)``
  (torchvggish's VGG with the last ReLU removed, its own copy of mel_features.py), loaded strictly with
  :func:`condbench.metrics.vggish.random_state_dict` (every weight and bias random), called on the batch of
  waveforms as av-benchmark's ``extract`` calls it: per-patch embeddings (N, P, 128).
- Layout: the key -> shape of torchvggish's own ``VGG(make_layers())`` (what ``vggish-10086976.pth`` holds).

The weights (72M parameters) are not stored: the fixture holds the seed and their sum; the test redraws them.
Both repositories' modules import numpy, torch, resampy and soundfile (installed; nothing is stubbed).
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from seeded_weights import weights_sum  # tools/golden/, beside this script

SEED = 11
SECONDS = 2.0  # two whole patches and a partial one per clip


def test_waveforms() -> torch.Tensor:
    """(3, 32000) float32: a chord, a chirp, noise; different enough that their embeddings differ."""
    rng = np.random.default_rng(SEED)
    t = np.arange(int(16000 * SECONDS)) / 16000
    chord = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1320 * t) + 0.01 * rng.standard_normal(len(t))
    chirp = 0.5 * np.sin(2 * np.pi * (200 * t + 900 * t ** 2))
    noise = 0.2 * rng.standard_normal(len(t))
    return torch.tensor(np.stack([chord, chirp, noise]), dtype=torch.float32)


def commit_of(path: Path) -> str:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--official", required=True, type=Path, help="checkout of harritaylor/torchvggish")
    parser.add_argument("--av-benchmark", required=True, type=Path, help="checkout of hkchengrex/av-benchmark")
    parser.add_argument("--commit", help="torchvggish commit (default: git rev-parse HEAD of --official)")
    parser.add_argument("--av-benchmark-commit")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "audio_metrics")
    args = parser.parse_args()

    from condbench.metrics.vggish import random_state_dict

    sys.path.insert(0, str(args.official))
    vggish_input = importlib.import_module("torchvggish.vggish_input")
    torchvggish = importlib.import_module("torchvggish.vggish")
    sys.path.insert(0, str(args.av_benchmark))
    av_vggish = importlib.import_module("av_bench.vggish.vggish")

    waveforms = test_waveforms()
    examples = np.stack([vggish_input.waveform_to_examples(w.numpy(), 16000, return_tensor=False)
                         for w in waveforms])  # (N, P, 96, 64) float64

    state = random_state_dict(SEED)
    model = av_vggish.VGGish(device="cpu", pretrained=False, postprocess=False).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        embeddings = model(waveforms)  # (N, P, 128)

    layout = {k: list(v.shape) for k, v in torchvggish.VGG(torchvggish.make_layers()).state_dict().items()}
    meta = {"official": "harritaylor/torchvggish vggish_input.waveform_to_examples; hkchengrex/av-benchmark "
                        "av_bench/vggish/vggish.py VGGish(pretrained=False, postprocess=False)",
            "commit": args.commit or commit_of(args.official),
            "av_benchmark_commit": args.av_benchmark_commit or commit_of(args.av_benchmark),
            "seed": str(SEED), "weights_sum": repr(weights_sum(state)), "torchvggish_layout": json.dumps(layout)}
    tensors = {"waveforms": waveforms, "examples": torch.from_numpy(examples), "embeddings": embeddings.float()}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / "vggish.safetensors"), metadata=meta)
    print(f"wrote {args.out / 'vggish.safetensors'}: examples {tuple(examples.shape)}, embeddings "
          f"{tuple(embeddings.shape)}, |embedding| mean {embeddings.abs().mean():.3f}")


if __name__ == "__main__":
    main()
