"""Run at the start of every Python subprocess of the tests (conftest.py puts this folder on PYTHONPATH): the
network guard of ``tests/network_guard.py``, reporting attempts to the session's log."""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "condbench_tests_network_guard", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "network_guard.py"))
_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_guard)
_guard.install(_guard.append_to_log)
