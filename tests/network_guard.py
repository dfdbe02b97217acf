"""The tests' network guard: opening a connection to any host but this machine's loopback fails the test.

conftest.py installs it for the whole session and fails every test during which an attempt was made, even one
that the code under test caught and swallowed (a hub client falling back to its cache, a download whose error is
turned into a message). Python subprocesses started by tests (the CLI) install it too, through
``offline_site/sitecustomize.py`` on ``PYTHONPATH``; they report their attempts in the file named by
:data:`LOG_ENV`. Loopback stays open (local test servers, torch.distributed).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from typing import Callable

LOG_ENV = "CONDBENCH_TEST_NETWORK_LOG"  # where subprocesses append their attempts, one per line
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "offline_site")
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class NetworkAccessError(RuntimeError):
    """Raised instead of opening a non-loopback connection (not an OSError, so no fallback swallows it quietly)."""


def is_loopback(host) -> bool:
    """True for the hosts a test may reach: None/empty (a local bind), loopback names and addresses."""
    if host is None:
        return True
    name = (host.decode(errors="replace") if isinstance(host, bytes) else str(host)).strip("[]").lower()
    if name in ("", *LOOPBACK_NAMES) or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def install(record: Callable[[str], None]) -> None:
    """Patch socket's connect, connect_ex and getaddrinfo (create_connection goes through them) so a
    non-loopback host is refused with :class:`NetworkAccessError` after ``record(description)``."""
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def refuse(what: str, host, port) -> None:
        message = (f"network access in a test: {what} {host}:{port} (tests run offline; the guard is "
                   f"tests/network_guard.py)")
        record(message)
        raise NetworkAccessError(message)

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            refuse("connect to", *address[:2])
        return connect(self, address)

    def guarded_connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            refuse("connect to", *address[:2])
        return connect_ex(self, address)

    def guarded_getaddrinfo(host, port, *args, **kwargs):
        if not is_loopback(host):
            refuse("name lookup of", host, port)
        return getaddrinfo(host, port, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = guarded_connect, guarded_connect_ex
    socket.getaddrinfo = guarded_getaddrinfo


def append_to_log(message: str) -> None:
    """A subprocess's record: one line in the file named by :data:`LOG_ENV` (when the test session set it)."""
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"[subprocess {os.getpid()}] {message}\n")


class NetworkGuard:
    """The session's guard: the attempts made in this process and reported by its subprocesses."""

    def __init__(self, log_path: str):
        self.log_path = log_path
        self.attempts: list[str] = []
        open(log_path, "w").close()

    def take(self) -> list[str]:
        """Every attempt since the last call (in this process and its subprocesses), then forget them."""
        with open(self.log_path, "r+", encoding="utf-8") as log:
            reported = log.read().splitlines()
            log.seek(0)
            log.truncate()
        taken = self.attempts + reported
        self.attempts.clear()  # in place: the installed guard appends to this very list
        return taken
