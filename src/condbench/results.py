"""Finished runs as pandas DataFrames (pandas is an optional extra: ``pip install condbench[results]``).

``load`` gives Table 2 in the long format of ``condbench tables --format csv``'s ``table2.csv``, one row per
(task, model, policy, metric); ``load_table1`` gives Table 1, one row per (task, model). Both hold the numbers
exactly as the HTML report shows them (they read the same table model)::

    from condbench import results
    frame = results.load("runs/quickstart", "runs/pose-digits")
    frame.pivot_table(index="policy", columns="metric", values="delta")
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .reports import paper_tables, tables

if TYPE_CHECKING:  # pandas is imported only when a DataFrame is asked for
    import pandas


def _frame(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> "pandas.DataFrame":
    try:
        import pandas
    except ImportError:
        raise ImportError("condbench.results needs pandas: pip install 'condbench[results]' (or pip install pandas)") \
            from None
    return pandas.DataFrame(rows, columns=list(fields))


def _runs(run_dirs: tuple[str | Path, ...]) -> list[tables.Run]:
    if not run_dirs:
        raise tables.ReportError("no run directories given")
    return [tables.load_run(d) for d in run_dirs]


def load(*run_dirs: str | Path) -> "pandas.DataFrame":
    """Table 2 of ``run_dirs``: columns task, model, policy, metric, value, delta, low, high (the paired change
    and its 95% interval; NaN for the baseline), n, protocol, significance ('better', 'worse', NaN), best, and
    dims_removed / removed (the count, and the text the report shows)."""
    return _frame(paper_tables.long_rows(tables.tables2(_runs(run_dirs))), paper_tables.TABLE2_FIELDS)


def load_table1(*run_dirs: str | Path) -> "pandas.DataFrame":
    """Table 1 of ``run_dirs``: the statistics of c per (task, model), as the report shows them."""
    return _frame(paper_tables.table1_records(tables.table1_rows(_runs(run_dirs))), paper_tables.TABLE1_FIELDS)
