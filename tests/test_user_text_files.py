"""Damaged text inputs a user gives (pairs files, the VGGSound csv, prompt files, keypoint files): each stops with one
message that names the file, where it breaks and the fix, through the real readers and the CLI (exit 2)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from condbench.cli import main
from condbench.datasets import deepfashion_files as files
from condbench.datasets import openpose as op
from condbench.datasets.prompts import PromptFileError, load_prompts
from condbench.datasets.vggsound_files import read_split
from condbench.textfiles import TextFileError

LATIN1_PAIRS = "img/WOMEN/a.jpg,img/WOMEN/b.jpg\nimg/MEN/caf\xe9.jpg,img/MEN/d.jpg\n".encode("latin-1")


def assert_names_place_and_fix(message: str, path, line: int, offset: int) -> None:
    assert message.startswith(f"{path}, line {line}: ") and f"byte offset {offset}" in message, message
    assert "save the file as UTF-8" in message, message


def test_a_latin1_pairs_file_names_the_file_line_and_byte(tmp_path):
    path = tmp_path / "test_pairs.txt"
    path.write_bytes(LATIN1_PAIRS)
    with pytest.raises(TextFileError) as error:
        files.read_pairs(path)
    assert_names_place_and_fix(str(error.value), path, 2, LATIN1_PAIRS.index(b"\xe9"))
    assert "byte 0xe9" in str(error.value) and "DeepFashion pairs file" in str(error.value)


def test_a_latin1_pairs_file_stops_the_pose_run_with_exit_2(tmp_path, isolated_cache, capsys):
    root = tmp_path / "deepfashion"
    root.mkdir()
    (root / "test_pairs.txt").write_bytes(LATIN1_PAIRS)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: s\ntask: pose\nmodels: [xmdpt-s-2]\npolicies: [baseline]\n"
                     f"task_options: {{root: {root}}}\n")
    assert main(["run", str(suite), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{root / 'test_pairs.txt'}, line 2: the DeepFashion pairs file is not UTF-8 text" in err
    assert "Traceback" not in err and err.count("error:") == 1
    assert not (tmp_path / "run" / "results.jsonl").exists()


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_pairs_file_is_an_error_not_zero_pairs(tmp_path, text):
    path = tmp_path / "test_pairs.txt"
    path.write_text(text)
    with pytest.raises(files.DeepFashionError, match=re.escape(f"{path}: the pairs file holds no pairs")):
        files.read_pairs(path)


def test_an_empty_pairs_file_is_reported_as_damaged_not_missing(tmp_path):
    """The preflight's check stops on it with its own message, not as a missing file."""
    (tmp_path / "test_pairs.txt").write_text("")
    with pytest.raises(files.DeepFashionError, match="holds no pairs"):
        files.missing_files(tmp_path)


def test_a_latin1_vggsound_csv_names_the_file_line_and_byte(tmp_path):
    path = tmp_path / "vggsound.csv"
    data = 'abc,4,dog barking,test\nxyz,10,"caf\xe9 noise",test\n'.encode("latin-1")
    path.write_bytes(data)
    with pytest.raises(TextFileError) as error:
        read_split(path)
    assert_names_place_and_fix(str(error.value), path, 2, data.index(b"\xe9"))
    assert "VGGSound split file" in str(error.value)


@pytest.mark.parametrize("name, text, line", [
    ("prompts.txt", "a red cube\na caf\xe9 at night\n", 2),
    ("prompts.csv", "prompt\na red cube\na caf\xe9 at night\n", 3),
    ("prompts.jsonl", '"a red cube"\n"a caf\xe9 at night"\n', 2),
    ("PartiPrompts.tsv", "Prompt\tCategory\tChallenge\tNote\na caf\xe9\tx\ty\tz\n", 2),
    ("captions.json", '{"images": [],\n "annotations": [{"caption": "caf\xe9"}]}', 2),
])
def test_a_latin1_prompt_file_names_the_file_line_and_byte(tmp_path, name, text, line):
    path = tmp_path / name
    data = text.encode("latin-1")
    path.write_bytes(data)
    with pytest.raises(TextFileError) as error:
        load_prompts(path)
    assert_names_place_and_fix(str(error.value), path, line, data.index(b"\xe9"))


