"""The test suite's network guard (tests/network_guard.py, installed by conftest.py): it fires in the tests'
process and in their Python subprocesses, it records attempts the code under test swallows, and loopback stays open."""
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

from .network_guard import NetworkAccessError, is_loopback


def test_a_connection_to_a_remote_host_is_refused_and_recorded(network_guard):
    with pytest.raises(NetworkAccessError, match="name lookup of example.com:80"):
        socket.create_connection(("example.com", 80), timeout=1)
    with pytest.raises(NetworkAccessError, match="connect to 93.184.215.14:443"):
        socket.socket().connect(("93.184.215.14", 443))
    try:  # code that swallows every error still leaves the attempt on record (the test would fail)
        urllib.request.urlopen("https://huggingface.co/api/models", timeout=1)
    except Exception:
        pass
    attempts = network_guard.take()
    assert len(attempts) == 3 and "huggingface.co:443" in attempts[2]
    with pytest.raises(NetworkAccessError):  # still recorded after a take
        socket.getaddrinfo("pypi.org", 443)
    assert len(network_guard.take()) == 1


def test_a_python_subprocess_is_guarded_and_reports_its_attempt(network_guard):
    child = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('pypi.org', 443))"],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode != 0 and "NetworkAccessError: network access in a test" in child.stderr
    attempts = network_guard.take()
    assert len(attempts) == 1 and attempts[0].startswith("[subprocess ") and "pypi.org:443" in attempts[0]


def test_loopback_stays_open(network_guard):
    server = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Thread(target=lambda: server.accept()[0].close())
    accepted.start()
    with socket.create_connection(("localhost", server.getsockname()[1]), timeout=5):
        pass
    accepted.join(timeout=5)
    server.close()
    assert network_guard.take() == []
    assert all(map(is_loopback, [None, "", "localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0", b"127.0.0.2"]))
    assert not any(map(is_loopback, ["example.com", "10.0.0.1", "8.8.8.8", "2001:db8::1"]))
