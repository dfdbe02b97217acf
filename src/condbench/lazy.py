"""A module imported on its first attribute use, for modules whose import must stay torch-free.

``from .lazy import torch`` gives a stand-in that imports torch the first time an attribute is read
(``torch.where``...), so parsing a policy spec or reading a suite does not pay torch's import.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands in for module ``name``; imports it on the first attribute read, then keeps what was read."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        module: ModuleType = importlib.import_module(self._name)
        value = getattr(module, attribute)
        setattr(self, attribute, value)  # later reads are plain attribute reads
        return value

    def __repr__(self) -> str:
        return f"<lazily imported module {self._name!r}>"


torch = LazyModule("torch")
