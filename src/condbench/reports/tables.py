"""The report's tables as one model: rows of display strings computed once from a run's records.

The HTML page (:mod:`.html`), the LaTeX, CSV and Markdown tables (:mod:`.paper_tables`) and the DataFrames of
:mod:`condbench.results` all read these rows, so their numbers can never disagree: each cell holds the text the
report shows and the number that text reads as. The rules of Table 2's marks (significance, best values) and the
headline metrics of the across-tasks table live here too.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..policies import parse_policy

# metric key -> (label, which direction is better)
METRICS = {
    "fid": ("FID", "lower"), "sfid": ("sFID", "lower"), "is": ("IS", "higher"),
    "precision": ("Precision", "higher"), "recall": ("Recall", "higher"), "clip_score": ("CLIP score", "higher"),
    "is_std": ("IS std over splits", None),
    "class_fidelity": ("class fidelity", "higher"), "ssim": ("SSIM", "higher"), "lpips": ("LPIPS", "lower"),
    "psnr": ("PSNR", "higher"), "fad": ("FAD", "lower"), "kl": ("KL", "lower"),
    "fd_vgg": ("FD_VGG", "lower"), "fd_panns": ("FD_PANNs", "lower"), "clips": ("clips", None),
    "vggish_patches": ("VGGish patches", None), "ssim_256": ("SSIM_256", "higher"),
    # the built-in tasks' metrics in their own classifiers' feature spaces (not comparable to the paper's)
    "fid_digits_cnn": ("FID (digits CNN)", "lower"), "fd_shapes_cnn": ("FD (shapes CNN)", "lower"),
    "kl_shapes_cnn": ("KL (shapes CNN)", "lower"), "is_shapes_cnn": ("IS (shapes CNN)", "higher"),
}
DIGITS = 4  # decimals shown for metric values; ties are judged at this precision
DELTA_DIGITS = 3  # decimals of a paired change and its interval (the table stays narrow enough for four tasks)
# what the policies that remove a part of c rather than dimensions take away
PART_REMOVED = {"drop-t": "t, the timestep part", "drop-cond": "y, the condition part",
                "const-t": "none: t replaced by t(T)"}


class ReportError(ValueError):
    """A run directory the report cannot read."""


@dataclass
class Run:
    path: Path
    results: dict
    analysis: dict[str, dict[str, np.ndarray]]
    grids: Any

    @property
    def task(self) -> str:
        return self.results["task"]["task"]

    def record_task(self, record: dict) -> str:
        """The task of one record (a run of several tasks holds records of each)."""
        return record.get("task") or self.task


def load_run(path: str | Path) -> Run:
    """A finished run directory: its ``results.json``, analysis arrays and sample grids."""
    path = Path(path)
    results_file = path / "results.json"
    if not results_file.is_file():
        raise ReportError(f"{path} is not a finished run directory: {results_file} is missing "
                          "(run `condbench run SUITE -o DIR` first; results.jsonl alone holds the cells finished so far)")
    try:
        results = json.loads(results_file.read_text())
    except json.JSONDecodeError as error:
        raise ReportError(f"{results_file} is not valid JSON ({error}): it was not written by a finished run; "
                          "rerun `condbench run` (or `condbench score`) on that directory to rewrite it") from None
    analysis = {}
    for model in results.get("analysis", {}):
        npz = path / f"analysis_{slug(model)}.npz"
        analysis[model] = dict(np.load(npz)) if npz.is_file() else {}
    grids_file = path / "samples_grid.npz"
    grids = np.load(grids_file) if grids_file.is_file() else {}
    return Run(path, results, analysis, grids)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


# --- numbers as shown ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shown:
    """A number as the report shows it: ``text``, the number that text reads as (``number``, None when the
    value is missing or not finite), and the unrounded ``raw`` value (what the HTML table sorts by)."""

    text: str
    number: Optional[float]
    raw: Any


MISSING = "–"


def shown(value: Any, spec: str = f".{DIGITS}f") -> Shown:
    """``value`` formatted with ``spec`` (a format spec such as '.4f', '+.3f' or '.2%'); ints and strings as
    they are; None or not finite as '–'."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return Shown(MISSING, None, None)
    if not isinstance(value, float):
        return Shown(str(value), value if isinstance(value, (int, np.integer)) else None, value)
    text = format(value, spec)
    if text.endswith("%"):  # '35.61%' reads as 0.3561
        decimals = len(text[:-1].partition(".")[2])
        return Shown(text, round(float(text[:-1]) / 100, decimals + 2), value)
    return Shown(text, float(text), value)


