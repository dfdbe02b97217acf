"""Prompt sets for text-to-image tasks, read from files the user provides (nothing of them ships here).

- plain text: one prompt per non-blank line;
- csv: a header row with a ``prompt`` (or ``caption`` / ``text``) column;
- jsonl: one JSON string, or one object with a ``prompt`` / ``caption`` / ``text`` field, per line;
- COCO captions JSON (``captions_val2014.json``, ``captions_val2017.json``): one caption per image, the image
  ids kept (FID compares against those images); a seeded sample of N images;
- PartiPrompts TSV (``PartiPrompts.tsv``): columns Prompt, Category, Challenge, Note.

Seeded choices use a hash of (seed, id), not a library RNG, so a sample never changes with numpy or Python,
and the sample of N images is the first N of the sample of N + 1.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..checkpoints import file_sha256
from ..textfiles import read_user_text

TEXT_KEYS = ("prompt", "caption", "text")
PARTI_COLUMNS = ("Prompt", "Category", "Challenge", "Note")
FORMATS = ("text", "csv", "jsonl", "coco", "parti")
FORMAT_BY_SUFFIX = {".txt": "text", ".csv": "csv", ".jsonl": "jsonl", ".json": "coco", ".tsv": "parti"}


class PromptFileError(ValueError):
    """A prompt file that cannot be read as the format it claims; the message names the file and line."""


@dataclass(frozen=True)
class PromptSet:
    """Prompts in sample order, with what identifies them (COCO image ids, Parti categories) where the file has it."""

    prompts: list[str]
    source: Path
    format: str
    image_ids: Optional[list[int]] = None  # COCO: the image each caption describes
    image_files: Optional[list[str]] = None  # COCO: its file name
    categories: Optional[list[str]] = None  # PartiPrompts
    sampling: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)

    def describe(self) -> dict:
        return {"source": str(self.source), "format": self.format, "count": len(self.prompts),
                "sha256": file_sha256(self.source), **({"sampling": self.sampling} if self.sampling else {})}


def _stable_rank(seed: int, key: object) -> str:
    return hashlib.sha256(f"condbench-prompts:{seed}:{key}".encode()).hexdigest()


def _clean(text: object, path: Path, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise PromptFileError(f"{path}, {where}: expected a non-empty prompt string, got {text!r}")
    return " ".join(text.split())  # one line, single spaces: a prompt's identity (cache keys) ignores layout


def _text(path: Path) -> str:
    """The prompt file's text (UTF-8; a clear error naming the file otherwise)."""
    return read_user_text(path, "prompt file")


def _rows(path: Path, delimiter: str = ",") -> csv.DictReader:
    """The rows of a csv/tsv prompt file, keyed by its header."""
    return csv.DictReader(io.StringIO(_text(path), newline=""), delimiter=delimiter)


def read_text(path: Path) -> PromptSet:
    lines = _text(path).splitlines()
    prompts = [" ".join(line.split()) for line in lines if line.strip()]
    return PromptSet(prompts, path, "text")


def read_csv(path: Path) -> PromptSet:
    reader = _rows(path)
    column = next((c for c in reader.fieldnames or [] if c.strip().lower() in TEXT_KEYS), None)
    if column is None:
        raise PromptFileError(f"{path}, line 1: the header {reader.fieldnames} has no column named one of "
                              f"{', '.join(TEXT_KEYS)}")
    prompts = [_clean(row[column], path, f"line {reader.line_num}") for row in reader]
    return PromptSet(prompts, path, "csv")


def read_jsonl(path: Path) -> PromptSet:
    prompts = []
    for number, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise PromptFileError(f"{path}, line {number}: not JSON ({error.msg})") from None
        if isinstance(item, dict):
            key = next((k for k in TEXT_KEYS if k in item), None)
            if key is None:
                raise PromptFileError(f"{path}, line {number}: the object has none of the keys {', '.join(TEXT_KEYS)}")
            item = item[key]
        prompts.append(_clean(item, path, f"line {number}"))
    return PromptSet(prompts, path, "jsonl")


