"""Rank 0 scores cell k (metrics, paired bootstrap, record) in a worker while cell k + 1 samples: the same records
in the same order, errors still stop the run naming the cell, and the scoring really runs beside the sampling."""
import dataclasses
import json
import threading

import pytest
import torch

from condbench.adapters.dit import DiTAdapter
from condbench.runner import NonFiniteSamplesError, RunOptions, run_suite
from condbench.tasks.digits import DigitsEvaluator

from .test_runner import small_suite

POLICIES = ["baseline", "tail:0.05", "drop-cond@last:3"]
WAIT_S = 30  # for the next cell's sampling to start while the baseline is scored


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_a_cell_is_scored_in_a_worker_while_the_next_cell_samples_with_the_same_records(tmp_path, monkeypatch):
    """The baseline's scoring waits until a later policy's sampling has begun: it can only begin while the scoring
    runs where scoring runs beside sampling (inline, the wait runs out and the test fails)."""
    score, sample = DigitsEvaluator.score, DiTAdapter.sample
    later_cell_sampling = threading.Event()
    scoring_threads, beside = [], []

    def sample_and_tell(self, cond, noise, policy=None, *args, **kwargs):
        if policy is not None and not policy.is_baseline:
            later_cell_sampling.set()
        return sample(self, cond, noise, policy, *args, **kwargs)

    def score_waiting_for_the_next_cell(self, features, logits, labels):
        scoring_threads.append(threading.get_ident())
        if len(scoring_threads) == 1:  # the baseline, scored first
            beside.append(later_cell_sampling.wait(WAIT_S))
        return score(self, features, logits, labels)

    monkeypatch.setattr(DiTAdapter, "sample", sample_and_tell)
    monkeypatch.setattr(DigitsEvaluator, "score", score_waiting_for_the_next_cell)
    suite = small_suite(policies=POLICIES[:2])
    run_suite(suite, tmp_path / "beside", RunOptions(log=lambda _: None, overlap=True))
    assert beside == [True], "the next cell did not sample while the baseline was scored"
    assert threading.get_ident() not in scoring_threads
    monkeypatch.setattr(DigitsEvaluator, "score", score)
    run_suite(suite, tmp_path / "inline", RunOptions(log=lambda _: None, overlap=False))
    ours, theirs = records(tmp_path / "beside"), records(tmp_path / "inline")
    assert [r["policy"] for r in ours] == [r["policy"] for r in theirs] == POLICIES[:2]
    for a, b in zip(ours, theirs, strict=True):  # bit-identical numbers
        assert a["metrics"] == b["metrics"] and a["paired_vs_baseline"] == b["paired_vs_baseline"]
        assert a["timing"]["seconds"] > 0 and a["timing"]["scoring_seconds"] > 0
    assert ours[1]["paired_vs_baseline"]


def test_a_scoring_error_in_the_worker_stops_the_run_naming_the_cell_and_keeps_earlier_records(tmp_path,
                                                                                              monkeypatch):
    """The second cell's logits reach the evaluator with a NaN column (a real bad input): its IS is NaN, and the
    error comes out of the worker when the third cell is handed over, with the cell named."""
    score, calls = DigitsEvaluator.score, []

    def score_with_a_nan_column_in_the_second_cell(self, features, logits, labels):
        calls.append(threading.get_ident())
        if len(calls) == 2:
            logits = logits.clone()
            logits[:, 3] = float("nan")
        return score(self, features, logits, labels)

    monkeypatch.setattr(DigitsEvaluator, "score", score_with_a_nan_column_in_the_second_cell)
    with pytest.raises(NonFiniteSamplesError, match=r"digits / dit-digits / tail:0.05 \(logits\): metric\(s\) is are "
                                                    r"NaN or infinite"):
        run_suite(small_suite(policies=POLICIES), tmp_path, RunOptions(log=lambda _: None, overlap=True))
    assert threading.get_ident() not in calls
    assert [r["policy"] for r in records(tmp_path)] == ["baseline"]


def test_tf32_sampling_keeps_scoring_in_the_main_thread(tmp_path, monkeypatch):
    """TF32 flags are process-wide and held over sampling: scoring beside it would see them or not by timing, so
    a tf32 model is scored after its sampling, as without overlap."""
    score, seen = DigitsEvaluator.score, []

    def score_seeing_flags(self, *data):
        seen.append((threading.get_ident(), torch.backends.cuda.matmul.allow_tf32))
        return score(self, *data)

    monkeypatch.setattr(DigitsEvaluator, "score", score_seeing_flags)
    suite = dataclasses.replace(small_suite(policies=["baseline", "tail:0.05"]), precision="tf32")
    run_suite(suite, tmp_path, RunOptions(log=lambda _: None, overlap=True))
    assert seen == [(threading.get_ident(), torch.backends.cuda.matmul.allow_tf32)] * 2
