"""Band-limited resampling as av-benchmark does it: torchaudio's ``transforms.Resample`` defaults, re-implemented.

av-benchmark reads every clip with ``torchaudio.load`` and resamples with ``torchaudio.transforms.Resample(sr,
16000)``: a windowed-sinc interpolator (Hann window over 6 zero crossings, cut-off at 0.99 of the lower Nyquist
frequency) evaluated as one strided convolution per output phase, its kernel computed in float64 and kept in
float32. torchaudio has no release for the torch this project pins, hence our own copy of the method, checked
against torchaudio 2.11 (``tests/test_audio_metrics.py``). scipy's ``resample_poly`` (Kaiser FIR) or soxr would
give slightly different numbers, which is why they are not used here.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ZERO_CROSSINGS = 6  # torchaudio's lowpass_filter_width
ROLLOFF = 0.99


def sinc_kernel(orig_freq: int, new_freq: int) -> tuple[torch.Tensor, int]:
    """(new, 1, 2 width + orig) float32 filters, one per output phase, and the half-width ``width`` in input
    samples, for rates already divided by their gcd."""
    cutoff = min(orig_freq, new_freq) * ROLLOFF
    width = math.ceil(ZERO_CROSSINGS * orig_freq / cutoff)
    taps = torch.arange(-width, width + orig_freq, dtype=torch.float64) / orig_freq  # (2 width + orig,)
    # torchaudio forms the phase offsets -j/new in float32 before adding the float64 tap positions: kept, so
    # the kernels agree to the bit (float64 offsets move 44.1 kHz outputs by up to 1e-5)
    phases = (-torch.arange(new_freq, dtype=torch.float32) / new_freq).to(torch.float64)  # (new,)
    t = ((phases[:, None] + taps[None]) * cutoff).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)  # (new, taps), in zero crossings
    window = torch.cos(t * math.pi / ZERO_CROSSINGS / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return (sinc * window * (cutoff / orig_freq)).to(torch.float32)[:, None], width


def resample(waveforms: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample (..., L) float waveforms from ``orig_freq`` to ``new_freq`` Hz -> (..., ceil(L new / orig))."""
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq or orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive integers, got {orig_freq} and {new_freq}")
    if not waveforms.is_floating_point():
        raise TypeError(f"expected a floating-point waveform, got {waveforms.dtype}")
    if orig_freq == new_freq:
        return waveforms
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernel, width = sinc_kernel(orig, new)
    shape = waveforms.shape
    flat = waveforms.reshape(-1, shape[-1])  # (B, L)
    padded = F.pad(flat, (width, width + orig))
    phases = F.conv1d(padded[:, None], kernel.to(device=flat.device, dtype=flat.dtype), stride=orig)  # (B, new, S)
    out = phases.transpose(1, 2).reshape(len(flat), -1)  # (B, S * new), phases interleaved
    target = math.ceil(new * shape[-1] / orig)
    return out[:, :target].reshape(*shape[:-1], -1)
