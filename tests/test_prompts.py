"""Prompt sets from text, csv, jsonl, COCO captions and PartiPrompts files (all written here)."""
from __future__ import annotations

import json

import pytest

from condbench.datasets.prompts import PromptFileError, load_prompts
from condbench.tasks import asset_path


def coco_file(tmp_path, images: int = 6, per_image: int = 3):
    data = {"images": [{"id": 100 + i, "file_name": f"{100 + i:012d}.jpg"} for i in range(images)],
            "annotations": [{"id": 1000 + 10 * i + k, "image_id": 100 + i, "caption": f" image {i}\n caption {k} "}
                            for i in range(images) for k in range(per_image)]}
    path = tmp_path / "captions_val2017.json"
    path.write_text(json.dumps(data))
    return path


def test_plain_csv_and_jsonl(tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n\n  two   dogs \n")
    assert load_prompts(tmp_path / "p.txt").prompts == ["a cat", "two dogs"]
    (tmp_path / "p.csv").write_text('id,Prompt\n1,"a cat, sitting"\n2,a dog\n')
    assert load_prompts(tmp_path / "p.csv").prompts == ["a cat, sitting", "a dog"]
    (tmp_path / "p.jsonl").write_text('"a cat"\n{"caption": "a dog"}\n\n{"prompt": "a cow", "x": 1}\n')
    assert load_prompts(tmp_path / "p.jsonl").prompts == ["a cat", "a dog", "a cow"]
    assert load_prompts(tmp_path / "p.jsonl", num=2).prompts == ["a cat", "a dog"]


def test_coco_sample_is_seeded_one_caption_per_image_and_nested(tmp_path):
    path = coco_file(tmp_path)
    full = load_prompts(path)
    assert len(full) == 6 and len(set(full.image_ids)) == 6
    for image_id, prompt in zip(full.image_ids, full.prompts):
        assert prompt.startswith(f"image {image_id - 100} caption")  # the caption belongs to that image
    three = load_prompts(path, num=3)
    assert three.image_ids == full.image_ids[:3] and three.prompts == full.prompts[:3]
    assert three.image_files == [f"{i:012d}.jpg" for i in three.image_ids]
    assert load_prompts(path, num=3).prompts == three.prompts  # deterministic
    other = load_prompts(path, seed=1)
    assert (other.image_ids, other.prompts) != (full.image_ids, full.prompts)
    with pytest.raises(PromptFileError, match="7 prompts asked for, but only 6"):
        load_prompts(path, num=7)


def test_parti_tsv(tmp_path):
    path = tmp_path / "PartiPrompts.tsv"
    path.write_text("Prompt\tCategory\tChallenge\tNote\nA bowl of soup\tFood & Beverage\tBasic\t\n"
                    "a red cube\tArtifacts\tColors\tnote\n")
    parti = load_prompts(path)
    assert parti.prompts == ["A bowl of soup", "a red cube"] and parti.categories == ["Food & Beverage", "Artifacts"]


def test_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('"ok"\n{"nope": 1}\n')
    with pytest.raises(PromptFileError, match=r"bad.jsonl, line 2: .*none of the keys"):
        load_prompts(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text('"ok"\n\n{oops\n')
    with pytest.raises(PromptFileError, match=r"bad2.jsonl, line 3: not JSON"):
        load_prompts(tmp_path / "bad2.jsonl")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(PromptFileError, match=r"bad.csv, line 1: .*no column"):
        load_prompts(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text('prompt\nfine\n""\n')
    with pytest.raises(PromptFileError, match=r"empty.csv, line 3"):
        load_prompts(tmp_path / "empty.csv")
    (tmp_path / "p.tsv").write_text("Prompt\tCategory\nx\ty\n")
    with pytest.raises(PromptFileError, match="missing Challenge, Note"):
        load_prompts(tmp_path / "p.tsv")
    (tmp_path / "c.json").write_text(json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 5}]}))
    with pytest.raises(PromptFileError, match="names image 5"):
        load_prompts(tmp_path / "c.json")
    with pytest.raises(FileNotFoundError, match="nothere.txt"):
        load_prompts(tmp_path / "nothere.txt")
    with pytest.raises(PromptFileError, match="suffix '.dat'"):
        (tmp_path / "x.dat").write_text("a")
        load_prompts(tmp_path / "x.dat")


def test_shipped_prompt_list():
    prompts = load_prompts(asset_path("text_prompts.txt"))
    assert len(prompts) == 50 and len(set(prompts.prompts)) == 50