def direction(key: str) -> Optional[str]:
    """'lower' or 'higher' when that value of metric ``key`` is better, else None (spreads, counts)."""
    return METRICS.get(key, ("", None))[1]


def is_score(key: str) -> bool:
    """Whether metric ``key`` scores the samples (a better direction, or a plugin's metric condbench does not
    know), rather than a spread or a count such as IS std or the number of clips."""
    return key not in METRICS or direction(key) is not None


def metric_label(key: str) -> str:
    """The metric's label with an arrow pointing to its better direction."""
    label, better = METRICS.get(key, (key, ""))
    return f"{label} {'↓' if better == 'lower' else '↑' if better == 'higher' else ''}".strip()


def metric_keys(records: list[dict]) -> list[str]:
    """Every metric present in ``records``, in record order."""
    keys: list[str] = []
    for r in records:
        keys += [k for k in r["metrics"] if k not in keys]
    return keys


def headline_metrics(run: Run, task: str) -> list[str]:
    """The metrics of ``task`` in the across-tasks table: those its description declares (``headline_metrics``
    in results.json's ``tasks``), else every metric its records hold that has a better direction, in record
    order (a run that predates the declaration, or a plugin task without one, still shows every score)."""
    records = [r for r in run.results["records"] if run.record_task(r) == task]
    present = metric_keys(records)
    declared = run.results.get("tasks", {}).get(task, {}).get("headline_metrics")
    if declared:
        return [k for k in declared if k in present]
    return [k for k in present if is_score(k)]


# --- the rules of Table 2's marks ----------------------------------------------------------------------

def significance(paired: Optional[dict], better: Optional[str]) -> Optional[str]:
    """"better" or "worse" when the paired 95% interval of a change excludes 0, else None (also for metrics
    without a better direction)."""
    if not paired or better is None:
        return None
    low, high = paired["ci95"]
    if low <= 0 <= high:
        return None
    improved = high < 0 if better == "lower" else low > 0
    return "better" if improved else "worse"


def best_policies(records: list[dict], key: str, digits: int = DIGITS) -> set[str]:
    """Policies holding the best value of ``key``: every row that ties at the shown precision, and none when
    the best does not beat the baseline (a row equal to the baseline is not "best")."""
    better = direction(key)
    values = {r["policy"]: round(r["metrics"][key], digits) for r in records
              if r["metrics"].get(key) is not None and np.isfinite(r["metrics"][key])}
    baseline = values.pop("baseline", None)
    if better is None or not values:
        return set()
    best = min(values.values()) if better == "lower" else max(values.values())
    if baseline is not None and (best >= baseline if better == "lower" else best <= baseline):
        return set()
    return {policy for policy, value in values.items() if value == best}


# --- Table 2: one row per policy, one cell per metric ----------------------------------------------------

@dataclass(frozen=True)
class MetricCell:
    """One metric of one policy: its value, the paired change against the baseline and its 95% interval
    (None without a paired comparison), and its marks ("best", "better", "worse")."""

    metric: str
    value: Shown
    delta: Optional[Shown]
    low: Optional[Shown]
    high: Optional[Shown]
    marks: tuple[str, ...]

    @property
    def delta_text(self) -> str:
        """Δ and its interval on two lines, as under the value in the report ('' without a comparison)."""
        if self.delta is None:
            return ""
        return f"Δ {self.delta.text}\n[{self.low.text}, {self.high.text}]"


@dataclass(frozen=True)
class PolicyRow:
    policy: str
    removed: Shown  # mean dimensions removed; its text says which part of c a drop/const-t policy removes
    removed_part: bool  # True when ``removed.text`` names a part of c rather than a count
    cells: list[MetricCell]
    seconds: Shown
    num_samples: int
    protocol: str


@dataclass(frozen=True)
class Table2:
    task: str
    model: str
    metrics: list[str]
    rows: list[PolicyRow]


