"""The audio-shapes task's log-mel "latent" and its inversion with Griffin-Lim (no trained vocoder).

Front end (what the tiny MDSGen generates and the task's classifier reads): 16 kHz mono, STFT with a 2048-point
Hann window, hop 1024, ``center=True`` with zero padding (librosa's defaults), power spectrum, librosa's Slaney
mel filters (16 bands, 0..4 kHz), then ``(ln(mel + 0.01) + 4.2) / 1.4`` (zero mean, unit variance; silence at -0.29), laid out as MDSGen lays
AudioLDM's latent: (N, 1, frames, bands) = (N, 1, 32, 16) for the task's 1.984 s.

Decoding: the latent clipped to [-1, 9], the mel power back to a linear magnitude with the filters'
pseudo-inverse (negatives clipped to 0, then the square root), then fast Griffin-Lim (Perraudin et al. 2013, as ``librosa.griffinlim``): 32 iterations,
momentum 0.99, zero initial phase (deterministic), in float32 (:func:`griffin_lim` runs in the dtype of
the magnitude it is given: the test compares it with librosa in float64).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
import torch


@dataclass(frozen=True)
class MelSettings:
    """A log-mel front end; the defaults are the audio-shapes task's."""

    sample_rate: int = 16000
    n_fft: int = 2048
    hop_length: int = 1024
    n_mels: int = 16
    fmin: float = 0.0
    fmax: float = 4000.0
    frames: int = 32
    log_floor: float = 1e-2
    # (ln(mel + floor) - center) / scale: about zero mean and unit variance over the task's sounds (silence at
    # -0.29, the loudest tones about 7), so that a diffusion model's errors are small relative to the data
    log_center: float = -4.2
    log_scale: float = 1.4

    @property
    def samples(self) -> int:
        """Waveform length whose centred STFT has exactly ``frames`` frames."""
        return (self.frames - 1) * self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


SHAPES_MEL = MelSettings()


class LogMel:
    """Waveforms (N, L) -> normalised log-mel (N, 1, frames, n_mels), and back to mel power."""

    def __init__(self, settings: MelSettings = SHAPES_MEL):
        self.settings = settings

    @cached_property
    def filters(self) -> torch.Tensor:
        """librosa's Slaney mel filters (n_mels, n_fft // 2 + 1), float64."""
        import librosa

        s = self.settings
        return torch.from_numpy(librosa.filters.mel(sr=s.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.fmin,
                                                    fmax=s.fmax).astype(np.float64))

    def stft(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Complex STFT (N, n_fft // 2 + 1, 1 + L // hop), librosa's defaults (Hann, centred, zero padding)."""
        s = self.settings
        window = torch.hann_window(s.n_fft, periodic=True, dtype=waveforms.dtype, device=waveforms.device)
        return torch.stft(waveforms, s.n_fft, s.hop_length, window=window, center=True, pad_mode="constant",
                          return_complex=True)

    def mel_power(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(N, L) -> mel power (N, n_mels, frames) in float64: the first ``frames`` frames."""
        s = self.settings
        if waveforms.ndim != 2 or waveforms.shape[1] < s.samples:
            raise ValueError(f"expected waveforms (N, L >= {s.samples}) at {s.sample_rate} Hz, got "
                             f"{tuple(waveforms.shape)}")
        power = self.stft(waveforms.double()).abs() ** 2  # (N, F, T)
        return (self.filters.to(power.device) @ power)[..., :s.frames]  # (N, M, frames)

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N, 1, frames, n_mels) float32, the normalised log-mel."""
        s = self.settings
        log = (torch.log(self.mel_power(waveforms) + s.log_floor) - s.log_center) / s.log_scale  # (N, M, T)
        return log.transpose(1, 2).unsqueeze(1).float()

    def power_from_normalized(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of the log and the normalisation: (N, 1, frames, n_mels) -> mel power (N, n_mels, frames)."""
        s = self.settings
        log = latents.double().squeeze(1).transpose(1, 2) * s.log_scale + s.log_center
        return (torch.exp(log) - s.log_floor).clamp(min=0)


def griffin_lim(magnitude: torch.Tensor, mel: LogMel, length: int, iterations: int = 32,
                momentum: float = 0.99) -> torch.Tensor:
    """Fast Griffin-Lim from a linear magnitude (N, F, T), zero initial phase: waveforms (N, length)."""
    s = mel.settings
    window = torch.hann_window(s.n_fft, periodic=True, dtype=magnitude.dtype, device=magnitude.device)

    def inverse(spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, s.n_fft, s.hop_length, window=window, center=True, length=length)

    angles = torch.ones_like(magnitude, dtype=torch.complex128 if magnitude.dtype == torch.float64 else torch.complex64)
    rebuilt = torch.zeros_like(angles)
    for _ in range(iterations):
        previous = rebuilt
        rebuilt = mel.stft(inverse(magnitude * angles))
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles = angles / (angles.abs() + torch.finfo(magnitude.dtype).tiny)
    return inverse(magnitude * angles)


class GriffinLimDecoder:
    """Normalised log-mel latents (N, 1, frames, n_mels) -> waveforms (N, samples) at 16 kHz, clipped to [-1, 1]."""

    def __init__(self, settings: MelSettings = SHAPES_MEL, iterations: int = 32, momentum: float = 0.99):
        self.mel, self.iterations, self.momentum = LogMel(settings), iterations, momentum

    @property
    def sample_rate(self) -> int:
        return self.mel.settings.sample_rate

    # the normalised log-mel is clipped to this range before the exponential: the task's sounds lie in [-0.29, 6.6],
    # and a sampler pushed off its data (heavy pruning) must give loud sound, not an overflow to inf
    latent_range = (-1.0, 9.0)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        s = self.mel.settings
        power = self.mel.power_from_normalized(latents.cpu().clamp(*self.latent_range))  # (N, M, T)
        linear = (torch.linalg.pinv(self.mel.filters) @ power).clamp(min=0).sqrt().float()  # (N, F, T)
        waves = griffin_lim(linear, self.mel, s.samples, self.iterations, self.momentum)
        return waves.clamp(-1, 1).float()  # (N, samples)

    def describe(self) -> dict:
        return {"decoder": "Griffin-Lim (fast, librosa's algorithm) from the mel pseudo-inverse",
                "latent_clip": list(self.latent_range),
                "iterations": self.iterations, "momentum": self.momentum, "initial_phase": "zero",
                "mel": self.mel.settings.to_dict()}
