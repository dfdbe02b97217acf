"""Decoding and feature extraction of finished batches while the sampler runs the next one.

One worker thread runs the submitted jobs in order, so every cell's features are computed in the same chunks
and order as without it (the same numbers). On CUDA the worker issues its kernels on a stream of its own, which
first waits for the sampler's stream to finish the batch, so the VAE and the feature network run beside the
denoiser instead of after it. At most ``depth`` batches wait, which bounds the memory held for them. On the CPU
the two would share the same cores: the runner uses it there only when asked (tests).

Process-wide settings (the TF32 flags of ``precision: tf32``) cannot differ between the two threads: the runner
holds them over the whole block (:meth:`condbench.adapters.base.Adapter.process_flags`), so jobs see the same
flags with and without the worker.

The runner also scores each finished cell (metrics, paired bootstrap, record) in a worker of depth 1 while the next
cell samples (``condbench.runner.CellScorer``).
"""
from __future__ import annotations

import concurrent.futures
from collections import deque
from typing import Callable, Optional

import torch


class BatchWorker:
    """Runs ``submit``ted jobs in order, in a thread with its own CUDA stream (or inline when disabled)."""

    def __init__(self, device: torch.device, enabled: bool, depth: int = 2, name: str = "condbench-decode"):
        """``depth``: jobs submitted but not finished, at most; ``name``: the worker thread's name (in tracebacks)."""
        self.device, self.enabled, self.depth, self.name = device, enabled, depth, name
        self.pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self.waiting: deque[concurrent.futures.Future] = deque()
        self.stream = torch.cuda.Stream(device) if enabled and device.type == "cuda" else None

    def __enter__(self) -> "BatchWorker":
        if self.enabled:
            self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        return self

    def submit(self, job: Callable[[], None], *tensors: torch.Tensor) -> None:
        """Run ``job`` (which reads ``tensors``, produced on the current stream) after the jobs before it."""
        if self.pool is None:
            job()
            return
        ready = None
        if self.stream is not None:
            ready = torch.cuda.Event()
            # on the sampler's stream of this worker's device (not the current device's, which is cuda:0 unless
            # set): the tensors are final once it has passed this point
            ready.record(torch.cuda.current_stream(self.device))
            for tensor in tensors:
                tensor.record_stream(self.stream)  # their memory is not reused before the worker's kernels ran
        while len(self.waiting) >= self.depth:
            self.waiting.popleft().result()  # raises the job's error here
        self.waiting.append(self.pool.submit(self._run, job, ready))

    def _run(self, job: Callable[[], None], ready: Optional[torch.cuda.Event]) -> None:
        if self.stream is None:
            job()
            return
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            self.stream.wait_event(ready)
            job()
        self.stream.synchronize()  # its results (on the CPU) are complete when the job counts as done

    def drain(self) -> None:
        """Wait for every job; the first failed job's error is raised."""
        while self.waiting:
            self.waiting.popleft().result()

    def __exit__(self, kind, error, trace) -> None:
        """Wait for every submitted job: their first error is raised; when the block itself failed, its error is
        (the jobs still finish, so a finished cell's scoring still writes its record)."""
        if self.pool is not None:
            try:
                if error is None:
                    self.drain()
            finally:
                self.pool.shutdown(wait=True)
