"""Before a run spends any GPU time: is every file it needs on disk (or downloadable)?

Each model's checkpoint and each task's inputs (reference batches, metric network weights) are resolved
up front. A run goes on with the models whose checkpoints are present and says which it skips; when a
task input is missing, or no model is left, it stops at once with ONE message that lists every missing file
and how to provide it, instead of failing on the first one hours in.
"""
from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .checkpoints import CheckpointNotFoundError
from .registry import load_adapter, load_task, model_entry, task_entry
from .suites import Suite


@dataclass(frozen=True)
class MissingInput:
    """A file a run needs and does not have: what it is, and the message that says how to provide it."""

    owner: str  # the model or task that needs it
    message: str


class MissingInputsError(CheckpointNotFoundError):
    """One or more files a run needs are missing; the message lists all of them."""


def load_tasks(suite: Suite) -> dict[str, Any]:
    """One task object per task of the suite, built with its task_options (a wrong option names the key)."""
    tasks = {}
    for name in suite.tasks:
        check_task_options(suite, name)
        try:
            tasks[name] = load_task(name, **suite.task_options)
        except TypeError as error:  # an option the task does not take, or a value of the wrong kind
            raise ValueError(f"suite {suite.name!r}: key 'task_options' does not fit task {name!r}: {error}") from None
    return tasks


def check_task_options(suite: Suite, name: str) -> None:
    """An option task ``name`` does not take is named with the closest ones it does ("did you mean")."""
    factory = task_entry(name).factory
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # a task that takes any option checks its own
    known = [p for p in parameters if p != "self"]
    problems = []
    for key in suite.task_options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=2)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            problems.append(f"task_options key {key!r} is not an option of task {name!r}.{hint}")
    if problems:
        raise ValueError(f"suite {suite.name!r}: " + " ".join(problems) + f" Its options: {', '.join(known) or 'none'}")


def check_model_options(suite: Suite, models: list[str]) -> None:
    """Build each model's embedders on the CPU with the suite's options (a few MB of each checkpoint): an
    unknown option, a bad value or a checkpoint that does not fit fails now, before any output is written.
    Models whose factory cannot build the embedders alone are checked when they are loaded."""
    problems = []
    for name in models:
        if "embedders_only" not in inspect.signature(model_entry(name).factory).parameters:
            continue
        try:
            load_adapter(name, device="cpu", embedders_only=True, **suite.adapter_options(name))
        except (TypeError, ValueError) as error:
            problems.append(f"key 'model_options.{name}' ({suite.adapter_options(name)}): {error}")
    if problems:
        raise ValueError(f"suite {suite.name!r} cannot run:\n" + "\n".join(problems))


def checkpoints_not_on_disk(suite: Suite, models: list[str]) -> list[str]:
    """For ``condbench run --dry-run``: one line per model whose checkpoint is not on disk, saying where it was
    looked for. Nothing is downloaded (the lookup runs as in offline mode)."""
    lines = []
    saved = os.environ.get("CONDBENCH_OFFLINE")
    os.environ["CONDBENCH_OFFLINE"] = "1"
    try:
        for name in models:
            try:
                model_entry(name).resolve_options(suite.model_options.get(name, {}))
            except (CheckpointNotFoundError, FileNotFoundError) as error:
                # the lookup ran offline; a real run would try the download, so the message does not say it is off
                lines.append(f"{name}: {str(error).splitlines()[0].replace(' and downloads are off (offline mode)', '')}")
    finally:
        if saved is None:
            del os.environ["CONDBENCH_OFFLINE"]
        else:
            os.environ["CONDBENCH_OFFLINE"] = saved
    return lines


def check_inputs(suite: Suite, log: Callable[[str], None] = print, tasks: Optional[dict[str, Any]] = None) -> Suite:
    """``suite`` restricted to the models whose checkpoints resolve; raises if a task input or every model is missing.

    ``tasks`` are the task objects the run will use (what the checks load, they keep); built here if not given.
    """
    missing: list[MissingInput] = []
    for task_name in suite.tasks:
        task = tasks[task_name] if tasks is not None else load_task(task_name, **suite.task_options)
        for check in getattr(task, "required_inputs", lambda: [])():
            try:
                check()
            except (CheckpointNotFoundError, FileNotFoundError) as error:
                missing.append(MissingInput(f"task {task_name}", str(error)))
    present = []
    for name in suite.models:
        entry = model_entry(name)
        try:
            entry.resolve_options(suite.model_options.get(name, {}))
            present.append(name)
        except (CheckpointNotFoundError, FileNotFoundError) as error:
            missing.append(MissingInput(f"model {name}", str(error)))
    task_missing = [m for m in missing if m.owner.startswith("task")]
    if task_missing or not present:
        reasons = (["task inputs are missing"] if task_missing else []) + ([] if present else ["no model has its checkpoint"])
        lines = [f"suite {suite.name!r} cannot run: {len(missing)} file(s) missing ({'; '.join(reasons)}). Provide them and "
                 "run again (set CONDBENCH_CACHE to use another cache directory; model paths go in the suite's "
                 "model_options as ckpt: PATH, pipeline folders as path: DIR; the README lists every file of each task "
                 "and, for imagenet, a suite snippet that provides them all):"]
        lines += [f"\n[{m.owner}] {m.message}" for m in missing]
        raise MissingInputsError("\n".join(lines))
    for m in missing:
        log(f"skipping {m.owner}: {m.message.splitlines()[0]}")
    if len(present) == len(suite.models):
        return suite
    return Suite(**{**suite.__dict__, "models": present})
