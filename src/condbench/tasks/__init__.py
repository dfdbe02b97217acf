"""Task plugins: the conditions to sample, the reference data and the metric set of each task."""
from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path
from typing import Any, Callable


def asset_path(name: str) -> Path:
    """Where a shipped asset of the package lives."""
    return Path(str(resources.files("condbench") / "assets" / name))


def input_checks(files: type, task_options: dict[str, Any]) -> list[Callable[[], object]]:
    """The file checks of ``files`` (a task's torch-free description of its files, with ``file_checks()``) built
    from the task options it takes; the other options are the task's own, checked when the task is built."""
    taken = inspect.signature(files).parameters
    return files(**{key: value for key, value in task_options.items() if key in taken}).file_checks()
