"""Progress bars for long work (tqdm on stderr; quiet when CONDBENCH_NO_PROGRESS is set)."""
from __future__ import annotations

import os
from typing import Optional

from tqdm.auto import tqdm


def progress_bar(total: Optional[int], desc: str = "", unit: str = "it", unit_scale: bool = False) -> tqdm:
    """A bar with rate and ETA (``total`` None: rate only); use as a context manager and call ``update(n)``."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, mininterval=1.0, dynamic_ncols=True,
                leave=False, disable=bool(os.environ.get("CONDBENCH_NO_PROGRESS")))
