"""The tiny networks shipped in ``condbench/assets`` (torch-free): their file, the size of c and their sampler.

The registry lists them without importing torch; the task and training modules build and train them from
these same facts.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ShippedNetwork:
    """A tiny network shipped as ``assets/ASSET`` and reproduced by ``condbench train TASK``."""

    model: str  # its registry name
    task: str  # the task it serves, which is also what ``condbench train`` takes
    asset: str
    hidden_size: int  # D, the size of c
    sampler: dict = field(default_factory=dict)  # the adapter's sampler defaults


# The tiny DiT of the digits task (DDPM with learned sigma, CFG on all channels).
DIGITS_DIT = ShippedNetwork("dit-digits", "digits", "digits_dit.safetensors", 96,
                            dict(num_steps=50, cfg_scale=1.5, cfg_channels=None))
# The tiny X-MDPT of pose-digits, with X-MDPT's published sampler settings.
DIGITS_XMDPT = ShippedNetwork("xmdpt-digits", "pose-digits", "digits_xmdpt.safetensors", 64,
                              dict(num_steps=50, cfg_scale=2.0, scale_pow=0.01))
# The tiny MDSGen of audio-shapes.
SHAPES_MDSGEN = ShippedNetwork("mdsgen-shapes", "audio-shapes", "shapes_mdsgen.safetensors", 64,
                               dict(num_steps=25, cfg_scale=2.0, scale_pow=0.01))
