"""A content-addressed store of finished shards, safe for concurrent writers.

A shard's key is the SHA-256 of everything that determines its content (adapter config and checkpoint
hash, sampler settings, policy, task settings, seed, index range, what is stored), so a changed model
or policy can never reuse another's samples. Files are written to a temporary name and renamed, so a
reader sees a whole shard or none; an advisory lock per key (released by the OS when a process dies,
even by SIGKILL) keeps two runs from computing the same shard.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

CACHE_FORMAT = 1


def cache_key(**parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts``."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ShardCache:
    """``root/ab/abcdef....npz`` files keyed by :func:`cache_key`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Optional[dict[str, np.ndarray]]:
        """The arrays of a finished shard, or None (a file that cannot be read counts as absent)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            return None

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write atomically: a temporary file in the same directory, fsynced, then renamed."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @contextlib.contextmanager
    def lock(self, key: str, wait: bool) -> Iterator[bool]:
        """Hold the key's lock; yields False at once if another process holds it and ``wait`` is False."""
        lock_path = self.path(key).with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
