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

import yaml

from .checkpoints import CheckpointNotFoundError, FileSetting
from .registry import load_adapter, load_task, model_entry, task_entry
from .suites import Suite


@dataclass(frozen=True)
class MissingInput:
    """A file a run needs and does not have: what it is, the message that says how to provide it, and where a
    user gives it (for the snippet that ends the message)."""

    owner: str  # the model or task that needs it
    message: str
    settings: tuple[FileSetting, ...] = ()


class MissingInputsError(CheckpointNotFoundError):
    """One or more files a run needs are missing; the message lists all of them."""


def load_tasks(suite: Suite) -> dict[str, Any]:
    """One task object per task of the suite, built with its task_options (a wrong option names the key)."""
    return {name: build_task(suite, name) for name in suite.tasks}


def build_task(suite: Suite, name: str) -> Any:
    """Task ``name`` built with the suite's task_options (a wrong option names the key)."""
    check_task_options(suite, name)
    try:
        return load_task(name, **suite.task_options)
    except TypeError as error:  # an option the task does not take, or a value of the wrong kind
        raise ValueError(f"suite {suite.name!r}: key 'task_options' does not fit task {name!r}: {error}") from None


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


def _missing(owner: str, error: FileNotFoundError) -> MissingInput:
    return MissingInput(owner, str(error), getattr(error, "settings", ()))


def task_input_checks(suite: Suite, name: str, tasks: Optional[dict[str, Any]] = None) -> list[Callable[[], object]]:
    """One check per file task ``name`` reads: from its task object in ``tasks`` when given, else from its registry
    entry's ``inputs`` (without building the task, so without torch), else from the task built now."""
    if tasks is not None:
        task = tasks[name]
    elif task_entry(name).inputs is not None:
        return task_entry(name).inputs(**suite.task_options)
    else:
        task = build_task(suite, name)
    return getattr(task, "required_inputs", lambda: [])()


def restrict(suite: Suite, cells: list) -> Suite:
    """``suite`` cut down to the tasks and models of ``cells`` (what a run with filters needs)."""
    return Suite(**{**suite.__dict__, "task": sorted({c.task for c in cells}),
                    "models": [m for m in suite.models if m in {c.model for c in cells}]})


def check_inputs(suite: Suite, log: Callable[[str], None] = print, tasks: Optional[dict[str, Any]] = None) -> Suite:
    """``suite`` restricted to the models whose checkpoints resolve; raises if a task input or every model is missing.

    ``tasks`` are the task objects the run will use (what the checks load, they keep); without them the files are
    checked as :func:`task_input_checks` says (for imagenet, without importing torch).
    """
    missing: list[MissingInput] = []
    for task_name in suite.tasks:
        for check in task_input_checks(suite, task_name, tasks):
            try:
                check()
            except (CheckpointNotFoundError, FileNotFoundError) as error:
                missing.append(_missing(f"task {task_name}", error))
    present = []
    for name in suite.models:
        entry = model_entry(name)
        try:
            entry.resolve_options(suite.model_options.get(name, {}))
            present.append(name)
        except (CheckpointNotFoundError, FileNotFoundError) as error:
            missing.append(_missing(f"model {name}", error))
    task_missing = [m for m in missing if m.owner.startswith("task")]
    if task_missing or not present:
        reasons = (["task inputs are missing"] if task_missing else []) + ([] if present else ["no model has its checkpoint"])
        files = sum(max(1, len(m.settings)) for m in missing)
        at_end = "the lines at the end provide them all" if all(m.settings for m in missing) else \
            "the lines at the end provide those that a suite key or a variable provides"
        lines = [f"suite {suite.name!r} cannot run: {files} file(s) missing ({'; '.join(reasons)}). Provide them and "
                 "run again (set CONDBENCH_CACHE to use another cache directory; model paths go in the suite's "
                 f"model_options as ckpt: PATH, pipeline folders as path: DIR; {at_end}):"]
        lines += [f"\n[{m.owner}] {m.message}" for m in missing]
        lines += [f"\n{snippet}"] if (snippet := provide_snippet(suite, missing)) else []
        raise MissingInputsError("\n".join(lines))
    for m in missing:
        log(f"skipping {m.owner}: {m.message.splitlines()[0]}")
    if len(present) == len(suite.models):
        return suite
    return Suite(**{**suite.__dict__, "models": present})


def provide_snippet(suite: Suite, missing: list[MissingInput]) -> str:
    """The suite lines (``task_options``, ``model_options``: the suite's own plus one key per missing file) and the
    environment variables that provide every missing file, to copy and paste; empty when no file has a setting."""
    settings = [s for m in missing for s in m.settings]
    if not settings:
        return ""
    blocks: dict[str, dict] = {"task_options": dict(suite.task_options),
                               "model_options": {k: dict(v) for k, v in suite.model_options.items()}}
    for setting in (s for s in settings if not s.env):
        section, *keys = setting.keys
        target = blocks[section]
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = setting.value
    notes = {f": {s.value}": s.note for s in settings if s.note and not s.env}
    text = "".join(yaml.safe_dump({section: blocks[section]}, sort_keys=False,
                                  default_flow_style=False if section == "task_options" else None)  # a model a line
                   for section in blocks if blocks[section])
    which = "them all" if all(m.settings for m in missing) else "those files (the others say how above)"
    lines = [f"To provide {which}, replace the suite's task_options and model_options with these lines, each "
             "/path/to/ being where you put that file (keep only the models you have):", ""]
    lines += [line + next((f"  # {note}" for end, note in notes.items() if line.endswith(end)), "")
              for line in text.splitlines()]
    exports: dict[str, list[FileSetting]] = {}
    for setting in (s for s in settings if s.env):
        exports.setdefault(setting.keys[0], []).append(setting)
    if exports:
        lines += ["", "and set in the environment:"]
        for name, group in exports.items():
            files = ", ".join(dict.fromkeys(s.note for s in group if s.note))
            lines.append(f"export {name}={group[0].value}" + (f"  # holding {files}" if files else ""))
    return "\n".join(lines)
