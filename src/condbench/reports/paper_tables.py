"""``condbench tables RUN_DIR... [--format latex|csv|markdown] [-o DIR]``: the report's Table 1 and Table 2 for a
paper, written from the table model of :mod:`.tables` (the HTML report's own rows: the same texts, the same
rounding, the same marks).

LaTeX and Markdown: one file per table (``table1_TASK``, ``table2_TASK_MODEL``); each ``.tex`` is a document that
compiles on its own (booktabs). CSV: ``table1.csv`` (one row per (task, model)) and ``table2.csv`` (one row per
(task, model, policy, metric)), the long format :func:`condbench.results.load` returns as a DataFrame.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ..storage import atomic_write, ensure_folder
from . import tables
from .tables import TABLE1_COLUMNS, MetricCell, Shown, Table1Row, Table2, metric_label, slug

FORMATS = ("latex", "csv", "markdown")
MARK_NOTE = ("★: the paired 95% interval of the change excludes 0 in the better direction; †: in the worse "
             "direction; bold: the best value of the column when it beats the baseline (ties all bold).")


# --- the long format (CSV and DataFrame) -----------------------------------------------------------------

TABLE2_FIELDS = ("task", "model", "policy", "metric", "value", "delta", "low", "high", "n", "protocol",
                 "significance", "best", "dims_removed", "removed")
TABLE1_FIELDS = ("task", "model", *(column.key for column in TABLE1_COLUMNS))


def _number(value: Optional[Shown]) -> Optional[float]:
    return None if value is None else value.number


def long_rows(model_tables: Iterable[Table2]) -> list[dict[str, Any]]:
    """One row per (task, model, policy, metric) with the numbers the report shows (value to 4 decimals, the
    change and its interval to 3; None where there is none)."""
    return [{"task": t.task, "model": t.model, "policy": row.policy, "metric": entry.metric,
             "value": entry.value.number, "delta": _number(entry.delta), "low": _number(entry.low),
             "high": _number(entry.high), "n": row.num_samples, "protocol": row.protocol,
             "significance": next((m for m in entry.marks if m != "best"), None), "best": "best" in entry.marks,
             "dims_removed": row.removed.number, "removed": row.removed.text}
            for t in model_tables for row in t.rows for entry in row.cells]


def table1_records(rows: Iterable[Table1Row]) -> list[dict[str, Any]]:
    """One row per (task, model): the statistics of c as the report shows them (nPR as a fraction)."""
    return [{"task": r.task, "model": r.model, **{c.key: s.number for c, s in zip(TABLE1_COLUMNS, r.cells)}}
            for r in rows]


def csv_text(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> str:
    """``rows`` as CSV (missing values empty; floats written so that they read back to the same number)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row[k] is None else row[k] for k in fields} for row in rows)
    return buffer.getvalue()


# --- Markdown --------------------------------------------------------------------------------------------

def markdown_value(entry: MetricCell) -> str:
    """The value with its marks (★ before, † after, bold for best) and, on a second line, Δ and its interval."""
    text = f"**{entry.value.text}**" if "best" in entry.marks else entry.value.text
    text = ("★ " if "better" in entry.marks else "") + text + (" †" if "worse" in entry.marks else "")
    return text + (f"<br>Δ {entry.delta.text} [{entry.low.text}, {entry.high.text}]" if entry.delta else "")


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), "|" + "|".join("---" for _ in headers) + "|", *map(line, rows)]) + "\n"


def table2_markdown(t: Table2) -> str:
    headers = ["policy", "dims removed", *map(metric_label, t.metrics)]
    rows = [[row.policy, row.removed.text, *map(markdown_value, row.cells)] for row in t.rows]
    return f"**Table 2: {t.task}, {t.model}** ({t.rows[0].num_samples} samples per policy)\n\n" \
           + markdown_table(headers, rows) + f"\n{MARK_NOTE}\n"


def table1_markdown(task: str, rows: list[Table1Row]) -> str:
    headers = ["model", *(column.header for column in TABLE1_COLUMNS)]
    return f"**Table 1: {task}**, statistics of c at the sampler's first step\n\n" \
           + markdown_table(headers, [[r.model, *(s.text for s in r.cells)] for r in rows])


# --- LaTeX -----------------------------------------------------------------------------------------------

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "|": r"\textbar{}", "–": "--", "²": r"\textsuperscript{2}", "↓": r"$\downarrow$",
                 "↑": r"$\uparrow$", "Δ": r"$\Delta$", "τ": r"$\tau$", "·": r"$\cdot$", "★": r"$^\star$",
                 "†": r"$^\dagger$"}
LATEX_PREAMBLE = ("\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n"
                  "\\usepackage{booktabs}\n\\usepackage[landscape,margin=1.5cm]{geometry}\n\\begin{document}\n")


