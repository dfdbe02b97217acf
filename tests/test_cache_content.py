"""Cache files that are damaged or wrong: a valid checksum over wrong content (a writer's bug), a quarantine
folder that is a file, a read-only shared cache for `score`, and the audio-shapes task's own cache files (the
ground-truth features, the clips it writes). Each stops with one line naming the file, loses nothing, and `run`
heals what it can."""
import os
import shutil

import numpy as np
import pytest

from condbench.cache import ShardCache, read_shard
from condbench.cli import main
from condbench.runner import RunOptions, run_suite

from .test_cache_integrity import _cell_files
from .test_run_safety import finished_run, records, tiny_suite, write_suite  # noqa: F401 (fixture)


def _short(arrays):
    return {**arrays, "features": arrays["features"][:-1]}  # a row lost


def _nan_row(arrays):
    features = arrays["features"].copy()
    features[3] = np.nan
    return {**arrays, "features": features}


WRONG = {"short": (_short, "its 'features' holds 9 rows, expected 10"),
         "nan-row": (_nan_row, "its 'features' has NaN or infinite values in 1 row(s) (first: row 3)")}


def _rewrite(path, change) -> None:
    """The shard at ``path`` written again under its own key with a valid checksum over changed content."""
    key = path.name.removesuffix(".npz")
    ShardCache(path.parent.parent, log=lambda _: None).put(key, change(read_shard(path, key)))


@pytest.fixture
def run_dir(finished_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_NO_PROGRESS", "1")  # stderr holds the error alone
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("wrong", WRONG)
def test_wrong_content_behind_a_valid_checksum_is_named_by_score_and_healed_by_run(run_dir, tmp_path, wrong, capsys):
    change, problem = WRONG[wrong]
    before, results = records(run_dir), (run_dir / "results.jsonl").read_text()
    bad = _cell_files(run_dir)[0]
    _rewrite(bad, change)
    suite_file = write_suite(tmp_path / "s.yaml", tiny_suite())
    assert main(["score", str(suite_file), "-o", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(bad) in err and problem in err and "missing from the cache" in err
    assert (run_dir / "results.jsonl").read_text() == results  # nothing finished is lost
    messages = []
    after = records(run_suite(tiny_suite(), run_dir, RunOptions(log=messages.append)).parent)
    for policy, record in before.items():
        assert after[policy]["metrics"] == record["metrics"]  # recomputed: the same numbers
    assert [p.name.split(".")[0] for p in (run_dir / "cache" / "quarantine").iterdir()] == [bad.stem]


def test_a_quarantine_folder_that_is_a_file_is_one_line_naming_both_and_keeps_the_damaged_file(run_dir, tmp_path,
                                                                                              capsys):
    bad = _cell_files(run_dir)[0]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    damaged = bad.read_bytes()
    (run_dir / "cache" / "quarantine").write_text("keep me")
    results = (run_dir / "results.jsonl").read_text()
    suite_file = write_suite(tmp_path / "s.yaml", tiny_suite())
    assert main(["run", str(suite_file), "-o", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(bad) in err and "unreadable" in err
    assert f"{run_dir / 'cache' / 'quarantine'} is a file, not a folder" in err
    assert bad.read_bytes() == damaged and (run_dir / "cache" / "quarantine").read_text() == "keep me"
    assert (run_dir / "results.jsonl").read_text() == results


def _tree(folder) -> dict[str, int]:
    """Every path under ``folder`` (itself included) with its modification time: a file created and removed
    again (a write probe) changes its folder's."""
    return {str(p): p.stat().st_mtime_ns for p in [folder, *folder.rglob("*")]}


def test_score_writes_nothing_in_a_shared_cache_that_holds_every_shard(finished_run, tmp_path, capsys):
    """Checked by what score does to the folder, which holds for root too (root ignores permission bits)."""
    shared = tmp_path / "shared"
    shutil.copytree(finished_run / "cache", shared)
    before = _tree(shared)
    suite_file = write_suite(tmp_path / "s.yaml", tiny_suite())
    assert main(["score", str(suite_file), "-o", str(tmp_path / "scored"), "--cache", str(shared)]) == 0, \
        capsys.readouterr().err
    assert _tree(shared) == before
    assert records(tmp_path / "scored") .keys() == records(finished_run).keys()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits, so a read-only folder cannot be made "
                                              "here; the test above checks that score writes nothing in the cache")
def test_score_works_from_a_read_only_cache(finished_run, tmp_path, capsys):
    shared = tmp_path / "shared"
    shutil.copytree(finished_run / "cache", shared)
    folders = [shared, *[p for p in shared.rglob("*") if p.is_dir()]]
    for folder in folders:
        folder.chmod(0o555)
    try:
        suite_file = write_suite(tmp_path / "s.yaml", tiny_suite())
        assert main(["score", str(suite_file), "-o", str(tmp_path / "scored"), "--cache", str(shared)]) == 0, \
            capsys.readouterr().err
    finally:
        for folder in folders:
            folder.chmod(0o755)


# --- the audio-shapes task's own files: its ground-truth features and the clips it writes ----------------------

@pytest.fixture
def shapes_task(tmp_path):
    """A 3-clip audio-shapes task in its own folder, with the shipped classifier, and its truth features made."""
    from condbench.tasks.audio_shapes import ShapesAudioTask, load_classifier

    def make():
        return ShapesAudioTask(num_clips=3, clip_dir=str(tmp_path / "clips"))

    classifier, info = load_classifier()
    truth = make().truth_features(classifier, info)
    return make, (classifier, info), truth


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _text(path):
    path.write_text("not an npz\n")


def _wrong_rows(path):
    _rewrite(path, lambda arrays: {k: v[:-1] for k, v in arrays.items()})


@pytest.mark.parametrize("damage, problem", [(_truncate, "unreadable (BadZipFile"), (_text, "unreadable ("),
                                             (_wrong_rows, "its 'features' holds 2 rows, expected 3")])
def test_damaged_truth_features_of_audio_shapes_are_named_moved_aside_and_computed_again(shapes_task, capsys,
                                                                                         damage, problem):
    make, loaded, (features, logits) = shapes_task
    folder = make().clip_dir / "truth_features"
    [path] = folder.rglob("*.npz")
    damage(path)
    capsys.readouterr()
    again = make().truth_features(*loaded)
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and str(path) in out and problem in out, out
    assert np.array_equal(again[0], features) and np.array_equal(again[1], logits)  # computed again, the same
    assert len(list((folder / "quarantine").iterdir())) == 1 and path.is_file()


def test_an_unreadable_clip_audio_shapes_wrote_is_written_again_not_downloaded(shapes_task, capsys):
    make, _, _ = shapes_task
    conditions = make().conditions()
    video = make().clips.video_path(1)
    _truncate(video)
    capsys.readouterr()
    assert np.array_equal(make().conditions().numpy(), conditions.numpy())
    out = capsys.readouterr().out
    assert "audio-shapes clip 1 is not used" in out and "written again" in out and "download" not in out
    moved = sorted(p.name.split(".")[:2] for p in (video.parent / "quarantine").iterdir())
    assert moved == [[video.stem, "mp4"], [video.stem, "wav"]]  # the clip's two files, kept as a pair
