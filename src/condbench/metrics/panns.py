"""PANNs Cnn14 at 16 kHz, as av-benchmark uses it: the 2048-d embedding for FD_PANNs, the 527 logits for KL and IS.

Our own module in the layout of qiuqiangkong/audioset_tagging_cnn ``pytorch/models.py`` ``Cnn14`` (sample rate
16000, window 512, hop 160, 64 mels 50-8000 Hz, 527 AudioSet classes), loading the published
``Cnn14_16k_mAP=0.438.pth`` (``{'model': state_dict, ...}``). Its torchlibrosa front end (a DFT written as a
convolution, power 2, librosa's Slaney mel filters, ``10 log10(max(x, 1e-10))``, no top_db) is re-done here with
``torch.stft`` and ``librosa.filters.mel``; the checkpoint's own copies of those filters are only used to check
that the file is the 16 kHz model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import CheckpointMismatchError, load_state_dict, load_strict
from ..hub import resolve_weights
from .weight_files import CNN14_16K_WEIGHTS

SAMPLE_RATE = 16000
WINDOW_SIZE = 512
HOP_SIZE = 160
MEL_BINS = 64
FMIN = 50.0
FMAX = 8000.0
CLASSES = 527
EMBEDDING_DIM = 2048
AMIN = 1e-10  # power_to_db floor; ref 1.0 and no top_db, as Cnn14 builds its LogmelFilterBank
MIN_SAMPLES = 31 * HOP_SIZE  # 32 frames survive the five 2x2 poolings

# the checkpoint's torchlibrosa front end: fixed DFT and mel matrices, replaced by torch.stft and librosa here
FRONT_END_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")
_MEL_KEY = "logmel_extractor.melW"


def panns_mel_filters() -> torch.Tensor:
    """(257, 64) float64 Slaney mel filters of librosa for Cnn14's 16 kHz configuration (torchlibrosa's ``melW``)."""
    import librosa

    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=WINDOW_SIZE, n_mels=MEL_BINS, fmin=FMIN, fmax=FMAX,
                              dtype="float64")  # (64, 257)
    return torch.from_numpy(mel.T.copy())


class Cnn14LogMel(nn.Module):
    """Cnn14's log-mel front end: (N, L) 16 kHz waveforms -> (N, 1, T, 64) dB, T = 1 + L // 160."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(WINDOW_SIZE, periodic=True, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("mel", panns_mel_filters(), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waveforms.to(torch.float64), n_fft=WINDOW_SIZE, hop_length=HOP_SIZE, win_length=WINDOW_SIZE,
                          window=self.window, center=True, pad_mode="reflect", return_complex=True)  # (N, 257, T)
        power = spec.real ** 2 + spec.imag ** 2
        mel = power.transpose(1, 2) @ self.mel  # (N, T, 64)
        return (10.0 * torch.log10(mel.clamp(min=AMIN)))[:, None].to(torch.float32)


class ConvBlock(nn.Module):
    """Two 3x3 conv + batch norm + ReLU, then 2D average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool)


@dataclass
class Cnn14Output:
    embedding: torch.Tensor  # (N, 2048) ReLU(fc1): av-benchmark's "2048" feature
    logits: torch.Tensor  # (N, 527) before the sigmoid: what av-benchmark's KL and IS take a softmax of

    @property
    def clipwise(self) -> torch.Tensor:
        """(N, 527) per-class probabilities (sigmoid), the official ``clipwise_output``."""
        return torch.sigmoid(self.logits)


class Cnn14(nn.Module):
    """PANNs Cnn14 in inference mode (no SpecAugment, mixup or dropout), 16 kHz configuration."""

    def __init__(self):
        super().__init__()
        self.logmel = Cnn14LogMel()
        self.bn0 = nn.BatchNorm2d(MEL_BINS)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, EMBEDDING_DIM)
        self.fc_audioset = nn.Linear(2048, CLASSES)

    def forward(self, waveforms: torch.Tensor) -> Cnn14Output:
        """Embedding and logits of 16 kHz waveforms (N, L)."""
        if waveforms.ndim != 2 or waveforms.shape[1] < MIN_SAMPLES:
            raise ValueError(f"expected 16 kHz waveforms (N, L >= {MIN_SAMPLES}), got {tuple(waveforms.shape)}")
        x = self.logmel(waveforms)  # (N, 1, T, 64)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # batch norm over the 64 mel bins
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool=(2, 2) if i < 6 else (1, 1))  # (N, C, T', F')
        x = x.mean(dim=3)  # (N, 2048, T')
        x = x.max(dim=2).values + x.mean(dim=2)  # (N, 2048)
        embedding = F.relu(self.fc1(x))
        return Cnn14Output(embedding=embedding, logits=self.fc_audioset(embedding))

    @torch.no_grad()
    def embed(self, waveforms: torch.Tensor) -> Cnn14Output:
        """:meth:`forward` without gradients, on the model's device."""
        return self(waveforms.to(next(self.parameters()).device))


