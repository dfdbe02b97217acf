"""The report's section on weight savings: every ``RUN_DIR/pruned/*/savings.json`` that ``condbench export-pruned``
wrote (parameters, bytes and FLOPs saved per policy)."""
from __future__ import annotations

import html
import json
from pathlib import Path

PRUNED_FOLDER = "pruned"  # export under RUN_DIR/pruned/NAME for the report to find it


def read_savings(run_dirs: list[Path]) -> list[dict]:
    """The savings records under the run directories, in path order."""
    return [json.loads(p.read_text()) for d in run_dirs for p in sorted(Path(d).glob(f"{PRUNED_FOLDER}/*/savings.json"))]


def _row(s: dict) -> str:
    def cell(value, text: bool = False) -> str:
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else (
            f"{value:.1f}" if isinstance(value, float) else str(value))
        return f"<td{' class=text' if text else ''} data-v='{html.escape(str(value))}'>{html.escape(shown)}</td>"

    saved = s["params"]["saved"] / s["params"]["before"]
    return ("<tr>" + cell(s["model"], True) + cell(s["policy"], True) + cell(s["dims_dropped"]) +
            cell(s["dims_removed_per_step_mean"]) + cell(s["params"]["before"]) + cell(s["params"]["saved"]) +
            cell(100 * saved) + cell(s["bytes"]["saved"]) + cell(s["flops"]["saved_per_evaluation"]) +
            cell(s["flops"]["saved_per_sample"]) + cell("yes" if s["exact_for_policy"] else "no", True) + "</tr>")


def savings_section(run_dirs: list[Path]) -> str:
    """HTML for the savings of the pruned checkpoints exported under the runs ('' when there are none)."""
    records = read_savings(run_dirs)
    if not records:
        return ""
    headers = ["model", "policy", "dims dropped", "removed/step (policy)", "params", "params saved", "% saved",
               "bytes saved", "FLOPs saved / evaluation", "FLOPs saved / sample", "= policy's samples"]
    head = "".join(f"<th{' class=text' if i < 2 else ''}>{html.escape(h)}</th>" for i, h in enumerate(headers))
    note = ("<p class=note>Pruned checkpoints (<code>condbench export-pruned</code>): the adaLN input columns of the "
            "dimensions a mask=fixed policy removes at every step are dropped. Where the policy's mask changes from "
            "step to step, a static checkpoint can drop only the dimensions removed at every step; its samples are "
            "then those of c masked by that smaller set, not the policy's.</p>")
    return (f"<h2 id=savings>Weight savings</h2>{note}<table class='sortable'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(_row(s) for s in records)}</tbody></table>")
