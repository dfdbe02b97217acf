"""VGGish as av-benchmark uses it for FD_VGG: 128-d embeddings of 0.96 s log-mel patches, PCA off, last ReLU removed.

Our own module in the layout of harritaylor/torchvggish (``features.*`` convolutions, ``embeddings.*`` fully
connected layers), loading its published ``vggish-10086976.pth``. The front end re-implements torchvggish's
``mel_features.py`` (the TensorFlow VGGish recipe): 16 kHz mono, periodic-Hann frames of 400 samples every 160,
magnitude of a 512-point FFT, 64 HTK-mel bands 125-7500 Hz whose triangles are linear in mel, ``log(mel + 0.01)``,
then non-overlapping patches of 96 frames (an incomplete last patch is dropped).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..checkpoints import load_state_dict, load_strict
from ..hub import resolve_weights
from .weight_files import VGGISH_WEIGHTS

SAMPLE_RATE = 16000
WINDOW_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
FFT_LENGTH = 512  # the power of two above the window, as mel_features.log_mel_spectrogram picks it
MEL_BANDS = 64
MEL_LOW_HZ = 125.0
MEL_HIGH_HZ = 7500.0
LOG_OFFSET = 0.01
PATCH_FRAMES = 96  # 0.96 s; patches do not overlap
EMBEDDING_DIM = 128
MIN_SAMPLES = WINDOW_LENGTH + (PATCH_FRAMES - 1) * HOP_LENGTH  # one full patch: 15,600 samples (0.975 s)

_CONV_WIDTHS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


def hertz_to_mel(hertz: torch.Tensor) -> torch.Tensor:
    """The HTK mel scale VGGish uses: 1127 ln(1 + f / 700)."""
    return 1127.0 * torch.log1p(hertz / 700.0)


def vggish_mel_matrix(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(257, 64) weights mapping FFT-magnitude bins to VGGish's mel bands (the DC bin contributes nothing)."""
    bins_mel = hertz_to_mel(torch.linspace(0.0, SAMPLE_RATE / 2, FFT_LENGTH // 2 + 1, dtype=torch.float64))  # (257,)
    edges = torch.linspace(float(hertz_to_mel(torch.tensor(MEL_LOW_HZ, dtype=torch.float64))),
                           float(hertz_to_mel(torch.tensor(MEL_HIGH_HZ, dtype=torch.float64))),
                           MEL_BANDS + 2, dtype=torch.float64)  # (66,)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # (64,) each
    rising = (bins_mel[:, None] - lower) / (centre - lower)  # (257, 64)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights[0] = 0.0
    return weights.to(dtype)


def vggish_log_mel(waveforms: torch.Tensor) -> torch.Tensor:
    """Log-mel spectrogram (N, F, 64) of 16 kHz waveforms (N, L), computed in float64 like the numpy reference."""
    if waveforms.ndim != 2:
        raise ValueError(f"expected waveforms of shape (N, L), got {tuple(waveforms.shape)}")
    if waveforms.shape[1] < WINDOW_LENGTH:
        raise ValueError(f"waveforms of {waveforms.shape[1]} samples are shorter than one VGGish window "
                         f"({WINDOW_LENGTH} samples at {SAMPLE_RATE} Hz)")
    x = waveforms.to(torch.float64)
    frames = x.unfold(-1, WINDOW_LENGTH, HOP_LENGTH)  # (N, F, 400), no padding: incomplete frames are dropped
    window = torch.hann_window(WINDOW_LENGTH, periodic=True, dtype=torch.float64, device=x.device)
    magnitude = torch.fft.rfft(frames * window, n=FFT_LENGTH).abs()  # (N, F, 257)
    mel = magnitude @ vggish_mel_matrix().to(x.device)  # (N, F, 64)
    return torch.log(mel + LOG_OFFSET)


def vggish_examples(waveforms: torch.Tensor) -> torch.Tensor:
    """VGGish's input patches (N, P, 96, 64) float32 of 16 kHz waveforms (N, L); P = whole 0.96 s patches."""
    if waveforms.ndim == 2 and waveforms.shape[1] < MIN_SAMPLES:
        raise ValueError(f"waveforms of {waveforms.shape[1]} samples are too short for one VGGish patch "
                         f"(at least {MIN_SAMPLES} samples, {MIN_SAMPLES / SAMPLE_RATE:.3f} s at {SAMPLE_RATE} Hz)")
    log_mel = vggish_log_mel(waveforms)  # (N, F, 64)
    patches = log_mel.unfold(1, PATCH_FRAMES, PATCH_FRAMES)  # (N, P, 64, 96)
    return patches.transpose(2, 3).to(torch.float32)


def _conv_layers() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 1
    for width in _CONV_WIDTHS:
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """VGGish without PCA/quantisation and without the final ReLU (av-benchmark's ``VGGish(postprocess=False)``)."""

    def __init__(self):
        super().__init__()
        self.features = _conv_layers()
        self.embeddings = nn.Sequential(nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
                                        nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                                        nn.Linear(4096, EMBEDDING_DIM))

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, 128) of log-mel patches (B, 96, 64)."""
        x = self.features(examples[:, None])  # (B, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).flatten(1)  # (B, 6 * 4 * 512), channels last as TF VGGish flattens
        return self.embeddings(x)

    @torch.no_grad()
    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Per-patch embeddings (N, P, 128) of 16 kHz waveforms (N, L)."""
        device = next(self.parameters()).device
        examples = vggish_examples(waveforms.to(device))  # (N, P, 96, 64)
        n, p = examples.shape[:2]
        return self(examples.flatten(0, 1)).view(n, p, EMBEDDING_DIM)


def load_vggish(path: Optional[str | Path] = None, device: str | torch.device = "cpu",
                download: bool = True) -> VGGish:
    """VGGish with the published torchvggish weights (``path``, else the cache, else downloaded once)."""
    file = resolve_weights(VGGISH_WEIGHTS, path, what="VGGish weights (FD_VGG)", download=download,
                           option="the audio task option vggish_weights (suite task_options)")
    model = VGGish()
    load_strict(model, load_state_dict(file), str(file))
    return model.eval().to(device)


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """TESTS ONLY: random VGGish weights (He-normal weights, small random biases) that keep activations O(1)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    with torch.device("meta"):  # shapes only: no time spent initialising 80M weights
        template = VGGish().state_dict()
    for key, value in template.items():
        if key.endswith("weight"):
            fan_in = value.shape[1:].numel()
            out[key] = torch.randn(value.shape, generator=gen) * math.sqrt(2.0 / fan_in)
        else:
            out[key] = 0.1 * torch.randn(value.shape, generator=gen)
    return out
