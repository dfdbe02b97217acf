"""Claim files (``condbench.claims``): the cross-node lock of the shard cache, with real processes on this host.

Two processes racing for one claim: exactly one wins; a waiter gets it once released. Stale claims (a dead holder
on this host, or another host's claim that stopped beating) are taken over; live ones are respected. The cache's
lock still excludes through the claim where flock is not supported.
"""
import errno
import fcntl
import json
import multiprocessing
import os
import time
from pathlib import Path

from condbench.cache import ShardCache
from condbench.claims import claim


def race(path: str, log: str, start_at: float) -> None:
    """Wait for the common start time, try to claim, and append 'won' or 'lost' (holding 1 s when won)."""
    time.sleep(max(0.0, start_at - time.time()))
    with claim(path, wait=False) as mine:
        with open(log, "a") as handle:
            handle.write(("won" if mine else "lost") + "\n")
        if mine:
            time.sleep(1.0)


def waiter(path: str, log: str) -> None:
    with claim(path, wait=True) as mine:
        with open(log, "a") as handle:
            handle.write(f"got {mine} {time.time()}\n")


def test_two_processes_racing_for_a_claim_one_wins(tmp_path):
    fork = multiprocessing.get_context("fork")
    path, log = tmp_path / "k.claim", tmp_path / "log"
    start_at = time.time() + 1.0  # both processes are up before the race
    procs = [fork.Process(target=race, args=(str(path), str(log), start_at)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(log.read_text().split()) == ["lost", "won"]
    assert not path.exists()  # released


def test_a_waiting_process_gets_the_claim_when_it_is_released(tmp_path):
    path, log = tmp_path / "k.claim", tmp_path / "log"
    fork = multiprocessing.get_context("fork")
    with claim(path, wait=False) as mine:
        assert mine
        other = fork.Process(target=waiter, args=(str(path), str(log)))
        other.start()
        time.sleep(1.5)
        assert not log.exists()  # still waiting
        released = time.time()
    other.join(60)
    got, when = log.read_text().split()[1:]
    assert got == "True" and float(when) >= released


def write_claim(path: Path, host: str, pid: int, age: float = 0.0) -> None:
    path.write_text(json.dumps({"host": host, "pid": pid, "since": time.time() - age}))
    os.utime(path, (time.time() - age, time.time() - age))


def test_stale_claims_are_taken_over_and_live_ones_respected(tmp_path):
    from condbench.storage import HOST

    dead = multiprocessing.get_context("fork").Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    path = tmp_path / "k.claim"
    write_claim(path, HOST, dead.pid)  # this host, holder dead: stale at once
    with claim(path, wait=False) as mine:
        assert mine and json.loads(path.read_text())["pid"] == os.getpid()
    write_claim(path, "other-node", 1)  # another node, beating: respected
    with claim(path, wait=False, stale_after=60) as mine:
        assert not mine and json.loads(path.read_text())["host"] == "other-node"
    write_claim(path, "other-node", 1, age=120)  # another node, silent for longer than stale_after: taken over
    with claim(path, wait=False, stale_after=60) as mine:
        assert mine and json.loads(path.read_text())["host"] == HOST


def test_the_holder_keeps_its_claim_fresh(tmp_path):
    path = tmp_path / "k.claim"
    with claim(path, wait=False, heartbeat=0.1) as mine:
        assert mine
        os.utime(path, (time.time() - 1000, time.time() - 1000))
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 5


def test_cache_lock_excludes_through_the_claim_where_flock_is_not_supported(tmp_path, monkeypatch):
    messages = []
    cache = ShardCache(tmp_path, log=messages.append)
    key = "ab" * 32

    def no_flock(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    cache.path(key).parent.mkdir()
    write_claim(cache.path(key).with_suffix(".claim"), "other-node", 1)
    with cache.lock(key, wait=False) as mine:
        assert not mine
    cache.path(key).with_suffix(".claim").unlink()
    with cache.lock(key, wait=False) as mine:
        assert mine
    assert len(messages) == 1 and "flock is not supported" in messages[0]
