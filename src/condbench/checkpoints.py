"""Safe checkpoint loading with errors that say what is wrong and how to fix it.

Nothing here unpickles code: ``.safetensors`` files are read with safetensors, everything else with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .storage import atomic_path

if TYPE_CHECKING:  # torch is imported where tensors are read, so that file lookups (the preflight) stay torch-free
    import torch
    from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the remedy."""


@dataclass(frozen=True)
class FileSetting:
    """Where a user gives a file that was not found, for the run's copy-paste snippet: the suite keys
    (``("model_options", "dit-xl-2", "ckpt")``, ``("task_options", "reference_batch")``) or, with ``env``, an
    environment variable (``("TORCH_HOME",)``); ``value`` a placeholder path; ``note`` what goes there (for a
    variable: the file's path inside the folder it names)."""

    keys: tuple[str, ...]
    value: str
    env: bool = False
    note: str = ""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A file that is not there; ``settings`` say where a user would give it (empty when no setting applies)."""

    def __init__(self, message: str, settings: tuple[FileSetting, ...] = ()):
        super().__init__(message)
        self.settings = tuple(settings)


class CheckpointMismatchError(CheckpointError):
    """The file loads but holds another model's weights (missing, unexpected or mis-shaped keys)."""


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def require_file(path: str | Path, what: str, how_to_provide: str, setting: Optional[FileSetting] = None) -> Path:
    """Return ``path`` if it is a file, else raise an error naming it, where it was looked for, and the remedy."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise CheckpointNotFoundError(
            f"{what} not found: {resolved.name!r} was looked for at {resolved.resolve()}.\n"
            f"How to provide it: {how_to_provide}", (setting,) if setting else ())
    return resolved


def read_metadata(path: str | Path) -> dict:
    """The string metadata of a safetensors file (empty for other formats)."""
    if Path(path).suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def load_state_dict(path: str | Path, key: Optional[str | tuple[str, ...]] = None,
                    only_prefixes: Optional[tuple[str, ...]] = None,
                    allow_numpy: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict without executing code.

    ``key`` picks a sub-dict (e.g. ``ema``; a tuple tries each in turn) when the file nests one.
    ``only_prefixes`` keeps just the tensors under those prefixes and reads no others: safetensors files
    are read key by key, torch files are memory-mapped, so a 3 GB checkpoint costs only what is kept.
    ``allow_numpy`` also accepts numpy arrays beside the tensors (training checkpoints that carry, say, their
    sampler's index arrays); they are rebuilt as data, no code is run.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                state = {k: handle.get_tensor(k) for k in handle.keys()
                         if only_prefixes is None or k.startswith(only_prefixes)}
        else:
            if not _torch_readable(path):
                raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or not a checkpoint (not "
                                      "a zip/pickle file torch can read). Check the path, or download it again.")
            state = _torch_load(path, allow_numpy)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refused to load {path}: torch's safe loader met something other than tensors ({_unpickler_reason(error)}). "
            "Either the file holds pickled objects, which could run code (re-save it as a plain state dict of "
            "tensors or as .safetensors), or it is damaged (download it again).") from None
    except Exception as error:  # torch, zipfile and safetensors each raise their own types for a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or not a checkpoint "
                              f"({error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
                              "Download it again.") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    for candidate in (key,) if isinstance(key, str) else (key or ()):
        if isinstance(state.get(candidate), dict):
            state = state[candidate]
            break
    if only_prefixes is not None and path.suffix != ".safetensors":
        state = {k: v.clone() for k, v in state.items() if k.startswith(only_prefixes)}  # detach from the mmap
    return state


# torch's legacy (pre-zip) format starts with a pickle header (0x80, protocol 2..5) and its magic number
# 0x1950a86a20f9469cfc6c pickled as a 10-byte LONG1 (opcode 0x8a); random bytes starting 0x80 are not it.
_LEGACY_MAGIC = bytes.fromhex("8a0a6cfc9c46f9206aa85019")


def _torch_readable(path: Path) -> bool:
    """Whether the file is in one of torch's formats: a zip archive (torch >= 1.6) or a legacy pickle that
    starts with torch's magic number."""
    import zipfile

    with open(path, "rb") as handle:
        head = handle.read(2 + len(_LEGACY_MAGIC))
    legacy = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") and head[2:] == _LEGACY_MAGIC
    return legacy or zipfile.is_zipfile(path)


def _unpickler_reason(error: Exception) -> str:
    """The line of torch's weights-only error that names what stopped it (its first lines are generic advice)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    specific = [line for line in lines if "WeightsUnpickler error" in line]
    return (specific or lines or [error.__class__.__name__])[0]


def _torch_load(path: Path, allow_numpy: bool = False) -> object:
    """``torch.load`` with ``weights_only=True``, memory-mapped when the file is a zip archive (only what is
    used is read). Training checkpoints often carry their ``argparse.Namespace`` of options, a plain record
    of attributes, which is allowed besides tensors; numpy arrays too with ``allow_numpy``."""
    import argparse
    import zipfile

    import torch

    safe = [argparse.Namespace] + (_numpy_array_globals() if allow_numpy else [])
    allowed = getattr(torch.serialization, "safe_globals", None)
    if allowed is None:  # torch < 2.5
        torch.serialization.add_safe_globals(safe)
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    with allowed(safe):
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))


def _numpy_array_globals() -> list:
    """What pickled numpy arrays and scalars name: the array rebuilders, under numpy 2's module names and, for
    files saved with numpy 1, under the old ``numpy.core`` names (torch >= 2.6 takes such (object, name) pairs)."""
    import numpy as np
    import torch

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtype_classes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")] \
        if hasattr(np, "dtypes") else []  # numpy >= 1.25 rebuilds dtypes through these classes
    plain = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar] + dtype_classes
    if tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 6):
        return plain
    return plain + [(multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                    (multiarray.scalar, "numpy.core.multiarray.scalar")]


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str, ignore_prefixes: tuple = (),
                only_prefixes: Optional[tuple[str, ...]] = None) -> None:
    """Load ``state`` into ``model`` requiring every key and shape to match, else say which disagree.

    With ``only_prefixes`` only those parts are checked and loaded (``assign``: a model built on the meta
    device gets real tensors there and nowhere else).
    """
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    expected = {k: v for k, v in model.state_dict().items() if only_prefixes is None or k.startswith(only_prefixes)}
    if only_prefixes is not None:
        state = {k: v for k, v in state.items() if k.startswith(only_prefixes)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                 for k in sorted(set(expected) & set(state)) if state[k].shape != expected[k].shape]
    if missing or unexpected or misshaped:
        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")

        lines = [f"{source} does not fit {type(model).__name__} (is it another model's checkpoint?):"]
        if missing:
            lines.append(f"  missing keys: {show(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys: {show(unexpected)}")
        if misshaped:
            lines.append(f"  shape mismatches: {show(misshaped)}")
        raise CheckpointMismatchError("\n".join(lines))
    if only_prefixes is None:
        model.load_state_dict(state, strict=True)
    else:
        model.load_state_dict(state, strict=False, assign=True)


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict) -> None:
    """Write a state dict with JSON-encoded metadata values, atomically (temp file then rename)."""
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=meta)
