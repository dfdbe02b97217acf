"""Start-up time of the commands a user types first (run with `tox -e bench`; printed, never asserted).

Each command runs in a fresh interpreter, as from a shell: --help, --version, list, validate, and the
missing-files preflight (`run imagenet` offline with an empty cache, which stops before any work).
Whether --help imports torch is a behaviour, tested in tests/test_cli_messages.py.
"""
import os
import subprocess
import sys

import pytest

COMMANDS = {"help": ["--help"], "version": ["--version"], "list": ["list"], "validate": ["validate", "quickstart"],
            "preflight": ["run", "imagenet", "-o", "{tmp}/run"]}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_startup(benchmark, tmp_path, name):
    argv = [a.format(tmp=tmp_path) for a in COMMANDS[name]]
    env = {**os.environ, "CONDBENCH_CACHE": str(tmp_path / "cache"), "CONDBENCH_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")}

    def command():
        return subprocess.run([sys.executable, "-m", "condbench", *argv], capture_output=True, text=True, env=env)

    done = benchmark.pedantic(command, rounds=3, iterations=1)
    print(f"\ncondbench {' '.join(argv)}: exit {done.returncode}")
