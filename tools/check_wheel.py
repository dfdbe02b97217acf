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
# The quickstart's first cell: its baseline on 1 sample per class (10 samples), from the wheel's quickstart suite
# without the block-diversity probe (which runs whatever --policies selects: 4 policies, two thirds of the time).
FIRST_CELL = ["--policies", "baseline", "--samples-per-class", "1"]
# run by the fresh environment's Python: prints where the suite came from, writes it without the probe to argv[1]
SUITE_WITHOUT_PROBE = ("import sys, yaml; from condbench.suites import suite_path; path = suite_path('quickstart'); "
                       "suite = yaml.safe_load(path.read_text()); suite.pop('blocks', None); "
                       "open(sys.argv[1], 'w').write(yaml.safe_dump(suite, sort_keys=False)); print(path)")
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


def source_files() -> list[str]:
    """The working tree's files that git tracks or would track (ignored build leftovers such as build/ and a stale
    *.egg-info left out: setuptools would put the files an old SOURCES.txt lists into the sdist), relative."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True)
    if listed.returncode != 0:
        raise CheckFailed(f"{ROOT} is not a git checkout: the check builds from the files git would commit")
    return sorted(name for name in listed.stdout.decode().split("\0") if name and (ROOT / name).is_file())


def copy_tree(files: list[str], to: Path) -> Path:
    """A copy of the given files of the working tree, to build from."""
    for name in files:
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, to / name)
    return to


def build(tree: Path, out: Path) -> tuple[Path, Path]:
    """The sdist of the tree, and the wheel built from that sdist (not from the tree)."""
    run([sys.executable, "-m", "build", "--quiet", "--sdist", "--outdir", out, tree])
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
    """Every package file is in the sdist and in the wheel; the sdist has the project's own files."""
    with tarfile.open(sdist) as archive:
        top = sdist.name[:-len(".tar.gz")]
        in_sdist = {name[len(top) + 1:] for name in archive.getnames() if name.startswith(top + "/")}
    missing([f"src/{name}" for name in files] + SDIST_EXTRAS, in_sdist, sdist)
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    missing(files, in_wheel, wheel)
    print(f"contents: the {len(files)} package files are in {sdist.name} and {wheel.name}", flush=True)


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


def from_wheel(printed: str, bin_dir: Path, what: str) -> None:
    """Fail unless the path a fresh-environment command printed lies inside that environment."""
    if not Path(printed).resolve().is_relative_to(bin_dir.parent.resolve()):
        raise CheckFailed(f"{what} came from {printed}, not from the wheel in {bin_dir.parent}")
    print(f"{what} comes from the wheel ({printed})", flush=True)


def run_first_cell(bin_dir: Path, work: Path) -> None:
    """From a folder outside the source tree: condbench and its quickstart suite must be the wheel's, and the
    quickstart's first cell runs."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", CONDBENCH_OFFLINE="1", PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1",
               VIRTUAL_ENV=str(bin_dir.parent), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    printed = run([bin_dir / "python", "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], cwd=work, env=env,
                  capture_output=True, text=True).stdout.strip()
    from_wheel(printed, bin_dir, PACKAGE)
    suite = work / "quickstart-first-cell.yaml"
    printed = run([bin_dir / "python", "-c", SUITE_WITHOUT_PROBE, suite], cwd=work, env=env, capture_output=True,
                  text=True).stdout.strip()
    from_wheel(printed, bin_dir, "the quickstart suite")
    out = work / "run"
    run([bin_dir / PACKAGE, "run", suite, *FIRST_CELL, "-o", out], cwd=work, env=env)
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
        files = source_files()
        sdist, wheel = build(copy_tree(files, temp / "tree"), temp / "dist")
        check_contents(sdist, wheel, [name[len("src/"):] for name in files if name.startswith(f"src/{PACKAGE}/")])
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
