"""Random weights a test can redraw: fixtures of convolutional decoders store a key -> shape layout and a seed
instead of megabytes of weights (used by ``make_lightningdit.py`` and ``make_uvit_autoencoder.py``)."""
from __future__ import annotations

import torch


def seeded_state(layout: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Random weights for a key -> shape layout, drawn in sorted key order (the test redraws them the same way):
    norms' weights 1 + 0.1 N(0, 1), everything else 0.1 N(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(layout):
        noise = torch.randn(layout[key], generator=gen)
        state[key] = 1 + 0.1 * noise if ".norm" in key and key.endswith(".weight") else 0.1 * noise
    return state


def weights_sum(state: dict[str, torch.Tensor]) -> float:
    """A checksum stored with the fixture: the test's redraw must give the same weights."""
    return float(sum(v.double().sum() for v in state.values()))
