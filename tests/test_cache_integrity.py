"""A shard file that is swapped, truncated or bit-flipped is never used: it is moved aside, reported once,
recomputed by `run` (bit-identical) and reported by name as missing by `score`."""
import json
import shutil

import numpy as np
import pytest

from condbench.cache import ShardCache
from condbench.cli import main
from condbench.runner import MissingShardsError, RunOptions, run_suite

from .test_run_safety import finished_run, records, tiny_suite, write_suite  # noqa: F401 (fixture)


def _swap(files):
    shutil.copyfile(files[1], files[0])  # another shard's whole, valid file under this one's name


def _truncate(files):
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) * 2 // 3])


def _flip(files):
    data = bytearray(files[0].read_bytes())
    data[len(data) // 3] ^= 0x10  # one bit, inside the stored arrays
    files[0].write_bytes(bytes(data))


DAMAGE = {"swapped": _swap, "truncated": _truncate, "bit-flipped": _flip}


def test_the_cache_returns_only_the_file_written_under_the_key(tmp_path):
    messages = []
    cache = ShardCache(tmp_path, log=messages.append)
    arrays = {"features": np.arange(12.0).reshape(3, 4), "grid": np.zeros((2, 1, 8, 8), np.float32)}
    cache.put("ab" * 32, arrays)
    cache.put("cd" * 32, {"features": np.ones((3, 4))})
    got = cache.get("ab" * 32)
    assert set(got) == set(arrays) and all(np.array_equal(got[k], arrays[k]) for k in arrays)
    shutil.copyfile(cache.path("cd" * 32), cache.path("ab" * 32))
    assert cache.get("ab" * 32) is None and cache.get("ab" * 32) is None  # absent from now on
    assert len(messages) == 1 and "holds another shard" in messages[0] and str(cache.path("ab" * 32)) in messages[0]
    assert len(list((tmp_path / "quarantine").iterdir())) == 1 and not cache.path("ab" * 32).exists()
    assert cache.get("cd" * 32) is not None


def _cell_files(run_dir):
    """The cell shard files of the run (not the baseline's kept states), newest last."""
    files = [p for p in (run_dir / "cache").glob("??/*.npz") if "features" in np.load(p).files]
    return sorted(files, key=lambda p: p.stat().st_mtime_ns)


@pytest.mark.parametrize("damage", DAMAGE)
def test_run_recomputes_a_damaged_shard_and_gives_the_same_numbers(finished_run, tmp_path, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = records(run_dir)
    files = _cell_files(run_dir)
    DAMAGE[damage](files)
    messages = []
    after = records(run_suite(tiny_suite(), run_dir, RunOptions(log=messages.append)).parent)
    reported = [m for m in messages if "is not used" in m]
    assert len(reported) == 1 and str(files[0]) in reported[0]
    assert sum(r["work"]["shards_from_cache"] for r in after.values()) == len(files) - 1  # only it recomputed
    for policy, record in before.items():
        assert after[policy]["metrics"] == record["metrics"]  # bit-identical numbers, never another shard's
    assert len(list((run_dir / "cache" / "quarantine").iterdir())) == 1


@pytest.mark.parametrize("damage", DAMAGE)
def test_score_reports_a_damaged_shard_by_name_as_missing(finished_run, tmp_path, damage, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    files = _cell_files(run_dir)
    DAMAGE[damage](files)
    results = (run_dir / "results.jsonl").read_text()
    suite_file = write_suite(tmp_path / "s.yaml", tiny_suite())
    assert main(["score", str(suite_file), "-o", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "missing from the cache" in err and str(files[0]) in err
    assert "moved to quarantine" in err
    assert (run_dir / "results.jsonl").read_text() == results  # nothing finished is lost
    with pytest.raises(MissingShardsError, match="moved aside earlier"):
        run_suite(tiny_suite(), run_dir, RunOptions(score_only=True, log=lambda _: None))


def test_two_thresholds_equal_to_6_digits_never_share_samples(tmp_path):
    close = ["baseline", "tail:0.05031576105423927", "tail:0.05031584105423927"]
    results = json.loads(run_suite(tiny_suite(policies=close), tmp_path, RunOptions(log=lambda _: None)).read_text())
    by_policy = {r["policy"]: r for r in results["records"]}
    assert list(by_policy) == close  # exact keys in the records, one per policy
    for spec in close[1:]:
        assert by_policy[spec]["work"]["shards_from_cache"] == 0  # the second did not reuse the first's shards
        assert by_policy[spec]["work"]["denoiser_evaluations"] > 0
