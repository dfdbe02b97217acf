"""Claim files: a cross-node "I am computing this shard" marker for caches on network file systems.

``flock`` (the cache's first lock) is released by the OS when its holder dies, but whether it reaches other
nodes depends on the file system and its mount options (NFS: yes unless mounted ``nolock``/``local_lock``;
Lustre: only with ``-o flock``; BeeGFS: only with global file locks on). A claim file works wherever an
exclusive create (``O_CREAT | O_EXCL``) is atomic on the server, which NFSv3+, Lustre, GPFS and BeeGFS all
guarantee. It holds the claimer's host and pid, and a heartbeat thread refreshes its mtime every
``HEARTBEAT_S`` while the claim is held. A claim is stale, and taken over, when its holder is a dead process on
this host, or when its mtime is older than ``STALE_CLAIM_S`` (a holder on another node that died).

Claims only prevent duplicate work: a shard that two nodes compute anyway (a race on a stale claim) is written
atomically by both, with the same content, and a reader never sees a partial file.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator

from .storage import HOST, _writer_alive

HEARTBEAT_S = 30.0
STALE_CLAIM_S = 300.0  # ten missed heartbeats
POLL_S = 1.0


def _is_stale(path: Path, stale_after: float) -> bool:
    """Whether the claim at ``path`` was left by a holder that is gone."""
    try:
        age = time.time() - path.stat().st_mtime
        holder = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):  # being written this instant, or damaged: judge by age alone
        return age > stale_after
    if holder.get("host") == HOST and not _writer_alive(int(holder.get("pid", -1))):
        return True
    return age > stale_after


def _try_create(path: Path) -> bool:
    """Create the claim file exclusively; False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump({"host": HOST, "pid": os.getpid(), "since": time.time()}, handle)
    return True


def _take_over(path: Path, stale_after: float) -> bool:
    """Remove a stale claim (moved aside first, so only one taker removes it); True if one was removed."""
    if not _is_stale(path, stale_after):
        return False
    aside = path.with_name(f"{path.name}.stale.{HOST}.{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # another taker was first
    aside.unlink(missing_ok=True)
    return True


class _Heartbeat(threading.Thread):
    """Touches the claim file every ``HEARTBEAT_S`` until stopped, so other nodes see a live holder."""

    def __init__(self, path: Path, interval: float):
        super().__init__(daemon=True)
        self.path, self.interval, self.stopped = path, interval, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            with contextlib.suppress(OSError):
                os.utime(self.path)


@contextlib.contextmanager
def claim(path: str | Path, wait: bool, stale_after: float = STALE_CLAIM_S,
          heartbeat: float = HEARTBEAT_S) -> Iterator[bool]:
    """Hold the claim at ``path``; yields False at once if another live holder has it and ``wait`` is False,
    else waits (polling) until it is released or goes stale."""
    path = Path(path)
    while not _try_create(path):
        if _take_over(path, stale_after):
            continue
        if not wait:
            yield False
            return
        time.sleep(POLL_S)
    beat = _Heartbeat(path, heartbeat)
    beat.start()
    try:
        yield True
    finally:
        beat.stopped.set()
        beat.join()
        path.unlink(missing_ok=True)
