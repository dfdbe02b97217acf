"""A run never erases finished results: inputs are checked before the output folder is touched, records are
appended and superseded by cell, every file is written atomically, non-finite values stop a cell with a
clear error, and file-system errors and Ctrl-C are one clear message."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from condbench import storage
from condbench.adapters.dit import DiTAdapter
from condbench.cache import ShardCache
from condbench.checkpoints import save_safetensors
from condbench.cli import main
from condbench.finite import NonFiniteError
from condbench.registry import MODELS, ModelEntry, register_model
from condbench.reports.html import build_report, load_run
from condbench.runner import NonFiniteSamplesError, RunOptions, newest_records, run_suite
from condbench.suites import Suite
from condbench.tasks.digits import DIGITS_DIT_CONFIG, load_classifier

from .conftest import random_dit

QUIET = dict(log=lambda _: None)
OUTPUTS = ("results.jsonl", "results.json", "analysis_dit_digits.npz", "samples_grid.npz", "index.html")


def tiny_suite(policies=("baseline", "tail:0.05"), models=("dit-digits",), steps=2, **task_options):
    """20 samples in 2 shards per cell, 2 sampling steps: a whole run takes a few seconds."""
    return Suite(name="tiny", task="digits", models=list(models), policies=list(policies), seed=0, batch_size=10,
                 shard_size=10, task_options={"samples_per_class": 2, **task_options},
                 model_options={m: {"num_steps": steps} for m in models}, analysis={"sweep_points": 2}, bootstrap=5)


def records(path: Path) -> dict[str, dict]:
    return {r["policy"]: r for r in json.loads((path / "results.json").read_text())["records"]}


def write_suite(path: Path, suite: Suite) -> Path:
    path.write_text(yaml.safe_dump(dict(suite.__dict__)))
    return path


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in OUTPUTS}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    run_suite(tiny_suite(), out, RunOptions(**QUIET))
    build_report([out], out / "index.html")
    return out


@pytest.fixture
def run_dir(finished_run, tmp_path) -> Path:
    """A copy of the finished run, for a test to run in again."""
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def _bad_checkpoint(tmp_path: Path) -> Suite:
    (tmp_path / "bad.pt").write_bytes(bytes(range(256)) * 16)  # fixed bytes: the error must not depend on luck
    suite = tiny_suite()
    suite.model_options["dit-digits"]["ckpt"] = str(tmp_path / "bad.pt")
    return suite


def _unknown_option(tmp_path: Path) -> Suite:
    suite = tiny_suite()
    suite.model_options["dit-digits"]["colour"] = "red"
    return suite


@pytest.mark.parametrize("command, make, message", [
    ("run", _bad_checkpoint, "not a checkpoint"),
    ("run", _unknown_option, "unexpected keyword argument 'colour'"),
    ("run", lambda _: tiny_suite(samples_per_clas=3),
     "task_options key 'samples_per_clas' is not an option of task 'digits'. Did you mean 'samples_per_class'?"),
    ("score", lambda _: tiny_suite(policies=("baseline", "head:0.5")), "head:0.5: indices 0..9 are missing"),
])
def test_a_failing_run_after_a_finished_one_changes_none_of_its_files(run_dir, tmp_path, capsys, command, make,
                                                                       message):
    before = snapshot(run_dir)
    suite_file = write_suite(tmp_path / "s.yaml", make(tmp_path))
    assert main([command, str(suite_file), "-o", str(run_dir)]) == 2
    assert message in capsys.readouterr().err
    assert snapshot(run_dir) == before
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(("cache", "figures") + OUTPUTS)


def test_results_json_holds_the_newest_record_of_every_cell_of_every_run(run_dir):
    first = records(run_dir)
    second = records(run_suite(tiny_suite(policies=("baseline", "head:0.5")), run_dir, RunOptions(**QUIET)).parent)
    assert list(second) == ["baseline", "tail:0.05", "head:0.5"]
    assert second["tail:0.05"] == first["tail:0.05"]  # kept from the first run
    assert second["baseline"]["work"]["shards_from_cache"] == 2  # superseded by this run's record
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 4  # appended, never truncated
    run = load_run(run_dir)
    assert sorted(run.results["grids"]) == ["dit-digits|baseline", "dit-digits|head:0.5", "dit-digits|tail:0.05"]
    assert set(run.grids.files) == set(run.results["grids"].values())


def _nan_class_embedding(ckpt=None, device="cpu", **sampler):
    model = random_dit(DIGITS_DIT_CONFIG)
    with torch.no_grad():
        model.y_embedder.embedding_table.weight[3, 5] = float("nan")  # the class embedding of digit 3
    return DiTAdapter(model, "nan-c-digits", **{"cfg_channels": None, **sampler})


def test_nan_in_c_names_the_cell_and_the_conditions_and_keeps_earlier_cells(tmp_path):
    register_model(ModelEntry("nan-c-digits", "digits", 96, "ddpm", "test", _nan_class_embedding, 2, 1.5))
    try:
        with pytest.raises(NonFiniteError) as error:
            run_suite(tiny_suite(models=("dit-digits", "nan-c-digits")), tmp_path, RunOptions(**QUIET))
    finally:
        MODELS.pop("nan-c-digits")
    message = str(error.value)
    assert message.startswith("digits / nan-c-digits (embedding analysis): c of nan-c-digits at sampling step 0")
    assert "1 of 10 in indices 0..9 are NaN or infinite (first: index 3)" in message
    kept = newest_records(tmp_path / "results.jsonl")
    assert [(r["model"], r["policy"]) for r in kept] == [("dit-digits", "baseline"), ("dit-digits", "tail:0.05")]
    assert (tmp_path / "analysis_dit_digits.npz").is_file() and not (tmp_path / "analysis_nan_c_digits.npz").exists()


@pytest.mark.parametrize("broken, message", [
    # an infinite bias: logit 2 of every sample is infinite, found as the shard is computed
    ("head.bias", "digits / dit-digits / baseline: logits of the samples: 10 of 10 in indices 0..9 are NaN or "
                  "infinite (first: index 0)"),
    # a NaN weight: logit 2 is NaN for every sample, which the row check leaves to the metrics (evaluators fill
    # metrics that are off with NaN), and IS comes out NaN
    ("head.weight", "digits / dit-digits / baseline (logits): metric(s) is are NaN or infinite; output column(s) "
                    "[2] are NaN for every sample (indices 0..19)"),
])
def test_non_finite_logits_name_the_cell_and_the_samples(tmp_path, broken, message):
    classifier, _ = load_classifier()  # the real classifier, with one parameter broken
    with torch.no_grad():
        if broken == "head.bias":
            classifier.head.bias[2] = float("inf")
        else:
            classifier.head.weight[2, 0] = float("nan")
    path = tmp_path / "broken_classifier.safetensors"
    save_safetensors(classifier.state_dict(), path, {})
    with pytest.raises(NonFiniteSamplesError) as error:
        run_suite(tiny_suite(classifier=str(path)), tmp_path / "run", RunOptions(**QUIET))
    assert str(error.value).startswith(message)
    assert not (tmp_path / "run" / "results.jsonl").exists()  # no record of numbers made from NaN


@pytest.mark.parametrize("where", ["out-is-a-file", "cache-is-a-file", "parent-is-a-file"])
def test_a_folder_that_cannot_be_written_is_one_line_before_any_work(tmp_path, capsys, where):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    out = {"out-is-a-file": blocker, "parent-is-a-file": blocker / "run"}.get(where, tmp_path / "run")
    extra = ["--cache", str(blocker)] if where == "cache-is-a-file" else []
    suite_file = write_suite(tmp_path / "s.yaml", tiny_suite())
    assert main(["run", str(suite_file), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{blocker}" in err and "is a file, not a folder" in err
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("full", ["results.json", "results.jsonl"])
def test_a_full_disk_is_one_line_and_loses_nothing(run_dir, tmp_path, capsys, monkeypatch, full):
    monkeypatch.setenv("CONDBENCH_NO_PROGRESS", "1")
    before = snapshot(run_dir)
    commit, append = storage._commit, storage._append

    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    if full == "results.json":
        monkeypatch.setattr(storage, "_commit",
                            lambda tmp, target: no_space() if target.name == full else commit(tmp, target))
    else:
        monkeypatch.setattr(storage, "_append", no_space)
    suite_file = write_suite(tmp_path / "s.yaml", tiny_suite())
    assert main(["run", str(suite_file), "-o", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"condbench run: error: cannot {'write' if full == 'results.json' else 'append to'} " \
                  f"{run_dir / full}: no space left on the device"
    assert (run_dir / "results.json").read_bytes() == before["results.json"]
    assert [(r["policy"], r["metrics"]) for r in newest_records(run_dir / "results.jsonl")] == \
           [(r["policy"], r["metrics"]) for r in json.loads(before["results.json"])["records"]]
    assert not list(run_dir.glob(".*.tmp"))


def _cli(args, cwd):
    """``condbench ARGS`` in a child whose Ctrl-C works even when the tests run in a background job: a
    non-interactive shell starts those with SIGINT ignored, the child would inherit that and finish its run."""
    return subprocess.Popen([sys.executable, "-m", "condbench", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "CONDBENCH_NO_PROGRESS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_prints_what_was_kept_and_how_to_resume(tmp_path):
    suite_file = write_suite(tmp_path / "s.yaml", tiny_suite(policies=("baseline", "tail:0.05", "head:0.5"), steps=8))
    out = tmp_path / "run"
    process = _cli(["run", str(suite_file), "-o", str(out)], tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "results.jsonl").is_file():
        assert process.poll() is None, process.communicate()[0][-3000:]
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output
    assert re.search(rf"interrupted. Nothing finished is lost; kept: [12] finished cell\(s\) in "
                     rf"{out / 'results.jsonl'}: "
                     r"dit-digits baseline.*; \d+ finished shard file\(s\) in " + str(out / "cache"), output), output
    assert f"Resume with: condbench run {suite_file} -o {out}" in output
    assert not list(out.glob(".*.tmp")) and not list(out.glob("cache/*/.*.tmp"))


# Run the CLI with the atomic writer patched to SIGKILL the process once the temporary of TARGET is fully
# written and not yet renamed: the moment a kill (or power loss) would leave a torn file with plain writes.
KILL_DURING_WRITE = """
import os, signal, sys
from condbench import storage
from condbench.cli import main
target, argv = sys.argv[1], sys.argv[2:]
commit, append = storage._commit, storage._append
def commit_or_die(tmp, path):
    if path.name == target or (target == "shard" and path.parent.parent.name == "cache"):
        os.kill(os.getpid(), signal.SIGKILL)
    commit(tmp, path)