def metric_entry(record: dict, key: str, best: set[str]) -> MetricCell:
    """The cell of metric ``key`` of ``record``; ``best`` holds the policies with the column's best value."""
    paired = record.get("paired_vs_baseline", {}).get(key)
    marks = tuple(m for m in ("best" if record["policy"] in best else None, significance(paired, direction(key)))
                  if m)
    spec = f"+.{DELTA_DIGITS}f"
    low, high = (shown(paired["ci95"][0], spec), shown(paired["ci95"][1], spec)) if paired else (None, None)
    return MetricCell(key, shown(record["metrics"].get(key)), shown(paired["delta"], spec) if paired else None,
                      low, high, marks)


def removed_entry(record: dict) -> tuple[Shown, bool]:
    """Dimensions removed as '43.0 (45%)', or the part of c a drop-t/drop-cond/const-t policy removes."""
    kind = parse_policy(record["policy"]).action.kind
    dims = record["dims_removed"]
    if kind in PART_REMOVED:
        return Shown(PART_REMOVED[kind], round(dims, 1), dims), True
    return Shown(f"{dims:.1f} ({record['dims_removed_fraction']:.0%})", round(dims, 1), dims), False


def policy_row(record: dict, keys: list[str], best: dict[str, set[str]]) -> PolicyRow:
    removed, part = removed_entry(record)
    return PolicyRow(record["policy"], removed, part, [metric_entry(record, k, best[k]) for k in keys],
                     shown(record["timing"]["seconds"], ".1f"), record["num_samples"], record["protocol"])


def table2(task: str, model: str, records: list[dict]) -> Table2:
    """Table 2 of one model: every metric its records hold, one row per policy in record order."""
    keys = metric_keys(records)
    best = {k: best_policies(records, k) for k in keys}
    return Table2(task, model, keys, [policy_row(r, keys, best) for r in records])


def records_by_cell(runs: list[Run]) -> dict[tuple[str, str], tuple[Run, list[dict]]]:
    """Each (task, model)'s records, with the run they come from, in run and record order."""
    out: dict[tuple[str, str], tuple[Run, list[dict]]] = {}
    for run in runs:
        for r in run.results["records"]:
            out.setdefault((run.record_task(r), r["model"]), (run, []))[1].append(r)
    return out


def tables2(runs: list[Run]) -> list[Table2]:
    """Table 2 of every (task, model) of ``runs``."""
    return [table2(task, model, records) for (task, model), (_, records) in records_by_cell(runs).items()]


# --- Table 1: the statistics of c, one row per model -------------------------------------------------------

@dataclass(frozen=True)
class Column:
    key: str  # its name in the CSV and the DataFrame
    header: str
    read: Callable[[dict], Any]  # the model's analysis statistics -> the value
    spec: str = ""  # format spec ('' for ints)


TABLE1_COLUMNS = (
    Column("d", "d", lambda s: s["c"]["dim"]),
    Column("pr", "PR", lambda s: s["c"]["pr"]["mean"], ".2f"),
    Column("npr", "nPR", lambda s: s["c"]["npr"]["mean"], ".2%"),
    Column("cosine_mean", "mean cosine", lambda s: s["c"]["cosine"]["mean"], f".{DIGITS}f"),
    Column("cosine_min", "min cosine", lambda s: s["c"]["cosine"]["min"], f".{DIGITS}f"),
    Column("cond_cosine_mean", "cond-only cosine", lambda s: s["cond_only"]["cosine"]["mean"], f".{DIGITS}f"),
    Column("cond_npr", "cond-only nPR", lambda s: s["cond_only"]["npr"]["mean"], ".2%"),
    Column("variance_mean", "mean variance", lambda s: s["c"]["variance"]["mean"], ".6f"),
    Column("t_share", "t share of |c|²", lambda s: s["t_only"]["energy_share_in_c"], ".3f"),
)


@dataclass(frozen=True)
class Table1Row:
    task: str
    model: str
    cells: list[Shown]  # one per TABLE1_COLUMNS


def table1_rows(runs: list[Run]) -> list[Table1Row]:
    """The embedding statistics of every model of ``runs``."""
    return [Table1Row(model_task(run, model), model, [shown(column.read(stats), column.spec)
                                                      for column in TABLE1_COLUMNS])
            for run in runs for model, stats in run.results.get("analysis", {}).items()]


def model_task(run: Run, model: str) -> str:
    """The task a model of ``run`` was analysed for: that of its records (the run's task without any)."""
    return next((run.record_task(r) for r in run.results["records"] if r["model"] == model), run.task)
