"""Shared fixtures: tiny real DiT networks with random weights (no mocks, no downloads)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from condbench.adapters.dit import DiTAdapter
from condbench.adapters.dit_model import DiT, DiTConfig

from .network_guard import LOG_ENV, SITE_DIR, NetworkGuard, install

TINY = DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                 num_classes=10, class_dropout_prob=0.1, learn_sigma=True)


def random_dit(config: DiTConfig = TINY, seed: int = 0, std: float = 0.05) -> DiT:
    """A DiT whose every weight is random (DiT's own init zeroes adaLN, which would hide c entirely)."""
    torch.manual_seed(seed)
    model = DiT(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.normal_(0, std)
    return model.eval()


def assert_matches_official(ours: torch.Tensor, theirs: torch.Tensor, tolerance: float = 1e-5) -> None:
    """``ours`` equals the official ``theirs`` within ``tolerance`` of the reference's scale (max |theirs|, at least 1).

    A fixture is bit-exact on the CPU that made it; another CPU's float32 kernels round differently (2-3e-6 of
    the scale, measured on the DiT fixture), and random networks reach values in the hundreds.
    """
    scale = max(1.0, float(theirs.abs().max()))
    error = float((ours - theirs).abs().max())
    assert ours.shape == theirs.shape and error <= tolerance * scale, f"max |ours - official| = {error:.3g} " \
        f"> {tolerance:g} x {scale:.3g}"


@pytest.fixture(scope="session", autouse=True)
def network_guard(tmp_path_factory) -> NetworkGuard:
    """No test reaches the network: a connection to any non-loopback host raises, here and in every Python
    subprocess a test starts (sitecustomize on PYTHONPATH), and fails the test (:func:`no_network_access`)."""
    guard = NetworkGuard(str(tmp_path_factory.mktemp("network_guard") / "attempts.log"))
    os.environ[LOG_ENV] = guard.log_path
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SITE_DIR, os.environ.get("PYTHONPATH")]))
    install(guard.attempts.append)
    return guard


@pytest.fixture(autouse=True)
def no_network_access(network_guard):
    """Fail the test if it (or a fixture it used first, or its subprocesses) tried to open a network
    connection, even when the code under test caught the error."""
    yield
    attempts = network_guard.take()
    if attempts:
        pytest.fail("the test tried to reach the network:\n  " + "\n  ".join(attempts), pytrace=False)


@pytest.fixture(autouse=True)
def seeded_rngs() -> None:
    """Every test starts from the same random state, so its inputs do not depend on which tests ran before it."""
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """An empty condbench cache with downloads off: every file must come from the test."""
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    return tmp_path / "cache"


@pytest.fixture
def tiny_model() -> DiT:
    return random_dit()


@pytest.fixture
def tiny_adapter(tiny_model) -> DiTAdapter:
    return DiTAdapter(tiny_model, "tiny-dit", num_steps=12, cfg_scale=1.5, cfg_channels=3)
