"""Every file condbench writes goes through here: atomic writes, safe appends, stale-temporary cleanup, and
file-system errors that say in one line what failed and where.

A file is written under a temporary name in its own folder (``.NAME.HOST.PID.RANDOM.tmp``), fsynced and
renamed over the target, so a reader sees the old file or the new one, never a part; a write that fails
removes its temporary. A killed writer leaves its temporary behind: :func:`clean_stale_temporaries` removes
those whose writer (same host, pid in the name) is dead, or that nobody touched for a day, and never one a
live writer on this or another host may still be filling.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional

if TYPE_CHECKING:
    import numpy as np

Log = Callable[[str], None]

HOST = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()) or "host"
STALE_AFTER_S = 24 * 3600  # a temporary untouched for this long has no live writer, whatever its name says
_OURS = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


class StorageError(RuntimeError):
    """A file or folder could not be written or created; the message says which and why, in one line."""


def reason_for(error: OSError, path: Path) -> str:
    """Why ``path`` could not be used: a file standing where a folder must be, or the system's own words."""
    for place in (path, *path.parents):
        if place.exists():
            if not place.is_dir() and (place != path or error.errno == errno.EEXIST):  # EEXIST: path made a folder
                return f"{place} is a file, not a folder"
            break
    if error.errno == errno.ENOSPC:
        return "no space left on the device"
    return error.strerror or str(error)


def storage_error(error: OSError, action: str, path: Path) -> StorageError:
    return StorageError(f"cannot {action} {path}: {reason_for(error, Path(path))}")


def ensure_folder(path: str | Path, what: str) -> Path:
    """Create ``path`` if needed and check that files can be written in it (before any work is done)."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise StorageError(f"cannot use {path} as the {what}: it is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".condbench-probe."):
            pass
    except OSError as error:
        raise StorageError(f"cannot use {path} as the {what}: {reason_for(error, path)}") from None
    return path


def readable_folder(path: str | Path, what: str) -> Path:
    """``path`` if it is a folder or absent, for a command that only reads it (``score`` on a read-only cache):
    nothing is created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StorageError(f"cannot use {path} as the {what}: it is a file, not a folder")
    return path


def move_aside(path: Path, folder: Path, what: str, why: str) -> Optional[Path]:
    """Move the unusable file ``path`` (``what``, bad because ``why``) into ``folder`` under a new name, keeping it
    for inspection; returns where, or None if it is gone already (another process moved it). A file that cannot
    be moved is one StorageError line: it is never overwritten in place."""
    target = folder / f"{path.name}.{os.getpid()}.{time.time_ns()}.bad"
    try:
        folder.mkdir(exist_ok=True)
        os.replace(path, target)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StorageError(f"{what} is not usable ({why}) and cannot be moved aside to {folder}: "
                           f"{reason_for(error, folder)}; make that a writable folder (or move the file away "
                           "yourself) and run again") from None
    return target


def temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _process_umask() -> int:
    """The umask, read once at import (setting it is the only way to read it, and not thread-safe later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _process_umask()


def _commit(tmp: Path, target: Path) -> None:
    """Make the temporary durable, give it the permissions of any new file (some writers, safetensors among
    them, create 0600 files) and put it in place of the target."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o666 & ~UMASK)
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s content to; on success it replaces ``target`` at once.

    Any failure (disk full, an exception, Ctrl-C) removes the temporary and leaves ``target`` as it was.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(error, "write", target) from None
    tmp = temporary_name(target)
    try:
        yield tmp
        _commit(tmp, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(error, OSError):
            raise storage_error(error, "write", target) from None
        raise


def atomic_write(target: str | Path, data: bytes | str) -> Path:
    """Write bytes (or UTF-8 text) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(target)


def atomic_save_npz(target: str | Path, arrays: dict[str, np.ndarray], compressed: bool = False) -> Path:
    """``np.savez`` (or ``savez_compressed``) to ``target`` atomically."""
    import numpy as np

    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:  # a handle: np.savez would add ".npz" to a path
            (np.savez_compressed if compressed else np.savez)(handle, **arrays)
    return Path(target)


def _append(path: Path, data: bytes) -> None:
    """One ``write`` in append mode, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes written")
        os.fsync(fd)
    finally:
        os.close(fd)


def _repair_tail(path: Path, log: Log) -> None:
    """End ``path`` with a newline: a last line without one (left by a killed append) is cut off, unless it
    is a whole JSON record (then only its newline was missing)."""
    try:
        with open(path, "rb+") as handle:
            data = handle.read()
            if not data or data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            try:
                json.loads(data[keep:])
                handle.write(b"\n")
                torn = False
            except ValueError:
                handle.truncate(keep)
                torn = True
            os.fsync(handle.fileno())
    except FileNotFoundError:
        return
    if torn:
        log(f"warning: {path}: its last line was torn ({len(data) - keep} bytes of an unfinished write); removed it")


def append_line(path: str | Path, line: str, log: Log = print) -> None:
    """Append one line; a failed append (disk full) is undone, so the file never ends in a torn line."""
    path = Path(path)
    _repair_tail(path, log)
    size = path.stat().st_size if path.exists() else 0
    try:
        _append(path, (line.rstrip("\n") + "\n").encode("utf-8"))
    except OSError as error:
        with contextlib.suppress(OSError):
            os.truncate(path, size)
        raise storage_error(error, "append to", path) from None


def read_jsonl(path: str | Path, log: Log = print) -> list[dict]:
    """The records of a JSON-lines file; a torn last line is ignored (and cut off) with a warning, any other
    unreadable line is skipped with a warning naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    _repair_tail(path, log)
    records = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            records.append(json.loads(text))
        except json.JSONDecodeError as error:
            log(f"warning: {path}, line {number}: not a JSON record ({error.msg}); skipped")
    return records


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_stale(path: Path, now: Optional[float] = None) -> bool:
    """Whether a temporary file was left by a writer that is gone (see the module docstring)."""
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_AFTER_S:
        return True
    match = _OURS.match(path.name)
    return bool(match) and match["host"] == HOST and not _writer_alive(int(match["pid"]))


def clean_stale_temporaries(folders: list[Path], log: Log = print) -> int:
    """Remove stale temporaries (``.*.tmp``) directly inside each of ``folders``; returns how many."""
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            if path.is_file() and is_stale(path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    if removed:
        log(f"removed {removed} temporary file(s) left by killed writes")
    return removed
