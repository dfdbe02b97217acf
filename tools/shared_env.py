"""Run a command inside the one virtual environment that every tox environment shares.

torch with its CUDA libraries is several GB; tox would otherwise install a copy per environment. The
shared environment (``.tox/shared``) is created once; its dependencies are reinstalled only when
``pyproject.toml`` or ``constraints.txt`` change, and condbench itself is reinstalled on every call so
that the run always tests the working tree as an installed package.

Usage: python tools/shared_env.py COMMAND [ARGS...]
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = Path(os.environ.get("CONDBENCH_SHARED_ENV", ROOT / ".tox" / "shared"))
BIN = ENV / ("Scripts" if os.name == "nt" else "bin")


def _pip(*args: str) -> None:
    subprocess.run([str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", *args], check=True)


def ensure() -> None:
    stamp = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in ("pyproject.toml", "constraints.txt"))).hexdigest()
    stamp_file = ENV / ".condbench-deps"
    if not (BIN / "python").exists():
        print(f"shared_env: creating {ENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(ENV)
    if not stamp_file.is_file() or stamp_file.read_text() != stamp:
        print("shared_env: installing dependencies (torch is large; this happens once)", flush=True)
        _pip("install", "--quiet", "-c", str(ROOT / "constraints.txt"), "torch", "torchvision", f"{ROOT}[test]")
        stamp_file.write_text(stamp)
    _pip("install", "--quiet", "--no-deps", "--force-reinstall", str(ROOT))
    # the example plugin, as its own package (README "Adding a model"): `condbench list models` shows it
    _pip("install", "--quiet", "--no-deps", "-e", str(ROOT / "examples" / "condbench-flux"))


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ensure()
    command = sys.argv[1:]
    executable = BIN / command[0]
    if executable.exists():
        command[0] = str(executable)
    os.chdir(ROOT)
    os.execvpe(command[0], command, {**os.environ, "VIRTUAL_ENV": str(ENV), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})


if __name__ == "__main__":
    main()