def append_half_and_die(path, data):
    with open(path, "ab") as handle:
        handle.write(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
storage._commit = commit_or_die
if target == "results.jsonl":
    storage._append = append_half_and_die
sys.exit(main(argv))
"""


@pytest.mark.parametrize("target", OUTPUTS + ("shard",))
def test_a_kill_during_any_write_leaves_no_torn_file(run_dir, tmp_path, target):
    before = snapshot(run_dir)
    policies = ("baseline", "tail:0.05", "head:0.5") if target == "shard" else ("baseline", "tail:0.05")
    suite_file = write_suite(tmp_path / "s.yaml", tiny_suite(policies=policies))
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, target, "run", str(suite_file), "-o",
                             str(run_dir)], capture_output=True, text=True,
                            env={**os.environ, "CONDBENCH_NO_PROGRESS": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    if target == "results.jsonl":
        assert (run_dir / target).read_bytes() != before[target]  # the torn half line is there...
        assert newest_records(run_dir / target) == json.loads(before["results.json"])["records"]  # ...never read
    else:
        leftovers = list(run_dir.glob(".*.tmp")) + list(run_dir.glob("cache/*/.*.tmp"))
        assert len(leftovers) == 1  # the killed write's temporary...
        if target != "shard":
            assert leftovers[0].name.startswith(f".{target}.") and (run_dir / target).read_bytes() == before[target]
        assert storage.clean_stale_temporaries([leftovers[0].parent], **QUIET) == 1  # ...removed on the next start
    assert_reads_back_whole(run_dir)


def assert_reads_back_whole(run_dir: Path) -> None:
    run = load_run(run_dir)  # results.json and every analysis array
    assert all(run.grids[name].size for name in run.grids.files)
    assert (run_dir / "index.html").read_text().endswith("</html>")
    assert len(newest_records(run_dir / "results.jsonl", log=pytest.fail)) == len(run.results["records"])
    cache = ShardCache(run_dir / "cache", log=pytest.fail)
    assert all(cache.get(p.stem) is not None for p in (run_dir / "cache").glob("??/*.npz"))


def test_every_file_of_a_run_and_its_report_is_written_atomically(tmp_path, monkeypatch):
    committed = set()
    commit = storage._commit
    monkeypatch.setattr(storage, "_commit", lambda tmp, target: (committed.add(Path(target)), commit(tmp, target)))
    run_suite(tiny_suite(policies=("baseline", "tail:0.05@last:1")), tmp_path, RunOptions(**QUIET))
    build_report([tmp_path], tmp_path / "index.html")
    written = {p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".lock"}
    assert written - committed == {tmp_path / "results.jsonl"}  # appended line by line (see test_storage)
    assert any(p.parent.parent == tmp_path / "cache" for p in committed)  # shards and the baseline's states