def read_cnn14_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The network weights of a Cnn14 16 kHz checkpoint, after checking its mel filters are the 16 kHz ones."""
    state = load_state_dict(path, key="model", allow_numpy=True)  # training checkpoints keep their sampler
    mel = state.get(_MEL_KEY)
    expected = panns_mel_filters()
    if mel is None or tuple(mel.shape) != tuple(expected.shape) or \
            not torch.allclose(mel.double(), expected, atol=1e-6):
        found = "no mel filters" if mel is None else f"mel filters of shape {tuple(mel.shape)}"
        raise CheckpointMismatchError(
            f"{path} is not the 16 kHz Cnn14 ({CNN14_16K_WEIGHTS.filename}): it has {found} where the 16 kHz model "
            f"(window 512, 64 mels 50-8000 Hz) has {tuple(expected.shape)} matching librosa's. The 32 kHz "
            f"Cnn14_mAP=0.431.pth or another PANNs model does not give av-benchmark's FD_PANNs / KL / IS.")
    return {k: v for k, v in state.items() if not k.startswith(FRONT_END_PREFIXES)}


def load_cnn14(path: Optional[str | Path] = None, device: str | torch.device = "cpu", download: bool = True) -> Cnn14:
    """Cnn14 16 kHz with the published PANNs weights (``path``, else the cache, else downloaded once)."""
    file = resolve_weights(CNN14_16K_WEIGHTS, path, what="PANNs Cnn14 16 kHz weights (FD_PANNs, KL, IS)",
                           option="the audio task option panns_weights (suite task_options)", download=download)
    model = Cnn14()
    load_strict(model, read_cnn14_state(file), str(file))
    return model.eval().to(device)


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """TESTS ONLY: random Cnn14 network weights, batch-norm running statistics included, with activations O(1).

    He-normal convolutions and linear layers, batch norms near identity except ``bn0``, whose running mean and
    variance are those of log-mel dB values (about -40 +- 20), so the first block sees O(1) inputs.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    with torch.device("meta"):  # shapes only: no time spent initialising 80M weights
        template = Cnn14().state_dict()
    for key, value in template.items():
        shape = value.shape
        if key.endswith("num_batches_tracked"):
            tensor = torch.zeros(shape, dtype=value.dtype)
        elif key == "bn0.running_mean":
            tensor = -40.0 + 5.0 * torch.randn(shape, generator=gen)
        elif key == "bn0.running_var":
            tensor = 400.0 * (0.8 + 0.4 * torch.rand(shape, generator=gen))
        elif ".bn" in key or key.startswith("bn"):
            if key.endswith("weight") or key.endswith("running_var"):
                tensor = 0.8 + 0.4 * torch.rand(shape, generator=gen)
            else:
                tensor = 0.05 * torch.randn(shape, generator=gen)
        elif key.endswith("weight"):
            tensor = torch.randn(shape, generator=gen) * math.sqrt(2.0 / shape[1:].numel())
        else:
            tensor = 0.1 * torch.randn(shape, generator=gen)
        out[key] = tensor.to(value.dtype)
    return out
