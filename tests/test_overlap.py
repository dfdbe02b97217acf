"""Decoding and features in a worker beside sampling: the same numbers as inline, in order, errors not lost."""
import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

from condbench.adapters.dit import DiTAdapter
from condbench.overlap import BatchWorker
from condbench.runner import NonFiniteSamplesError, RunOptions, run_suite

from .test_runner import nan_model_registered, small_suite


def test_jobs_run_in_order_in_another_thread_and_at_most_depth_wait():
    seen, threads = [], set()

    def job(i):
        return lambda: (seen.append(i), threads.add(threading.get_ident()))

    with BatchWorker(torch.device("cpu"), enabled=True, depth=2) as worker:
        for i in range(7):
            worker.submit(job(i))
            assert len(worker.waiting) <= 2
    assert seen == list(range(7)) and threading.get_ident() not in threads


def test_a_failed_job_raises_in_the_caller_and_later_jobs_are_not_lost_silently():
    ran = []

    def fail():
        raise ValueError("job 1 failed")

    with pytest.raises(ValueError, match="job 1 failed"):
        with BatchWorker(torch.device("cpu"), enabled=True) as worker:
            worker.submit(lambda: ran.append(0))
            worker.submit(fail)
            worker.submit(lambda: ran.append(2))
    assert ran[0] == 0


def test_disabled_runs_inline():
    seen = []
    with BatchWorker(torch.device("cpu"), enabled=False) as worker:
        worker.submit(lambda: seen.append(threading.get_ident()))
        assert seen == [threading.get_ident()]


def test_a_run_with_overlap_writes_the_same_records_and_cache_as_inline(tmp_path):
    runs = {}
    for overlap in (False, True):
        out = tmp_path / str(overlap)
        runs[overlap] = json.loads(run_suite(small_suite(), out, RunOptions(log=lambda _: None, overlap=overlap,
                                                                          together="all")).read_text())
    for a, b in zip(runs[False]["records"], runs[True]["records"], strict=True):
        assert a["metrics"] == b["metrics"] and a["trace"] == b["trace"]
    for path in (tmp_path / "True" / "cache").glob("??/*.npz"):
        with np.load(path) as ours, np.load(tmp_path / "False" / "cache" / path.parent.name / path.name) as theirs:
            assert all(np.array_equal(ours[k], theirs[k]) for k in ours.files)


def test_nan_samples_found_in_the_worker_stop_the_run_naming_the_first_index(tmp_path):
    with nan_model_registered() as broken, pytest.raises(NonFiniteSamplesError,
                                                         match=r"digits / broken / baseline: samples: .*first: index 0"):
        run_suite(small_suite(models=(broken,)), tmp_path, RunOptions(log=lambda _: None, overlap=True))


def tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_tf32_decoding_sees_the_same_flags_with_and_without_overlap(tmp_path, monkeypatch):
    """The TF32 flags are process-wide: held over the whole block, decoding in the worker sees them as decoding
    after the sampler does (before, the denoiser restored them after each call: off inline, timing-dependent in
    the worker)."""
    decode, seen = DiTAdapter.decode, {}
    for overlap in (False, True):
        flags = seen.setdefault(overlap, set())
        monkeypatch.setattr(DiTAdapter, "decode", lambda self, x, flags=flags: flags.add(tf32_flags()) or decode(self, x))
        suite = dataclasses.replace(small_suite(policies=["baseline"]), precision="tf32")
        run_suite(suite, tmp_path / str(overlap), RunOptions(log=lambda _: None, overlap=overlap))
    assert seen[False] == seen[True] == {(True, True)}
