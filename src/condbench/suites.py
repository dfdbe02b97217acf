"""Suites: YAML files that say which task, models, policies, sample counts and seed a run uses.

Built-in suites live in ``condbench/suites/*.yaml`` and are named without the extension; any other
argument is read as a path. A suite is checked against a typed schema (pydantic, strict: YAML's own types,
no silent conversions) before any work: a wrong key or type is an error naming the file, the key and the
expected type, never a traceback hours later.
"""
from __future__ import annotations

from dataclasses import field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass
from typing_extensions import TypedDict

from .policies import parse_policy
from .sparsity import DEFAULT_TAUS
from .textfiles import TextFileError, read_user_text


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and every wrong key."""


class AnalysisSettings(TypedDict, total=False):
    """The ``analysis`` mapping: keyword arguments of :func:`condbench.analysis.analyze`."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    taus: list[float]
    sweep_points: int
    step: int


class BlocksSettings(TypedDict, total=False):
    """The ``blocks`` mapping: block diversity (:func:`condbench.blocks.block_diversity`) run after the analysis."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    policies: list[str]  # default: baseline only
    samples: int  # the task's first conditions (default 20)
    steps: list[int]  # sampling steps (default: first, middle, last)


@dataclass(config=ConfigDict(extra="forbid", strict=True))
class Suite:
    """A validated suite; constructing one checks every field's type (raises pydantic's ValidationError)."""

    name: str
    task: Union[str, list[str]]  # one task name or a list of them
    models: list[str] = Field(min_length=1)
    policies: list[str] = Field(min_length=1)
    seed: int = 0
    batch_size: int = Field(500, ge=1)  # samples per sampler call and policy (a runtime setting: in no cache key)
    # how many policies of a model are sampled in one sampler call (a batch of together x batch_size samples,
    # condbench.policy_group): "all", or at most this many; a runtime setting, the same numbers as 1
    together: Union[Literal["all"], Annotated[int, Field(ge=1)]] = 1
    shard_size: int = Field(500, ge=1)  # indices per cached shard (part of the cache key)
    # rows per network call, fixed (the last call padded): samples are then bit-identical whatever the batch
    # size; None evaluates whole batches (faster, equal to float rounding). Part of the sampler settings.
    microbatch: Optional[int] = Field(None, ge=1)
    # also keep every sample (uint8) in the cache and write each cell's samples as the ``arr_0`` npz that
    # reference evaluators read (ADM's TensorFlow evaluator for ImageNet)
    keep_samples: bool = False
    # the denoiser's arithmetic (condbench.precision): fp32 (bit-exact with the official float32 code), tf32 (the
    # TF32 flags on CUDA), bf16 (autocast; c, policies and the sampler stay float32) or official (what the release's
    # own sampling script does: DiT, MDT tf32; X-MDPT, MDSGen bf16 autocast with c included; refused for the others);
    # and torch.compile of the denoiser. Both enter the cache key when not the default.
    precision: Literal["fp32", "tf32", "bf16", "official"] = "fp32"
    compile: bool = False
    task_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    analysis: AnalysisSettings = field(default_factory=lambda: {"taus": list(DEFAULT_TAUS), "sweep_points": 20})
    # block diversity (linear CKA / token cosine between block outputs) for these policies, written as
    # blocks_MODEL.json beside the analysis and shown by the report; None: not computed
    blocks: Optional[BlocksSettings] = None
    bootstrap: int = Field(200, ge=1)  # paired bootstrap resamples for the change of every metric against the baseline

    @property
    def tasks(self) -> list[str]:
        return [self.task] if isinstance(self.task, str) else list(self.task)

    def adapter_options(self, model: str) -> dict[str, Any]:
        """The keyword arguments the model's adapter is built with: its model_options, the microbatch, and the
        precision and compile settings where not the default."""
        return {**({"microbatch": self.microbatch} if self.microbatch else {}),
                **({"precision": self.precision} if self.precision != "fp32" else {}),
                **({"compile": True} if self.compile else {}), **self.model_options.get(model, {})}

    @field_validator("task")
    @classmethod
    def _some_task(cls, task: Union[str, list[str]]) -> Union[str, list[str]]:
        if not task:
            raise ValueError("name at least one task")
        return task

    @field_validator("policies")
    @classmethod
    def _valid_policies(cls, policies: list[str]) -> list[str]:
        keys = [parse_policy(s).key() for s in policies]  # a bad spec fails here, with the grammar
        if "baseline" not in keys:
            raise ValueError("the baseline policy must be included (every delta is against it)")
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:
            raise ValueError(f"the same policy is listed twice: {sorted(duplicates)}")
        return policies


FIELD_NAMES = tuple(Suite.__dataclass_fields__)

# pydantic error type -> the expected type, in words
EXPECTED = {
    "list_type": "a list (in YAML: [a, b] or one '- item' per line)", "string_type": "a string",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "dict_type": "a mapping (key: value lines)", "typed_dict_type": "a mapping (key: value lines)",
}


def _key(loc: tuple) -> str:
    """('model_options', 'dit-digits', 'num_steps') -> model_options.dit-digits.num_steps; list items as [i]."""
    out = ""
    for part in loc:
        if part in ("str", "list[str]"):  # which member of a Union failed: not a key
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_errors(error: ValidationError, source: str) -> str:
    """One line per wrong key: ``source: key 'K': expected TYPE, got VALUE``."""
    lines, seen = [], set()
    for item in error.errors(include_url=False):
        key, kind, given = _key(item["loc"]), item["type"], item.get("input")
        if kind in ("extra_forbidden", "unexpected_keyword_argument"):
            text = f"unknown key; the keys of a suite are {', '.join(FIELD_NAMES)}" if "." not in key else "unknown key"
        elif kind in ("missing", "missing_argument"):
            text = "required key is missing"
        elif kind == "value_error":
            text = str(item["ctx"]["error"])
        elif kind in EXPECTED:
            text = f"expected {EXPECTED[kind]}, got {type(given).__name__} {given!r}"
        else:
            text = f"{item['msg']}, got {given!r}"
        if key == "task" and kind in ("list_type", "string_type"):
            text = f"expected a task name or a list of them, got {type(given).__name__} {given!r}"
        if (key, text) not in seen:
            seen.add((key, text))
            lines.append(f"{source}: key {key!r}: {text}" if key else f"{source}: {text}")
    return "\n".join(lines)


def builtin_suites() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("condbench").joinpath("suites").iterdir()
                  if p.name.endswith(".yaml"))


def suite_path(name_or_path: str) -> Path:
    """The YAML file of a built-in suite name or of a path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if name_or_path not in builtin_suites():
            raise FileNotFoundError(f"no suite {name_or_path!r}: not a YAML path, and the built-in suites are "
                                    f"{', '.join(builtin_suites())}")
        return Path(str(resources.files("condbench") / "suites" / f"{name_or_path}.yaml"))
    if not path.is_file():
        raise FileNotFoundError(f"suite file not found: {path.resolve()}")
    return path


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a YAML file by path, validated (raises :class:`SuiteError`)."""
    path = suite_path(name_or_path)
    try:
        data = yaml.safe_load(read_user_text(path, "suite file"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SuiteError(f"{where}: invalid YAML: {problem}") from None
    except TextFileError as error:
        raise SuiteError(str(error)) from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping (key: value lines), got {type(data).__name__}")
    try:
        suite = Suite(**{str(k): v for k, v in data.items()})
    except ValidationError as error:
        raise SuiteError(describe_errors(error, str(path))) from None
    check_names(suite, str(path))
    return suite


def check_names(suite: Suite, source: str) -> None:
    """Every task and model the suite names is known, and model_options only name its models."""
    from .registry import model_entry, task_entry

    problems = []
    for key, names, lookup in (("task", suite.tasks, task_entry), ("models", suite.models, model_entry)):
        for name in names:
            try:
                lookup(name)
            except KeyError as error:
                problems.append(f"{source}: key {key!r}: {error.args[0]}")
    for name in suite.model_options:
        if name not in suite.models:
            problems.append(f"{source}: key 'model_options.{name}': {name!r} is not one of the suite's models")
    if problems:
        raise SuiteError("\n".join(problems))
