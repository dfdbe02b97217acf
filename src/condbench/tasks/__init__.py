"""Task plugins: the conditions to sample, the reference data and the metric set of each task."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset_path(name: str) -> Path:
    """Where a shipped asset of the package lives."""
    return Path(str(resources.files("condbench") / "assets" / name))
