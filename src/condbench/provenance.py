"""Which code produced a result: the git commit of the condbench checkout that runs, when it is one."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional


def git_revision(where: Optional[Path] = None) -> Optional[dict]:
    """``{"commit": SHA, "dirty": bool}`` of the git checkout holding ``where`` (condbench's own source by
    default), or None when it is not in a git checkout (an installed package) or git is missing."""
    folder = Path(where) if where is not None else Path(__file__).resolve().parent

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit, "dirty": bool(status)}