def latex_text(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the report's few non-ASCII signs spelled out."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_math(shown_number: Shown) -> str:
    return "--" if shown_number.number is None else f"${shown_number.text}$"


def latex_value(entry: MetricCell) -> str:
    """The value with its marks: bold for best, a star for a better change, a dagger for a worse one."""
    text = latex_text(entry.value.text)
    text = r"\textbf{" + text + "}" if "best" in entry.marks else text
    return text + (r"$^\star$" if "better" in entry.marks else r"$^\dagger$" if "worse" in entry.marks else "")


def latex_change(entry: MetricCell) -> str:
    if entry.delta is None:
        return ""
    return f"{latex_math(entry.delta)} [{latex_math(entry.low)}, {latex_math(entry.high)}]"


def latex_document(caption: str, columns: str, head: list[str], rows: list[list[str]]) -> str:
    """A booktabs table in a document of its own."""
    body = [" & ".join(cells) + r" \\" for cells in rows]
    return (LATEX_PREAMBLE + "\\begin{table}[ht]\n\\centering\n\\small\n\\caption{" + caption + "}\n"
            f"\\begin{{tabular}}{{{columns}}}\n\\toprule\n" + "\n".join(head) + "\n\\midrule\n" + "\n".join(body)
            + "\n\\bottomrule\n\\end{tabular}\n\\end{table}\n\\end{document}\n")


def table2_latex(t: Table2) -> str:
    first = ["policy", "dims removed"] + [r"\multicolumn{2}{c}{" + latex_text(metric_label(k)) + "}"
                                          for k in t.metrics]
    rules = " ".join(rf"\cmidrule(lr){{{3 + 2 * i}-{4 + 2 * i}}}" for i in range(len(t.metrics)))
    second = ["", ""] + ["value", r"$\Delta$ [95\% CI]"] * len(t.metrics)
    rows = [[latex_text(row.policy), latex_text(row.removed.text)]
            + [part for entry in row.cells for part in (latex_value(entry), latex_change(entry))] for row in t.rows]
    caption = (f"{latex_text(t.task)}, {latex_text(t.model)}: each metric per policy ({t.rows[0].num_samples} "
               r"samples each) and its paired change $\Delta$ against the baseline with its 95\% bootstrap interval. "
               + latex_text(MARK_NOTE))
    return latex_document(caption, "ll" + "rl" * len(t.metrics),
                          [" & ".join(first) + r" \\", rules, " & ".join(second) + r" \\"], rows)


def table1_latex(task: str, rows: list[Table1Row]) -> str:
    head = " & ".join(["model", *(latex_text(c.header) for c in TABLE1_COLUMNS)]) + r" \\"
    body = [[latex_text(r.model), *(latex_text(s.text) for s in r.cells)] for r in rows]
    return latex_document(f"{latex_text(task)}: statistics of $c$ at the sampler's first step",
                          "l" + "r" * len(TABLE1_COLUMNS), [head], body)


# --- writing ---------------------------------------------------------------------------------------------

def _per_table(task_rows: dict[str, list[Table1Row]], model_tables: list[Table2], suffix: str,
               one: Callable[[str, list[Table1Row]], str], two: Callable[[Table2], str]) -> dict[str, str]:
    files = {f"table1_{slug(task)}.{suffix}": one(task, rows) for task, rows in task_rows.items()}
    files.update({f"table2_{slug(t.task)}_{slug(t.model)}.{suffix}": two(t) for t in model_tables})
    return files


def table_files(runs: list[tables.Run], fmt: str) -> dict[str, str]:
    """File name -> text of every table of ``runs`` in format ``fmt`` (one of FORMATS)."""
    model_tables, rows1 = tables.tables2(runs), tables.table1_rows(runs)
    if fmt == "csv":
        return {"table1.csv": csv_text(table1_records(rows1), TABLE1_FIELDS),
                "table2.csv": csv_text(long_rows(model_tables), TABLE2_FIELDS)}
    task_rows: dict[str, list[Table1Row]] = {}
    for row in rows1:
        task_rows.setdefault(row.task, []).append(row)
    if fmt == "latex":
        return _per_table(task_rows, model_tables, "tex", table1_latex, table2_latex)
    if fmt == "markdown":
        return _per_table(task_rows, model_tables, "md", table1_markdown, table2_markdown)
    raise ValueError(f"unknown table format {fmt!r}: use one of {', '.join(FORMATS)}")


def write_tables(run_dirs: list[str | Path], fmt: str, out: str | Path) -> list[Path]:
    """Write the tables of ``run_dirs`` in format ``fmt`` into the folder ``out``; return the files written."""
    runs = [tables.load_run(d) for d in run_dirs]
    if not runs:
        raise tables.ReportError("no run directories given")
    files = table_files(runs, fmt)
    folder = ensure_folder(out, "output folder")
    return [atomic_write(folder / name, text) for name, text in files.items()]
