"""Paths a GPU run takes, run on the CPU where the CPU can show them (the rest skip without CUDA).

- Paired noise comes from CPU streams moved to the device, so a CPU and a GPU run draw the same noise.
- TF32 flags are process-wide: held over a block of sampling (``Adapter.process_flags``), the overlap worker's
  jobs see the same flags as the sampler, whatever the timing.
- The overlap worker waits for the sampler's stream of its own device, not of the current device.
- The process group's timeout (rank 0 scores while the others wait) comes from ``CONDBENCH_DIST_TIMEOUT``.
"""
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from condbench.adapters.dit import DiTAdapter
from condbench.distributed import DEFAULT_TIMEOUT_S, TIMEOUT_VARIABLE, collective_timeout, join_process_group
from condbench.overlap import BatchWorker
from condbench.seeding import PairedNoise

from .conftest import random_dit


def tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_paired_noise_streams_are_cpu_streams_whatever_the_device():
    """On any device the rows come from the CPU streams: drawing for the meta device (where a generator cannot
    exist) advances each stream exactly as a CPU draw does."""
    on_meta, on_cpu = PairedNoise(3, [0, 7], "meta"), PairedNoise(3, [0, 7])
    first = on_meta.draw((4, 2))
    assert first.device.type == "meta" and first.shape == (2, 4, 2)
    on_cpu.draw((4, 2))
    assert torch.equal(on_meta.generators[1].get_state(), on_cpu.generators[1].get_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_paired_noise_on_cuda_equals_the_cpu_noise():
    cuda, cpu = PairedNoise(5, [2, 9, 4], "cuda"), PairedNoise(5, [2, 9, 4])
    for _ in range(2):  # the initial noise, then a step's
        drawn = cuda.draw((4, 8, 8))
        assert drawn.device.type == "cuda" and torch.equal(drawn.cpu(), cpu.draw((4, 8, 8)))


@pytest.mark.parametrize("precision, expected", [("tf32", (True, True)), ("fp32", None)])
def test_worker_jobs_see_the_flags_held_over_the_block(precision, expected):
    """Under tf32 the flags stay on for the whole block, also in the worker thread and after a denoiser call
    (which used to restore them, leaving the worker's VAE in TF32 or not depending on timing); fp32 leaves them."""
    before = tf32_flags()
    adapter = DiTAdapter(random_dit(), "tiny-dit", num_steps=4, precision=precision)
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.tensor([1, 2])
    seen = []
    with adapter.process_flags(), BatchWorker(torch.device("cpu"), enabled=True) as worker:
        for _ in range(3):
            adapter.denoise(x, t, y)  # the sampler's call, which sets and restores the flags itself
            worker.submit(lambda: seen.append(tf32_flags()))
    assert seen == [expected or before] * 3
    assert tf32_flags() == before


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_worker_on_a_second_device_waits_for_that_devices_stream():
    """With --device cuda:1 in one process (current device cuda:0) the worker must wait for cuda:1's sampler
    stream: a long chain of kernels there must be finished before the job reads its result."""
    device = torch.device("cuda:1")
    eye = torch.eye(2048, device=device)
    seen = []
    with BatchWorker(device, enabled=True) as worker:
        x = torch.zeros(2048, 2048, device=device)
        for _ in range(200):
            x = x @ eye + 1
        worker.submit(lambda: seen.append(float(x[0, 0])), x)
    assert seen == [200.0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_collective_timeout_is_a_setting_with_a_long_default(monkeypatch):
    monkeypatch.delenv(TIMEOUT_VARIABLE, raising=False)
    assert collective_timeout() == timedelta(seconds=DEFAULT_TIMEOUT_S) > timedelta(minutes=10)
    monkeypatch.setenv(TIMEOUT_VARIABLE, "5400")
    assert collective_timeout() == timedelta(seconds=5400)
    for bad in ("ten", "0", "-3"):
        monkeypatch.setenv(TIMEOUT_VARIABLE, bad)
        with pytest.raises(ValueError, match=f"{TIMEOUT_VARIABLE}='{bad}' must be a positive number of seconds"):
            collective_timeout()


def test_the_process_group_is_joined_with_the_timeout(monkeypatch):
    """A real gloo group of one process, joined as torchrun's ranks join theirs."""
    for name, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(free_port())), ("RANK", "0"),
                        ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), (TIMEOUT_VARIABLE, "4321")):
        monkeypatch.setenv(name, value)
    if torch.cuda.is_available():
        pytest.skip("the CPU gloo group is what this checks; with CUDA the group is NCCL")
    join_process_group()
    try:
        assert dist.group.WORLD._get_backend(torch.device("cpu")).options._timeout == timedelta(seconds=4321)
    finally:
        dist.destroy_process_group()
