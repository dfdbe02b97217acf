"""What a user installs and cites: the extras in pyproject.toml, LICENSE, CHANGELOG.md and CITATION.cff.

The wheel's completeness (every suite, template and asset inside, the quickstart's first cell run from it) is
checked by tools/check_wheel.py in CI (`tox -e wheel`), not here: it builds and installs the package.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
TASK_EXTRAS = ["imagenet", "pose", "text", "audio"]
STUDY_ARXIV = "2602.21596"
STUDY_TITLE = "A Hidden Semantic Bottleneck in Conditional Embeddings of Diffusion Transformers"
# CFF 1.2.0 schema: the keys a citation file, and each of its references, must have
CFF_REQUIRED = ["cff-version", "message", "title", "authors"]
CFF_REFERENCE_REQUIRED = ["type", "title", "authors"]


def requirement_name(requirement: str) -> str:
    """'diffusers>=0.30; marker' -> 'diffusers' (the name as written, extras dropped)."""
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()


def expanded(extra: str) -> set[str]:
    """The names an extra installs, with its self-references (condbench[a,b]) expanded."""
    names = set()
    for requirement in EXTRAS[extra]:
        inner = re.fullmatch(rf"{PROJECT['name']}\[([^\]]+)\]", requirement.replace(" ", ""))
        names |= set().union(*(expanded(e) for e in inner.group(1).split(","))) if inner else \
            {requirement_name(requirement)}
    return names


def test_all_installs_every_task_and_the_results_table_but_no_test_tools():
    assert set().union(*(expanded(e) for e in TASK_EXTRAS)) | {"pandas"} == expanded("all")
    assert not {"pytest", "pytest-benchmark"} & expanded("all")


def test_every_extra_that_loads_diffusers_models_has_accelerate():
    """Without accelerate, diffusers loads a model's weights in float32 whatever torch_dtype asks (silently)."""
    lacking = [extra for extra in EXTRAS if "diffusers" in expanded(extra) and "accelerate" not in expanded(extra)]
    assert not lacking, f"extras with diffusers but no accelerate: {lacking}"


def test_the_test_extra_holds_every_task_and_pandas():
    assert expanded("all") | {"pytest", "pandas"} <= expanded("test")


def test_license_file_is_the_mit_license_pyproject_names():
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_changelog_has_an_unreleased_section_and_the_current_version():
    headings = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert headings[0] == "Unreleased"
    assert PROJECT["version"] in headings


def test_citation_names_condbench_and_separately_the_study():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert [key for key in CFF_REQUIRED if key not in citation] == []
    assert citation["cff-version"] == "1.2.0"
    assert "condbench" in citation["title"] and citation["version"] == PROJECT["version"]
    assert citation["license"] == PROJECT["license"]
    (study,) = [ref for ref in citation["references"] if STUDY_ARXIV in ref.get("url", "")]
    assert [key for key in CFF_REFERENCE_REQUIRED if key not in study] == []
    assert study["title"] == STUDY_TITLE and study["year"] == 2026 and study["authors"]
