"""A content-addressed store of finished shards, safe for concurrent writers, that never serves a wrong file.

A shard's key is the SHA-256 of everything that determines its content (adapter config and checkpoint
hash, sampler settings, policy, task settings, seed, index range, what is stored), so a changed model
or policy can never reuse another's samples. Each file also holds its own key and the SHA-256 of its
arrays: a file that is unreadable (truncated, bit-flipped), holds another key (copied or renamed over) or
fails its checksum is never used, nor is one whose content is not what its reader expects (a wrong number of rows,
NaN rows: what a writer's bug leaves behind a valid checksum, see :func:`content_problem`); it is moved to
``quarantine/``, reported once, and counts as absent. A file that cannot be moved aside stops the run with one
line naming it (it is never overwritten). A read-only cache serves ``score``, which writes nothing there.
Files are written atomically (:mod:`condbench.storage`), so a reader sees a whole shard or none; an
advisory lock per key (released by the OS when a process dies, even by SIGKILL) and a claim file (for nodes
sharing the folder over a network file system, see :meth:`ShardCache.lock`) keep two runs from computing the
same shard.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np

from .claims import claim
from .storage import atomic_save_npz, move_aside, readable_folder, storage_error

CACHE_FORMAT = 2  # 2: files carry their key and checksum
KEY_FIELD, CHECKSUM_FIELD = "_cache_key", "_cache_sha256"


def cache_key(**parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts``."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the names, dtypes, shapes and bytes of ``arrays``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class CorruptShardError(ValueError):
    """A cache file that must not be used (unreadable, another key, or a failed checksum)."""


def read_shard(path: Path, key: str) -> dict[str, np.ndarray]:
    """The arrays of the shard file at ``path``, checked to hold ``key`` with an intact checksum."""
    try:
        with np.load(path) as data:  # no pickles: allow_pickle is False
            arrays = {k: data[k] for k in data.files}
    except Exception as error:  # zipfile, zlib and numpy each raise their own types for a damaged file
        raise CorruptShardError(f"unreadable ({error.__class__.__name__}: {str(error)[:200]})") from None
    stored_key, stored_sum = arrays.pop(KEY_FIELD, None), arrays.pop(CHECKSUM_FIELD, None)
    if stored_key is None or stored_sum is None:
        raise CorruptShardError("it carries no key or checksum (not a condbench shard)")
    if str(stored_key) != key:
        raise CorruptShardError(f"it holds another shard (key {str(stored_key)[:12]}...)")
    if str(stored_sum) != arrays_sha256(arrays):
        raise CorruptShardError("its arrays fail their checksum")
    return arrays


Check = Callable[[dict[str, np.ndarray]], Optional[str]]  # a shard's arrays -> what is wrong with them, or None


def content_problem(arrays: dict[str, np.ndarray], rows: Mapping[str, int], finite: tuple[str, ...] = (),
                    placeholders: tuple[str, ...] = ()) -> Optional[str]:
    """What is wrong with a shard's content, or None: an array of ``rows`` missing or with another number of rows,
    or a row holding NaN or infinity in an array of ``finite`` or ``placeholders`` (in the latter a column NaN in
    every row is a value its producer did not compute, as :func:`condbench.finite.require_finite` allows)."""
    for name, count in rows.items():
        if name not in arrays:
            return f"it holds no {name!r}"
        if len(arrays[name]) != count:
            return f"its {name!r} holds {len(arrays[name])} rows, expected {count}"
    for name in (*finite, *placeholders):
        values = arrays.get(name)
        if values is None or not np.issubdtype(values.dtype, np.floating) or not len(values):
            continue
        flat = values.reshape(len(values), -1)  # (N, F)
        good = np.isfinite(flat)
        if name in placeholders:
            good |= np.isnan(flat).all(axis=0, keepdims=True)
        bad = np.flatnonzero(~good.all(axis=1))
        if len(bad):
            return f"its {name!r} has NaN or infinite values in {len(bad)} row(s) (first: row {bad[0]})"
    return None


class ShardCache:
    """``root/ab/abcdef....npz`` files keyed by :func:`cache_key`; bad files go to ``root/quarantine/``.

    ``read_only``: the cache is only read (``score``): its folder is neither created nor probed.
    """

    def __init__(self, root: str | Path, log: Callable[[str], None] = print, read_only: bool = False):
        self.root = Path(root)
        self.log = log
        self.quarantined: dict[str, str] = {}  # key -> why its file was moved aside (this process)
        self._said_no_flock = False
        if read_only:
            readable_folder(self.root, "cache folder")
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise storage_error(error, "create the cache folder", self.root) from None

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def folders(self) -> list[Path]:
        """The folders that hold shard files (and, after a killed write, their temporaries)."""
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.is_dir() and p.name != "quarantine"]

    def get(self, key: str, check: Optional[Check] = None) -> Optional[dict[str, np.ndarray]]:
        """The arrays of a finished shard, or None: absent, or a bad file (moved aside and reported); ``check``
        says what is wrong with the content its reader expects (e.g. :func:`content_problem`), None if nothing."""
        path = self.path(key)
        try:
            seen = path.stat()
        except FileNotFoundError:
            return None
        try:
            arrays = read_shard(path, key)
            problem = check(arrays) if check is not None else None
            if problem is not None:
                raise CorruptShardError(f"{problem}; its checksum is valid: a writer's bug")
            return arrays
        except CorruptShardError as error:
            self._quarantine(key, path, seen, str(error))
            return None

    def _quarantine(self, key: str, path: Path, seen: os.stat_result, why: str) -> None:
        """Move the bad file aside, unless another process already replaced it with a new one."""
        try:
            now = path.stat()
        except FileNotFoundError:
            return  # another process moved it first and reported it
        if (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            return  # rewritten since we read it: not the file we judged
        target = move_aside(path, self.root / "quarantine", f"cache file {path}", why)
        if target is None:
            return
        self.quarantined[key] = why
        self.log(f"cache file {path} is not used: {why}; moved to {target} "
                 "(it counts as missing: `run` computes it again)")

    def quarantine_reason(self, key: str) -> Optional[str]:
        """Why the file of ``key`` was moved aside (by this process, or earlier: then only that it was)."""
        if key in self.quarantined:
            return self.quarantined[key]
        if any((self.root / "quarantine").glob(f"{key}.*")):
            return f"an unusable file was moved aside earlier, see {self.root / 'quarantine'}"
        return None

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write atomically, with the key and the arrays' checksum inside the file."""
        stamp = {KEY_FIELD: np.array(key), CHECKSUM_FIELD: np.array(arrays_sha256(arrays))}
        atomic_save_npz(self.path(key), {**arrays, **stamp})

    @contextlib.contextmanager
    def lock(self, key: str, wait: bool) -> Iterator[bool]:
        """Hold the key's lock; yields False at once if another process holds it and ``wait`` is False.

        Two locks: ``flock`` on ``KEY.lock`` (released by the OS when its holder dies; on some network file
        systems it reaches only this node) and then a claim file ``KEY.claim`` (:mod:`condbench.claims`: an
        exclusive create, which every network file system makes atomic, with a heartbeat and a stale timeout).
        """
        lock_path = self.path(key).with_suffix(".lock")
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock_path, "a")
        except OSError as error:
            raise storage_error(error, "create the lock file", lock_path) from None
        with handle:
            locked = True
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            except OSError as error:  # a file system without flock (Lustre without -o flock): the claim alone
                locked = False
                if not self._said_no_flock:
                    self._said_no_flock = True
                    self.log(f"cache folder {self.root}: flock is not supported here ({error.strerror}); "
                             "claim files alone keep processes from computing the same shard")
            try:
                with claim(lock_path.with_suffix(".claim"), wait) as mine:  # other nodes, where flock is node-local
                    yield mine
            finally:
                if locked:
                    fcntl.flock(handle, fcntl.LOCK_UN)
