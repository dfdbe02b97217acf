"""Start-up time of the commands a user types first (run with `tox -e bench`; printed, never asserted).

Each command runs in a fresh interpreter, as from a shell: --help, --version, list, validate, and the
missing-files preflight (`run imagenet`, `run pose`, `run audio`, `run text` offline with an empty cache, which
stop before any work). `list` imports
the installed plugins' entry-point modules to list them (the tox environment installs the example plugin, whose
entry module is torch-free); `list-builtins` is the same listing with plugins left out, condbench's own share. Whether a command imports
torch is a behaviour, tested in tests/test_cli_messages.py (--help) and tests/test_startup.py (the others).
"""
import os
import subprocess
import sys

import pytest

COMMANDS = {"help": ["--help"], "version": ["--version"], "list": ["list"], "validate": ["validate", "quickstart"],
            "validate-imagenet": ["validate", "imagenet"], "preflight": ["run", "imagenet", "-o", "{tmp}/run"],
            "preflight-pose": ["run", "pose", "-o", "{tmp}/run"], "preflight-audio": ["run", "audio", "-o", "{tmp}/run"],
            "preflight-text": ["run", "text", "-o", "{tmp}/run"], "list-builtins": ["list"]}
WITHOUT_PLUGINS = ("import sys\nfrom condbench import registry\nregistry._plugins_loaded = True\n"
                   "from condbench.cli import main\nsys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_startup(benchmark, tmp_path, name):
    argv = [a.format(tmp=tmp_path) for a in COMMANDS[name]]
    env = {**os.environ, "CONDBENCH_CACHE": str(tmp_path / "cache"), "CONDBENCH_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")}
    entry = ["-c", WITHOUT_PLUGINS] if name == "list-builtins" else ["-m", "condbench"]

    def command():
        return subprocess.run([sys.executable, *entry, *argv], capture_output=True, text=True, env=env)

    done = benchmark.pedantic(command, rounds=3, iterations=1)
    print(f"\ncondbench {' '.join(argv)}{' (plugins left out)' if name == 'list-builtins' else ''}: "
          f"exit {done.returncode}")
