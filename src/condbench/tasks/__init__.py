"""Task plugins: the conditions to sample, the reference data and the metric set of each task."""
from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    import torch


def asset_path(name: str) -> Path:
    """Where a shipped asset of the package lives."""
    return Path(str(resources.files("condbench") / "assets" / name))


def input_checks(files: type, task_options: dict[str, Any]) -> list[Callable[[], object]]:
    """The file checks of ``files`` (a task's torch-free description of its files, with ``file_checks()``) built
    from the task options it takes; the other options are the task's own, checked when the task is built."""
    taken = inspect.signature(files).parameters
    return files(**{key: value for key, value in task_options.items() if key in taken}).file_checks()


def metric_device(device: Optional[str]) -> "torch.device":
    """The device the metric networks and the bootstrap run on: ``device``, else CUDA when there is one."""
    import torch  # here, so that the task package imports without torch

    try:
        chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as error:
        raise ValueError(f"task option device: {device!r} is not a torch device ({error}); use e.g. 'cuda', "
                         "'cuda:1' or 'cpu'") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"task option device: {device!r} asks for CUDA, which this torch cannot use here; "
                         "use 'cpu' or leave the option out")
    return chosen
