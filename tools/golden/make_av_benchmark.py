"""Golden fixture for the audio scores and clip reading: hkchengrex/av-benchmark's own functions.

Usage: python tools/golden/make_av_benchmark.py --official PATH/TO/av-benchmark --torchaudio PATH/TO/torchaudio-2.11
       [--commit SHA] [--out tests/fixtures/audio_metrics]

``--torchaudio`` is the unpacked ``torchaudio-2.11.0`` wheel from PyPI (``pip download torchaudio==2.11.0 --no-deps``
then unzip): torchaudio has no release for torch >= 2.12, but its pure-Python ``transforms.Resample`` runs on it.

- Reading: av-benchmark ``av_bench/data/audio_dataset.py`` ``AudioDataset(..., audio_length, sr=16000)
  .read_from_file`` (mono, mean removed, ``torchaudio.transforms.Resample``, cut) on wav files written here:
  stereo 44.1 kHz int16 longer than the cut, mono 48 kHz float32 shorter than it. Stubs, for imports and
  file decoding only: ``pytorchvideo`` (imported for the ImageBind dataset, unused here) is an empty module,
  and ``torchaudio.load`` (which needs torchcodec in 2.11) is replaced by soundfile's float32 read, channels
  first, which is what torchaudio returns for these PCM files. Resampling, mono, mean removal and the cut are
  av-benchmark's and torchaudio's own code.
- Resampling alone: ``torchaudio.transforms.Resample(sr, 16000)`` of random waveforms at six rates.
- Scores: ``av_bench.metrics`` ``compute_fd`` (generated first, as ``evaluate`` calls it), ``compute_kl``
  (``kl_softmax``, what ``evaluate`` reports as KL-PANNS-softmax) and ``compute_isc`` (``splits=10,
  samples_shuffle=True, rng_seed=2020``) on random features and logits stored in the fixture.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

SEED = 17
CLIPS = 40
PATCHES = 3
RESAMPLE_RATES = (8000, 11025, 22050, 32000, 44100, 48000)
CUT_SECONDS = 1.0
# name, sample rate, channels, soundfile subtype, seconds (the second file is shorter than the cut)
WAV_FILES = (("stereo44k", 44100, 2, "PCM_16", 1.2), ("mono48k", 48000, 1, "FLOAT", 0.5))


def write_wavs(folder: Path, rng: np.random.Generator) -> list[Path]:
    import soundfile

    paths = []
    for name, rate, channels, subtype, seconds in WAV_FILES:
        t = np.arange(int(rate * seconds)) / rate
        tone = 0.4 * np.sin(2 * np.pi * 523.25 * t) + 0.1  # with a DC offset, which the reader removes
        data = np.stack([tone + 0.05 * rng.standard_normal(len(t)) for _ in range(channels)], axis=1)
        path = folder / f"{name}.wav"
        soundfile.write(str(path), data, rate, subtype=subtype)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--official", required=True, type=Path, help="checkout of hkchengrex/av-benchmark")
    parser.add_argument("--torchaudio", required=True, type=Path, help="unpacked torchaudio 2.11.0 wheel")
    parser.add_argument("--commit")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "audio_metrics")
    args = parser.parse_args()

    import soundfile

    sys.path.insert(0, str(args.torchaudio))
    import torchaudio

    def soundfile_load(path, *unused, **unused_kw):  # decoding stub, see the docstring
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(data.T.copy()), rate

    torchaudio.load = soundfile_load
    sys.modules.setdefault("pytorchvideo", types.ModuleType("pytorchvideo"))
    clip_sampling = types.ModuleType("pytorchvideo.data.clip_sampling")
    clip_sampling.ConstantClipsPerVideoSampler = None
    sys.modules.setdefault("pytorchvideo.data", types.ModuleType("pytorchvideo.data"))
    sys.modules.setdefault("pytorchvideo.data.clip_sampling", clip_sampling)
    sys.path.insert(0, str(args.official))
    from av_bench.data.audio_dataset import AudioDataset
    from av_bench.metrics import compute_fd, compute_isc, compute_kl

    rng = np.random.default_rng(SEED)
    gen = torch.Generator().manual_seed(SEED)
    tensors: dict[str, torch.Tensor] = {}

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_wavs(Path(tmp), rng)
        dataset = AudioDataset(paths, audio_length=CUT_SECONDS, sr=16000)
        for path in paths:
            tensors[f"wav_{path.stem}"] = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).clone()
            tensors[f"read_{path.stem}"] = dataset.read_from_file(path)[0]  # (L,)

    for rate in RESAMPLE_RATES:
        wave = torch.randn(2, rate // 10 + 7, generator=gen)
        tensors[f"resample_in_{rate}"] = wave
        tensors[f"resample_out_{rate}"] = torchaudio.transforms.Resample(rate, 16000)(wave)

    # features with some shared structure, so the distances are moderate and the covariances well conditioned
    vgg_gt = torch.randn(CLIPS, PATCHES, 16, generator=gen)
    vgg_gen = 0.8 * vgg_gt + 0.5 * torch.randn(CLIPS, PATCHES, 16, generator=gen) + 0.3
    emb_gt = torch.randn(CLIPS, 24, generator=gen).relu()
    emb_gen = (0.7 * emb_gt + 0.6 * torch.randn(CLIPS, 24, generator=gen)).relu()
    logits_gt = 3 * torch.randn(CLIPS, 527, generator=gen)
    logits_gen = 0.6 * logits_gt + 2 * torch.randn(CLIPS, 527, generator=gen)
    kl = compute_kl([logits_gen], logits_gt)
    isc = compute_isc({"logits": logits_gen}, feat_layer_name="logits", splits=10, samples_shuffle=True,
                      rng_seed=2020)
    tensors.update(vgg_gt=vgg_gt, vgg_gen=vgg_gen, emb_gt=emb_gt, emb_gen=emb_gen, logits_gt=logits_gt,
                   logits_gen=logits_gen,
                   fd_vgg=torch.tensor(float(compute_fd(vgg_gen.flatten(0, 1).numpy(), vgg_gt.flatten(0, 1).numpy())),
                                       dtype=torch.float64),
                   fd_panns=torch.tensor(float(compute_fd(emb_gen.numpy(), emb_gt.numpy())), dtype=torch.float64),
                   kl_softmax=torch.tensor(kl["kl_softmax"], dtype=torch.float64),
                   is_mean=torch.tensor(isc["inception_score_mean"], dtype=torch.float64),
                   is_std=torch.tensor(isc["inception_score_std"], dtype=torch.float64))

    commit = args.commit or subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"],
                                           capture_output=True, text=True).stdout.strip() or "unknown"
    meta = {"official": "hkchengrex/av-benchmark AudioDataset.read_from_file, compute_fd, compute_kl, compute_isc",
            "commit": commit, "torchaudio": torchaudio.__version__, "cut_seconds": repr(CUT_SECONDS)}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out / "av_benchmark.safetensors"),
              metadata=meta)
    print(f"wrote {args.out / 'av_benchmark.safetensors'}: fd_vgg {float(tensors['fd_vgg']):.4f}, fd_panns "
          f"{float(tensors['fd_panns']):.4f}, kl {kl['kl_softmax']:.4f}, is {isc['inception_score_mean']:.4f}")


if __name__ == "__main__":
    main()
