"""Atomic writes, appends that never leave a torn line, and the cleanup of killed writes' temporaries."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from condbench import storage
from condbench.storage import (StorageError, append_line, atomic_save_npz, atomic_write, clean_stale_temporaries,
                               ensure_folder, read_jsonl, temporary_name)

STORAGE = Path(storage.__file__)

# a writer that fills a temporary and is SIGKILLed before it finishes (storage.py alone: no torch import)
KILLED_WRITER = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("storage", sys.argv[1])
storage = importlib.util.module_from_spec(spec)
spec.loader.exec_module(storage)
with storage.atomic_path(sys.argv[2]) as tmp:
    with open(tmp, "wb") as handle:
        handle.write(b"new and longer content, half of it")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_writer_killed_mid_write_leaves_the_old_file_and_a_temporary_that_is_cleaned(tmp_path):
    target = tmp_path / "results.json"
    atomic_write(target, "old")
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(STORAGE), str(target)])
    assert killed.returncode == -signal.SIGKILL
    assert target.read_text() == "old"  # never a part of the new content
    left = list(tmp_path.glob(".results.json.*.tmp"))
    assert len(left) == 1 and left[0].read_bytes().startswith(b"new")
    assert clean_stale_temporaries([tmp_path], log=lambda _: None) == 1  # its writer is dead
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_only_temporaries_of_dead_or_long_gone_writers_are_removed(tmp_path):
    live = temporary_name(tmp_path / "a.npz")  # this process: alive
    live.write_bytes(b"x")
    dead = tmp_path / f".b.npz.{storage.HOST}.{_dead_pid()}.0123abcd.tmp"
    dead.write_bytes(b"x")
    elsewhere = tmp_path / f".c.npz.otherhost.{_dead_pid()}.0123abcd.tmp"  # another host: its pid means nothing here
    elsewhere.write_bytes(b"x")
    old = tmp_path / ".d.npz.1234.tmp"  # an old-style name, untouched for two days
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    kept = tmp_path / "e.npz"
    kept.write_bytes(b"x")
    assert clean_stale_temporaries([tmp_path, tmp_path / "absent"], log=lambda _: None) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, "e.npz"])


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_failed_write_removes_its_temporary_and_keeps_the_target(tmp_path):
    target = tmp_path / "grid.npz"
    atomic_save_npz(target, {"a": np.arange(3)})
    with pytest.raises(KeyboardInterrupt):
        with storage.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert np.array_equal(np.load(target)["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["grid.npz"]


def test_a_full_disk_is_one_line_naming_the_file_and_loses_nothing(tmp_path, monkeypatch):
    target = tmp_path / "index.html"
    atomic_write(target, "<html>old</html>")

    def full(tmp, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "_commit", full)
    with pytest.raises(StorageError) as error:
        atomic_write(target, "<html>new</html>")
    assert str(error.value) == f"cannot write {target}: no space left on the device"
    assert target.read_text() == "<html>old</html>" and len(list(tmp_path.iterdir())) == 1


def test_a_torn_last_line_is_ignored_with_a_warning_and_repaired(tmp_path):
    path = tmp_path / "results.jsonl"
    append_line(path, json.dumps({"policy": "baseline"}))
    with open(path, "a") as handle:
        handle.write('{"policy": "tail:0.05", "metr')  # what a killed append leaves
    warnings = []
    assert read_jsonl(path, warnings.append) == [{"policy": "baseline"}]
    assert "last line was torn" in warnings[0]
    assert path.read_text() == '{"policy": "baseline"}\n'  # repaired: the next append starts a line of its own
    append_line(path, json.dumps({"policy": "head:1"}))
    assert [r["policy"] for r in read_jsonl(path)] == ["baseline", "head:1"]
    with open(path, "a") as handle:
        handle.write('{"policy": "head:2"}')  # whole, only its newline missing: kept
    append_line(path, json.dumps({"policy": "head:3"}), log=pytest.fail)
    assert [r["policy"] for r in read_jsonl(path)] == ["baseline", "head:1", "head:2", "head:3"]


def test_an_append_that_fails_is_undone(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    append_line(path, '{"a": 1}')

    def half_then_full(path, data):
        with open(path, "ab") as handle:
            handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "_append", half_then_full)
    with pytest.raises(StorageError, match="cannot append to .*results.jsonl: no space left"):
        append_line(path, '{"b": 2}')
    assert path.read_text() == '{"a": 1}\n'


@pytest.mark.parametrize("make, reason", [
    (lambda root: root / "file", "it is a file, not a folder"),
    (lambda root: root / "file" / "run", f"is a file, not a folder"),
])
def test_a_folder_that_cannot_be_used_is_named_in_one_line(tmp_path, make, reason):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageError) as error:
        ensure_folder(make(tmp_path), "output folder")
    message = str(error.value)
    assert "\n" not in message and reason in message and str(tmp_path / "file") in message
    assert (tmp_path / "file").read_text() == "not a folder"