def read_parti(path: Path) -> PromptSet:
    reader = _rows(path, delimiter="\t")
    missing = [c for c in PARTI_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise PromptFileError(f"{path}, line 1: a PartiPrompts TSV has the columns {', '.join(PARTI_COLUMNS)}; "
                              f"missing {', '.join(missing)} (header: {reader.fieldnames})")
    rows = [(_clean(row["Prompt"], path, f"line {reader.line_num}"), row["Category"]) for row in reader]
    return PromptSet([p for p, _ in rows], path, "parti", categories=[c for _, c in rows])


def read_coco_captions(path: Path, num: Optional[int] = None, seed: int = 0) -> PromptSet:
    """One caption per image (the seeded choice among its captions), for ``num`` seeded images (all if None)."""
    try:
        data = json.loads(_text(path))
    except json.JSONDecodeError as error:
        raise PromptFileError(f"{path}, line {error.lineno}: not JSON ({error.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) or not isinstance(data.get("images"), list):
        raise PromptFileError(f"{path}: a COCO captions file is an object with 'images' and 'annotations' lists")
    files = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise PromptFileError(f"{path}: images[{i}] lacks 'id' or 'file_name'")
        files[image["id"]] = image["file_name"]
    chosen: dict[int, tuple[str, str]] = {}  # image id -> (rank, caption)
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "id" not in ann:
            raise PromptFileError(f"{path}: annotations[{i}] lacks 'image_id' or 'id'")
        if ann["image_id"] not in files:
            raise PromptFileError(f"{path}: annotations[{i}] names image {ann['image_id']}, which 'images' lacks")
        rank = _stable_rank(seed, f"caption:{ann['id']}")
        if ann["image_id"] not in chosen or rank < chosen[ann["image_id"]][0]:
            chosen[ann["image_id"]] = (rank, _clean(ann.get("caption"), path, f"annotations[{i}]"))
    order = sorted(chosen, key=lambda image_id: _stable_rank(seed, f"image:{image_id}"))
    if num is not None:
        if num > len(order):
            raise PromptFileError(f"{path}: {num} prompts asked for, but only {len(order)} images have captions")
        order = order[:num]
    return PromptSet([chosen[i][1] for i in order], path, "coco", image_ids=list(order),
                     image_files=[files[i] for i in order],
                     sampling={"seed": seed, "images": len(order), "of": len(chosen),
                               "rule": "one caption per image, both chosen by sha256 rank of (seed, id)"})


def load_prompts(path: str | Path, format: str = "auto", num: Optional[int] = None, seed: int = 0) -> PromptSet:
    """A prompt set from ``path``; ``format`` auto picks by suffix (.txt .csv .jsonl .json=COCO .tsv=Parti).

    ``num`` keeps the first N prompts (for COCO: a seeded sample of N images, one caption each).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path.resolve()}")
    if format == "auto":
        format = FORMAT_BY_SUFFIX.get(path.suffix.lower(), "")
        if not format:
            raise PromptFileError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; give one of "
                                  f"{', '.join(FORMATS)}")
    if format == "coco":
        return read_coco_captions(path, num, seed)
    readers = {"text": read_text, "csv": read_csv, "jsonl": read_jsonl, "parti": read_parti}
    if format not in readers:
        raise PromptFileError(f"{path}: unknown prompt format {format!r}; known: {', '.join(FORMATS)}")
    prompts = readers[format](path)
    if not prompts.prompts:
        raise PromptFileError(f"{path}: no prompts in the file")
    if num is not None:
        if num > len(prompts):
            raise PromptFileError(f"{path}: {num} prompts asked for, but the file has {len(prompts)}")
        prompts = PromptSet(prompts.prompts[:num], path, format,
                            categories=prompts.categories[:num] if prompts.categories else None,
                            sampling={"first": num, "of": len(prompts)})
    return prompts
