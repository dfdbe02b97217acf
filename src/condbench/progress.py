"""Progress bars for long work (tqdm on stderr; quiet when CONDBENCH_NO_PROGRESS is set)."""
from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str = "", unit: str = "it") -> tqdm:
    """A bar with rate and ETA; use as a context manager and call ``update(n)``."""
    return tqdm(total=total, desc=desc, unit=unit, mininterval=1.0, dynamic_ncols=True, leave=False,
                disable=bool(os.environ.get("CONDBENCH_NO_PROGRESS")))
