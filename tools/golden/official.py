"""The command line every golden script shares: the official checkout, its commit, and where the fixture goes."""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def official_checkout(doc: str, repository: str, fixture: str) -> tuple[argparse.Namespace, str]:
    """Parse ``--official PATH [--commit SHA] [--out DIR]``; returns the arguments and the checkout's commit
    (``--commit``, else ``git rev-parse HEAD`` in the checkout; an error if neither gives one)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path, help=f"checkout of {repository}")
    parser.add_argument("--commit", help="the checkout's commit, when it is not a git work tree")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / fixture)
    args = parser.parse_args()
    commit = args.commit or subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.official,
                                           capture_output=True, text=True).stdout.strip()
    if not commit:
        parser.error("--official is not a git work tree: give its commit with --commit")
    return args, commit
