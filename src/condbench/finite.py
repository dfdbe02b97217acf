"""NaN and infinity checks that say where: which cell, which rows (sample or condition indices)."""
from __future__ import annotations

import torch

SHOWN = 20  # indices listed in a message


class NonFiniteError(RuntimeError):
    """Values that must be finite are not; the message names what, where and the indices."""


def require_finite(values: torch.Tensor, what: str, first_index: int = 0,
                   error: type[NonFiniteError] = NonFiniteError) -> None:
    """Raise ``error`` naming the rows of ``values`` (N, ...) that hold NaN or infinity; row i is index
    ``first_index + i``."""
    bad = ~torch.isfinite(values.reshape(len(values), -1)).all(dim=1)  # (N,)
    if not bad.any():
        return
    indices = (bad.nonzero()[:, 0] + first_index).tolist()
    shown = ", ".join(map(str, indices[:SHOWN])) + (f", ... ({len(indices)} in all)" if len(indices) > SHOWN else "")
    raise error(f"{what}: {len(indices)} of {len(values)} in indices {first_index}..{first_index + len(values) - 1} "
                f"are NaN or infinite (first: index {indices[0]}); indices: {shown}")
