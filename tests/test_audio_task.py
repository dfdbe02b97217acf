"""The ``audio`` task (VGGSound / MDSGen): its preflight, and a whole run on tiny real components."""
from __future__ import annotations

from pathlib import Path

import pytest

from condbench.cli import main


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONDBENCH_CACHE", str(cache))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty Hugging Face cache: AudioLDM is absent
    return cache


def test_run_without_files_stops_at_once_listing_every_missing_file(offline_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "audio", "-o", str(out)]) == 2
    message = capsys.readouterr().err
    assert message.count("error:") == 1 and "5 file(s) missing" in message
    for needed in ("vggsound.csv", "vggsound/vggsound.csv", "cavp_epoch66.ckpt", "vggish-10086976.pth",
                   "Cnn14_16k_mAP=0.438.pth", "mdsgen_audioldm.pt", "download it by hand", "audioldm-s-full-v2",
                   "task option cavp_weights", "task option vggish_weights", "task option panns_weights"):
        assert needed in message, needed
    assert "[model mdsgen-b-2]" in message and message.count("[task audio]") == 4
    assert not (out / "results.jsonl").exists()  # no work started


def test_preflight_names_each_missing_clip_of_the_split(offline_cache, tmp_path, capsys):
    csv = tmp_path / "vggsound.csv"
    csv.write_text('abc,4,"dog, barking",test\nxyz,10,cat,train\nqrs,30,rain,test\n')
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: s\ntask: audio\nmodels: [mdsgen-b-2]\npolicies: [baseline]\n"
                     f"task_options: {{csv: {csv}, clip_dir: {tmp_path / 'clips'}}}\n")
    assert main(["run", str(suite), "-o", str(tmp_path / "run")]) == 2
    message = capsys.readouterr().err
    assert "4 VGGSound clip file(s) missing (of 2 test clips" in message  # video and sound of each test clip
    assert str(tmp_path / "clips" / "abc_000004.mp4") in message and "qrs_000030.mp4" in message
    assert "xyz_000010" not in message  # a train clip
