"""The report's weight-savings data: every ``RUN_DIR/pruned/*/savings.json`` that ``condbench export-pruned``
wrote (parameters, bytes and FLOPs saved per policy), as rows for the template."""
from __future__ import annotations

import json
from pathlib import Path

PRUNED_FOLDER = "pruned"  # export under RUN_DIR/pruned/NAME for the report to find it
HEADERS = ["model", "policy", "dims dropped", "removed/step (policy)", "params", "params saved", "% saved",
           "bytes saved", "FLOPs saved / evaluation", "FLOPs saved / sample", "= policy's samples"]


def read_savings(run_dirs: list[Path]) -> list[dict]:
    """The savings records under the run directories, in path order."""
    return [json.loads(p.read_text()) for d in run_dirs for p in sorted(Path(d).glob(f"{PRUNED_FOLDER}/*/savings.json"))]


def _shown(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def savings_rows(run_dirs: list[Path]) -> list[list[dict]]:
    """One row per exported checkpoint: cells ``{"v": sortable value, "text": shown, "text_col": bool}``."""
    rows = []
    for s in read_savings(run_dirs):
        values = [s["model"], s["policy"], s["dims_dropped"], s["dims_removed_per_step_mean"], s["params"]["before"],
                  s["params"]["saved"], 100 * s["params"]["saved"] / s["params"]["before"], s["bytes"]["saved"],
                  s["flops"]["saved_per_evaluation"], s["flops"]["saved_per_sample"],
                  "yes" if s["exact_for_policy"] else "no"]
        rows.append([{"v": v, "text": _shown(v), "text_col": i < 2 or i == len(values) - 1} for i, v in enumerate(values)])
    return rows
