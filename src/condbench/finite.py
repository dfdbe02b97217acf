"""NaN and infinity checks that say where: which cell, which rows (sample or condition indices)."""
from __future__ import annotations

import math

import torch

SHOWN = 20  # indices listed in a message


class NonFiniteError(RuntimeError):
    """Values that must be finite are not; the message names what, where and the indices."""


def require_finite(values: torch.Tensor, what: str, first_index: int = 0,
                   error: type[NonFiniteError] = NonFiniteError, placeholders: bool = False) -> None:
    """Raise ``error`` naming the rows of ``values`` (N, ...) that hold NaN or infinity; row i is index
    ``first_index + i``. With ``placeholders``, a column that is NaN in every row is a value the producer
    did not compute (evaluators fill metrics that are off with NaN) and is not checked here."""
    flat = values.reshape(len(values), -1)  # (N, F)
    finite = torch.isfinite(flat)
    if placeholders and len(flat):
        finite |= torch.isnan(flat).all(dim=0, keepdim=True)
    bad = ~finite.all(dim=1)  # (N,)
    if not bad.any():
        return
    indices = (bad.nonzero()[:, 0] + first_index).tolist()
    shown = ", ".join(map(str, indices[:SHOWN])) + (f", ... ({len(indices)} in all)" if len(indices) > SHOWN else "")
    raise error(f"{what}: {len(indices)} of {len(values)} in indices {first_index}..{first_index + len(values) - 1} "
                f"are NaN or infinite (first: index {indices[0]}); indices: {shown}")


def require_finite_metrics(metrics: dict, outputs: torch.Tensor, what: str,
                           error: type[NonFiniteError] = NonFiniteError) -> None:
    """Raise ``error`` if a metric is NaN or infinite, naming the output columns (N, K) that are NaN for every
    sample (a network with NaN weights gives those; the row check above cannot tell them from placeholders)."""
    bad = sorted(k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v))
    if not bad:
        return
    columns = torch.isnan(outputs).all(dim=0).nonzero()[:, 0].tolist() if len(outputs) else []
    cause = f"; output column(s) {columns} are NaN for every sample (indices 0..{len(outputs) - 1})" if columns else ""
    raise error(f"{what}: metric(s) {', '.join(bad)} are NaN or infinite{cause}")
