"""Check that the wheel is complete: build the sdist, build the wheel FROM the sdist, install the wheel into a fresh
virtual environment and run the quickstart's first cell from it, outside the source tree.

A file missing from the sdist or the wheel (a suite, a report template, a shipped asset) then fails here instead
of on a user's machine. torch is not installed again: the fresh environment reads its dependencies from the
shared one (tools/shared_env.py; CONDBENCH_SHARED_ENV moves it) through a .pth line placed after its own
site-packages, so condbench itself comes only from the wheel. The shared environment is only read.

Usage (tox -e wheel, which provides `build`): python tools/check_wheel.py [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from shared_env import BIN, ENV, ROOT

PACKAGE = "condbench"
# the quickstart's first cell: its baseline on 1 sample per class (10 samples; about a minute on 2 cores)
FIRST_CELL = ["run", "quickstart", "--policies", "baseline", "--samples-per-class", "1"]
SDIST_EXTRAS = ["pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "CITATION.cff"]


class CheckFailed(Exception):
    """One of the wheel checks failed; the message says which file or step."""


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, echoing it, and stop the check when it fails."""
    print("+", " ".join(str(part) for part in command), flush=True)
    done = subprocess.run([str(part) for part in command], **kwargs)
    if done.returncode != 0:
        raise CheckFailed(f"{Path(str(command[0])).name} exited with {done.returncode}")
    return done


def package_files() -> list[str]:
    """The package's files as the repository tracks them, relative to src/ (e.g. condbench/suites/quickstart.yaml)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", f"src/{PACKAGE}"], capture_output=True)
    if listed.returncode == 0 and listed.stdout:
        return sorted(name[len("src/"):] for name in listed.stdout.decode().split("\0") if name)
    return sorted(str(path.relative_to(ROOT / "src")) for path in (ROOT / "src" / PACKAGE).rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts)


def build(out: Path) -> tuple[Path, Path]:
    """The sdist of the working tree, and the wheel built from that sdist (not from the tree)."""
    run([sys.executable, "-m", "build", "--quiet", "--sdist", "--outdir", out, ROOT])
    (sdist,) = out.glob("*.tar.gz")
    run([sys.executable, "-m", "build", "--quiet", "--wheel", "--outdir", out, sdist])
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def missing(expected: list[str], present: set[str], archive: Path) -> None:
    """Fail naming every expected file that the archive lacks."""
    lacking = [name for name in expected if name not in present]
    if lacking:
        raise CheckFailed(f"{archive.name} lacks {len(lacking)} file(s): {', '.join(lacking)}. Files outside .py "
                          f"modules reach the package through [tool.setuptools.package-data] in pyproject.toml, "
                          f"files beside it through MANIFEST.in.")


def check_contents(sdist: Path, wheel: Path, files: list[str]) -> None:
    """Every tracked package file is in the sdist and in the wheel; the sdist has the project's own files."""
    with tarfile.open(sdist) as archive:
        top = sdist.name[:-len(".tar.gz")]
        in_sdist = {name[len(top) + 1:] for name in archive.getnames() if name.startswith(top + "/")}
    missing([f"src/{name}" for name in files] + SDIST_EXTRAS, in_sdist, sdist)
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    missing(files, in_wheel, wheel)
    print(f"contents: the {len(files)} tracked package files are in {sdist.name} and {wheel.name}", flush=True)


def shared_site_packages() -> list[str]:
    """The shared environment's site-packages folders (purelib, platlib)."""
    if not (BIN / "python").exists():
        raise CheckFailed(f"no shared environment at {ENV}: run `tox -e tests` first (it builds it), or point "
                          f"CONDBENCH_SHARED_ENV at one")
    paths = run([BIN / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib')); "
                                       "print(sysconfig.get_path('platlib'))"], capture_output=True, text=True)
    return list(dict.fromkeys(paths.stdout.split()))


def fresh_env(where: Path, wheel: Path) -> Path:
    """A new virtual environment (the shared one's Python) holding only the wheel, then the shared one's
    site-packages after its own; returns its bin folder."""
    run([BIN / "python", "-m", "venv", where])
    bin_dir = where / BIN.name
    # installed before the .pth exists: pip must not see (and replace) the shared environment's condbench
    run([bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-index", wheel])
    site = run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
               capture_output=True, text=True).stdout.strip()
    (Path(site) / "zz_condbench_shared_env.pth").write_text("\n".join(shared_site_packages()) + "\n")
    return bin_dir


def run_first_cell(bin_dir: Path, work: Path) -> None:
    """From a folder outside the source tree: condbench must be the wheel's, and the quickstart's first cell runs."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", CONDBENCH_OFFLINE="1", PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1",
               VIRTUAL_ENV=str(bin_dir.parent), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    where = run([bin_dir / "python", "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], cwd=work, env=env,
                capture_output=True, text=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(bin_dir.parent.resolve()):
        raise CheckFailed(f"{PACKAGE} was imported from {where}, not from the wheel in {bin_dir.parent}")
    print(f"import: {PACKAGE} comes from the wheel ({where})", flush=True)
    out = work / "run"
    run([bin_dir / PACKAGE, *FIRST_CELL, "-o", out], cwd=work, env=env)
    for name in ("results.json", "index.html"):
        if not (out / name).is_file():
            raise CheckFailed(f"the first cell wrote no {out / name}")
    print(f"run: the quickstart's first cell ran from the wheel and wrote {out}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed) for inspection")
    args = parser.parse_args()
    temp = Path(tempfile.mkdtemp(prefix="condbench-wheel-"))
    try:
        sdist, wheel = build(temp / "dist")
        check_contents(sdist, wheel, package_files())
        work = temp / "work"
        work.mkdir()
        run_first_cell(fresh_env(temp / "venv", wheel), work)
    except CheckFailed as failure:
        print(f"check_wheel: FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {temp}")
        else:
            shutil.rmtree(temp)
    print("check_wheel: the wheel is complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
