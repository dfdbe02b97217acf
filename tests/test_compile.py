"""``compile: true``: the denoiser through torch.compile equals the eager network on the CPU.

Inductor builds C++ kernels for the CPU: the test needs a C++ compiler (it is skipped, saying so, without one),
and compiling even a tiny network takes 20-30 s on 2 shared cores, hence ``slow``. c and the policy run eagerly
(``outside_autocast`` keeps them out of the graphs), so the network compiles once, not at every step.
"""
import shutil

import pytest
import torch

from condbench.adapters.dit import DiTAdapter
from condbench.policies import parse_policy
from condbench.seeding import PairedNoise

from .conftest import random_dit

# inductor fuses and reorders float32 arithmetic: equal within float32 rounding, not bit for bit
TOLERANCE = 1e-5

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                 reason="torch.compile on the CPU needs a C++ compiler (g++ or c++) on PATH")]


def test_compiled_sampler_with_a_policy_equals_eager():
    model = random_dit()
    y, policy = torch.tensor([1, 2, 3, 4]), parse_policy("tail:0.1")
    eager = DiTAdapter(model, "tiny-dit", num_steps=4, cfg_scale=1.5, cfg_channels=3).sample(
        y, PairedNoise(0, range(4)), policy)
    adapter = DiTAdapter(model, "tiny-dit", num_steps=4, cfg_scale=1.5, cfg_channels=3, compile=True)
    compiled = adapter.sample(y, PairedNoise(0, range(4)), policy)
    assert isinstance(adapter.network.network, torch.nn.Module) and adapter.network._compiled is not None
    error = float((compiled.samples - eager.samples).abs().max())
    assert error <= TOLERANCE * float(eager.samples.abs().max())
    # the policy ran eagerly inside the compiled network, at every step, on exactly the same c
    assert compiled.trace.removed_per_step == eager.trace.removed_per_step
    assert compiled.trace.active_steps == eager.trace.active_steps == [0, 1, 2, 3]
