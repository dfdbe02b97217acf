"""Suites: YAML files that say which task, models, policies, sample counts and seed a run uses.

Built-in suites live in ``condbench/suites/*.yaml`` and are named without the extension; any other
argument is read as a path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .analysis import DEFAULT_TAUS
from .policies import parse_policy


@dataclass
class Suite:
    name: str
    task: str | list[str]  # one task name or a list of them
    models: list[str]
    policies: list[str]
    seed: int = 0
    batch_size: int = 500  # rows per sampler call (a runtime setting: not part of any cache key)
    shard_size: int = 500  # indices per cached shard (part of the cache key)
    # rows per network call, fixed (the last call padded): samples are then bit-identical whatever the batch
    # size; None evaluates whole batches (faster, equal to float rounding). Part of the sampler settings.
    microbatch: int | None = None
    # also keep every sample (uint8) in the cache and write each cell's samples as the ``arr_0`` npz that
    # reference evaluators read (ADM's TensorFlow evaluator for ImageNet)
    keep_samples: bool = False
    task_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    analysis: dict[str, Any] = field(default_factory=lambda: {"taus": list(DEFAULT_TAUS), "sweep_points": 20})
    bootstrap: int = 200  # paired bootstrap resamples for the change of every metric against the baseline

    @property
    def tasks(self) -> list[str]:
        return [self.task] if isinstance(self.task, str) else list(self.task)

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError(f"suite {self.name!r}: shard_size and batch_size must be >= 1")
        for spec in self.policies:
            parse_policy(spec)  # fail before any work is done
        canon = [parse_policy(s).canonical() for s in self.policies]
        if "baseline" not in canon:
            raise ValueError(f"suite {self.name!r} must include the baseline policy (every delta is against it)")
        duplicates = {c for c in canon if canon.count(c) > 1}
        if duplicates:
            raise ValueError(f"suite {self.name!r} lists the same policy twice: {sorted(duplicates)}")


def builtin_suites() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("condbench").joinpath("suites").iterdir()
                  if p.name.endswith(".yaml"))


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if name_or_path not in builtin_suites():
            raise FileNotFoundError(f"no suite {name_or_path!r}: not a YAML path, and the built-in suites are "
                                    f"{', '.join(builtin_suites())}")
        path = Path(str(resources.files("condbench") / "suites" / f"{name_or_path}.yaml"))
    elif not path.is_file():
        raise FileNotFoundError(f"suite file not found: {path.resolve()}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a suite is a YAML mapping")
    known = set(Suite.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{path}: unknown suite keys {sorted(unknown)}; known: {sorted(known)}")
    return Suite(**data)