def test_a_utf16_prompt_file_is_named_as_utf16(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red cube\n", encoding="utf-16")
    with pytest.raises(TextFileError, match=re.escape(f"{path}, line 1: ") + ".*the file is UTF-16.*save the file as "
                                            "UTF-8"):
        load_prompts(path)


def test_nul_bytes_in_a_prompt_file_are_refused_not_read_as_prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"a red cube\n\x00\x00\x00\x00\n")
    with pytest.raises(TextFileError, match=re.escape(f"{path}, line 2: the prompt file holds a NUL byte at byte "
                                                      "offset 11")):
        load_prompts(path)


def test_a_utf8_csv_with_a_byte_order_mark_reads_its_header(tmp_path):
    """What spreadsheet programs write when asked for UTF-8: the mark is not part of the column name."""
    path = tmp_path / "prompts.csv"
    path.write_text("prompt\na red cube\n", encoding="utf-8-sig")
    assert load_prompts(path).prompts == ["a red cube"]


def test_a_still_broken_prompt_file_keeps_its_format_error(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('"a red cube"\n{not json\n')
    with pytest.raises(PromptFileError, match=re.escape(f"{path}, line 2: not JSON")):
        load_prompts(path)


# --- keypoint files

POSE = ["60 20", "60 45", "40 45", "35 80", "35 110", "80 45", "85 80", "85 110", "50 120", "50 170", "50 220",
        "72 120", "72 170", "72 220", "55 15", "65 15", "-1 -1", "70 18"]


@pytest.mark.parametrize("bad", ["1e30 1e30", "-1e30 40", "60 -300", "600 40"])
def test_a_keypoint_far_outside_the_frame_is_a_damaged_file(tmp_path, bad):
    path = tmp_path / "pose.txt"
    path.write_text("\n".join(POSE[:4] + [bad] + POSE[5:]) + "\n")
    with pytest.raises(op.KeypointFileError, match=re.escape(f"{path}, line 5: {bad!r} lies far outside the keypoint "
                                                             "frame")):
        op.skeleton_from_file(path)


def test_keypoints_just_off_the_canvas_are_drawn_as_the_official_renderer_draws_them(tmp_path):
    """Only -1 marks a missing keypoint; a detection off the canvas (negative included) still draws its limbs."""
    path = tmp_path / "pose.txt"
    path.write_text("\n".join(["60 20", "60 -20"] + POSE[2:]) + "\n")  # the neck above the image
    skeleton = op.skeleton_from_file(path)
    missing = tmp_path / "missing.txt"
    missing.write_text("\n".join(["60 20", "-1 -1"] + POSE[2:]) + "\n")
    assert not np.array_equal(skeleton, op.skeleton_from_file(missing))  # the neck's limbs are drawn into the image


def test_a_damaged_keypoint_file_in_the_dataset_names_the_pairs_line(tmp_path):
    from condbench.datasets.deepfashion import DeepFashionPairs

    (tmp_path / "test_pairs.txt").write_text("img/t.jpg,img/s.jpg\n")
    (tmp_path / "256-256").mkdir()
    pose = tmp_path / "pose" / "t.txt"
    pose.parent.mkdir()
    pose.write_bytes("\n".join(POSE).replace("60 20", "6\xb00 20").encode("latin-1"))
    dataset = DeepFashionPairs(tmp_path)
    with pytest.raises(files.DeepFashionError, match=re.escape(f"{pose}, line 1: the keypoint file is not UTF-8 text")
                       + ".*" + re.escape(f"(target of {tmp_path / 'test_pairs.txt'}, line 1)")):
        dataset.read_skeleton(dataset.pairs[0])
