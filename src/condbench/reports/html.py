"""``condbench report RUN_DIR... -o report.html``: one self-contained page across runs and tasks.

Per task: the embedding statistics (the study's Table 1 and its figures), the policies (Table 2 with
paired deltas, best values marked, metric-vs-fraction-removed curves), sample grids with the same seeds
in the same places; across tasks: one summary table; then training dynamics and provenance. Every image
is embedded as a data URI and the only script is the inline table sorter, so the file opens anywhere.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..policies import parse_policy
from ..storage import atomic_write
from . import plots
from .blocks import blocks_section
from .savings import savings_section

# metric key -> (label, which direction is better)
METRICS = {
    "fid": ("FID", "lower"), "sfid": ("sFID", "lower"), "is": ("IS", "higher"),
    "precision": ("Precision", "higher"), "recall": ("Recall", "higher"), "clip_score": ("CLIP score", "higher"),
    "is_std": ("IS std over splits", None),
    "class_fidelity": ("class fidelity", "higher"), "ssim": ("SSIM", "higher"), "lpips": ("LPIPS", "lower"),
    "psnr": ("PSNR", "higher"), "fad": ("FAD", "lower"), "kl": ("KL", "lower"),
    "fd_vgg": ("FD_VGG", "lower"), "fd_panns": ("FD_PANNs", "lower"), "clips": ("clips", None),
    "vggish_patches": ("VGGish patches", None),
}
# the columns of the across-tasks table (each task's own tables show every metric)
HEADLINE = ("fid", "is", "clip_score", "class_fidelity", "ssim", "lpips", "psnr", "fad", "fd_vgg", "fd_panns", "kl")

STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1300px;margin:0 auto;padding:1.5em 2em;background:#fff}
nav{position:sticky;top:0;background:#263238;padding:.5em 2em;z-index:2}
nav a{color:#eceff1;margin-right:1.4em;text-decoration:none;font-size:14px}
h1{margin-top:.2em} h2{border-bottom:2px solid #263238;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.6em;color:#37474f}
table{border-collapse:collapse;margin:.8em 0;font-size:13px}
th,td{border:1px solid #d0d0d0;padding:4px 9px;text-align:right;white-space:nowrap}
th{background:#eceff1;cursor:pointer;user-select:none}
th[data-order=asc]::after{content:" ▲"} th[data-order=desc]::after{content:" ▼"}
td.text,th.text{text-align:left;font-family:ui-monospace,monospace}
td.best{font-weight:700;background:#e8f5e9} td.best::after{content:" ★";color:#2e7d32}
.figs img{max-width:100%;display:block;margin:.6em 0}
.curves{display:flex;flex-wrap:wrap;gap:10px}
.grids{display:flex;flex-wrap:wrap;gap:14px}.grids figure{margin:0}
.grids img{image-rendering:pixelated;border:1px solid #ccc}
figcaption{font-size:12px;text-align:center;font-family:ui-monospace,monospace;max-width:260px}
.sounds td{vertical-align:top} .sounds audio{width:230px;display:block}
.note{color:#555;font-size:13px} pre{background:#f5f5f5;padding:.8em;font-size:12px;overflow:auto;max-height:28em}
"""

SORTER = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var asc = th.getAttribute("data-order") !== "asc";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-order"); });
    th.setAttribute("data-order", asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
      var nx = parseFloat(x), ny = parseFloat(y), r;
      if (!isNaN(nx) && !isNaN(ny)) { r = nx - ny; } else { r = String(x).localeCompare(String(y)); }
      return asc ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


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


def load_run(path: str | Path) -> Run:
    path = Path(path)
    results_file = path / "results.json"
    if not results_file.is_file():
        raise ReportError(f"{path} is not a finished run directory: {results_file} is missing "
                          "(run `condbench run SUITE -o DIR` first; results.jsonl alone holds the cells finished so far)")
    results = json.loads(results_file.read_text())
    analysis = {}
    for model in results.get("analysis", {}):
        npz = path / f"analysis_{_slug(model)}.npz"
        analysis[model] = dict(np.load(npz)) if npz.is_file() else {}
    grids_file = path / "samples_grid.npz"
    grids = np.load(grids_file) if grids_file.is_file() else {}
    return Run(path, results, analysis, grids)


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _cell(value: Any, digits: int = 4, text: bool = False, best: bool = False, display: Optional[str] = None) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "<td data-v=''>–</td>"
    shown = display if display is not None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))
    classes = " ".join(c for c, on in (("text", text), ("best", best)) if on)
    return f"<td class='{classes}' data-v='{_esc(value)}'>{_esc(shown)}</td>"


def _table(headers: list[str], rows: list[str], text_cols: int = 1, table_id: str = "") -> str:
    head = "".join(f"<th class='{'text' if i < text_cols else ''}'>{_esc(h)}</th>" for i, h in enumerate(headers))
    ident = f" id='{table_id}'" if table_id else ""
    return f"<table class='sortable'{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _metric_keys(records: list[dict]) -> list[str]:
    keys: list[str] = []
    for r in records:
        keys += [k for k in r["metrics"] if k not in keys]
    return keys


def _best(records: list[dict], key: str) -> Optional[float]:
    values = [r["metrics"].get(key) for r in records if r["metrics"].get(key) is not None]
    if not values or METRICS.get(key, ("", None))[1] is None:  # unknown direction: no "best"
        return None
    return min(values) if METRICS[key][1] == "lower" else max(values)


def _label(key: str) -> str:
    label, direction = METRICS.get(key, (key, ""))
    return f"{label} {'↓' if direction == 'lower' else '↑' if direction == 'higher' else ''}".strip()


def embedding_section(task: str, runs: list[Run]) -> str:
    rows, figures = [], []
    for run in runs:
        for model, stats in run.results.get("analysis", {}).items():
            c, cond = stats["c"], stats["cond_only"]
            rows.append("<tr>" + _cell(model, text=True) + _cell(c["dim"]) + _cell(c["pr"]["mean"], 2)
                        + _cell(c["npr"]["mean"], display=f"{c['npr']['mean']:.2%}") + _cell(c["cosine"]["mean"])
                        + _cell(c["cosine"]["min"]) + _cell(cond["cosine"]["mean"])
                        + _cell(cond["npr"]["mean"], display=f"{cond['npr']['mean']:.2%}")
                        + _cell(c["variance"]["mean"], 6) + _cell(stats["t_only"]["energy_share_in_c"], 3) + "</tr>")
            figures.append(model_figures(model, stats, run.analysis.get(model, {})))
    table = _table(["model", "d", "PR", "nPR", "mean cosine", "min cosine", "cond-only cosine", "cond-only nPR",
                    "mean variance", "t share of |c|²"], rows, table_id=f"table1-{_slug(task)}")
    note = ("<p class=note>At the sampler's first step (pure noise). PR and nPR are computed per condition, then "
            "averaged. “cond-only” is the condition embedding without the timestep embedding; “t share” is "
            "|t|²/|c|², averaged over conditions.</p>")
    return f"<h3>Embedding statistics (Table 1)</h3>{table}{note}{''.join(figures)}"


def model_figures(model: str, stats: dict, arrays: dict[str, np.ndarray]) -> str:
    if "c_matrix" not in arrays:
        return f"<p class=note>{_esc(model)}: analysis arrays missing, figures skipped.</p>"
    c = stats["c"]
    parts = [f"<h4>{_esc(model)}</h4><div class=figs>",
             f"<img alt='cosine heatmaps' src='{plots.cosine_heatmaps(arrays['c_cosine'])}'>",
             f"<img alt='magnitudes' src='{plots.magnitude_figure(arrays['c_matrix'], arrays['c_sorted_mean_abs'], arrays['c_dim_var'], c['head_k'])}'>",
             f"<img alt='trajectory' src='{plots.trajectory_figure(arrays['sweep_step'], {'sweep_cosine_mean': arrays['sweep_cosine_mean'], 'sweep_npr_mean': arrays['sweep_npr_mean'], 'sweep_norm_mean': arrays['sweep_norm_mean']}, {'sweep_cosine_mean': 'mean cosine of c over steps', 'sweep_npr_mean': 'nPR of c over steps', 'sweep_norm_mean': '|c| over steps'})}'>",
             f"<img alt='condition only vs c' src='{plots.cond_vs_full_figure(arrays['c_cosine'], arrays['cond_cosine'])}'>",
             f"<img alt='2-D embedding' src='{plots.embedding_2d_figure(arrays['c_matrix'], c['head_by_magnitude'])}'>",
             "</div>"]
    return "".join(parts)


def policy_section(task: str, runs: list[Run]) -> str:
    out = ["<h3>Policies (Table 2)</h3>"]
    for run in runs:
        by_model: dict[str, list[dict]] = {}
        for r in run.results["records"]:
            by_model.setdefault(r["model"], []).append(r)
        for model, records in by_model.items():
            keys = _metric_keys(records)
            delta_keys = [k for k in keys if any(k in r.get("paired_vs_baseline", {}) for r in records)]
            best = {k: _best(records, k) for k in keys}
            rows = []
            for r in records:
                cells = [_cell(r["policy"], text=True),
                         _cell(r["dims_removed"], 1, display=f"{r['dims_removed']:.1f} ({r['dims_removed_fraction']:.0%})")]
                cells += [_cell(r["metrics"].get(k), best=best[k] is not None and r["metrics"].get(k) == best[k])
                          for k in keys]
                for k in delta_keys:
                    d = r.get("paired_vs_baseline", {}).get(k)
                    cells.append(_cell(d["delta"], display=f"{d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
                                 if d else _cell(None))
                cells.append(_cell(r["timing"]["seconds"], 1))
                rows.append("<tr>" + "".join(cells) + "</tr>")
            headers = ["policy", "dims removed"] + [_label(k) for k in keys] + \
                      [f"Δ {METRICS.get(k, (k,))[0]} [95% CI]" for k in delta_keys] + ["seconds"]
            out.append(f"<p class=note>{_esc(model)}: {records[0]['num_samples']} samples per policy, seed "
                       f"{records[0]['seed']}; Δ columns are paired differences against the baseline (same noise per "
                       "index) with 95% bootstrap intervals; ★ marks the best value of each metric. Click a column "
                       "to sort.</p>")
            out.append(_table(headers, rows, table_id=f"table2-{_slug(task)}-{_slug(model)}"))
            out.append(curves_html(records, keys))
    return "".join(out)


def curves_html(records: list[dict], keys: list[str]) -> str:
    """Each metric against the fraction removed for tail, its random control and head (every-step policies)."""
    baseline = next((r for r in records if r["policy"] == "baseline"), None)
    families: dict[str, list[tuple[float, dict]]] = {"tail": [], "random-like": [], "head": []}
    for r in records:
        policy = parse_policy(r["policy"])
        if policy.schedule.kind != "all" or policy.mask != "per-sample" or policy.branch != "both":
            continue
        kind = policy.action.kind
        if kind == "random-like" and policy.action.control_of.kind == "tail":
            families["random-like"].append((r["dims_removed_fraction"], r))
        elif kind in ("tail", "head"):
            families[kind].append((r["dims_removed_fraction"], r))
    if not any(families.values()):
        return ""
    images = []
    for key in [k for k in keys if METRICS.get(k, ("", "any"))[1] is not None]:  # not spreads like IS std
        curves = {f: [(x, r["metrics"][key]) for x, r in pts] + ([(0.0, baseline["metrics"][key])] if baseline else [])
                  for f, pts in families.items() if pts}
        images.append(f"<img alt='{_esc(key)} against fraction removed' "
                      f"src='{plots.pruning_curves(curves, _label(key), baseline['metrics'][key] if baseline else None)}'>")
    return "<div class=curves>" + "".join(images) + "</div>"


def sounds_section(runs: list[Run]) -> str:
    """Waveform grids (N, L): one row per policy, the same first clips in the same columns, each a player and
    its mel spectrogram."""
    rows, columns = [], 0
    for run in runs:
        rates = {model: info.get("sample_rate", 16000) for model, info in run.results.get("models", {}).items()}
        for key, name in run.results.get("grids", {}).items():
            if name not in run.grids:
                continue
            waves, rate = run.grids[name], rates.get(key.split("|")[0], 16000)
            columns = max(columns, len(waves))
            cells = "".join(f"<td><audio controls preload=auto data-clip={i} data-seconds='{len(w) / rate:.6f}' "
                            f"src='{plots.wav_uri(w, rate)}'></audio><img alt='mel spectrogram of clip {i}' "
                            f"src='{plots.mel_png(w, rate)}'></td>" for i, w in enumerate(waves))
            rows.append(f"<tr><td class=text>{_esc(key.replace('|', ' · '))}</td>{cells}</tr>")
    head = "".join(f"<th>clip {i}</th>" for i in range(columns))
    return ("<h3>Sounds</h3><p class=note>The same clips (sample indices 0..) in the same columns for every "
            "policy, each generated from the same noise: players (16-bit wav) and log-mel spectrograms.</p>"
            f"<table class=sounds><thead><tr><th class=text>policy</th>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>")


def samples_section(runs: list[Run]) -> str:
    if any(run.grids[name].ndim == 2 for run in runs for name in run.results.get("grids", {}).values()
           if name in run.grids):
        return sounds_section(runs)
    out = ["<h3>Samples</h3><p class=note>The same seeds in the same places: the cell in row r, column k of "
           "a grid with n columns is sample index r·n + k in every grid, so it shows what the policy changed for "
           "that exact noise.</p><div class=grids>"]
    for run in runs:
        for key, name in run.results.get("grids", {}).items():
            if name in run.grids:
                grid = run.grids[name]
                uri = plots.grid_png(grid, per_row=plots.grid_per_row(len(grid)))
                out.append(f"<figure><img alt='samples {_esc(key)}' src='{uri}'>"
                           f"<figcaption>{_esc(key.replace('|', ' · '))}</figcaption></figure>")
    out.append("</div>")
    out += [pair_grid(run, model) for run in runs for model in run.results.get("models", {})]
    return "".join(out)


PAIR_PARTS = ("source", "pose", "target")


def pair_grid(run: Run, model: str) -> str:
    """Paired tasks (pose): one row per pair, columns source | pose | target | baseline | each policy."""
    context = [f"context_{_slug(run.task)}_{part}" for part in PAIR_PARTS]
    if not all(key in run.grids for key in context):
        return ""
    columns = [(key.split("|", 1)[1], name) for key, name in run.results.get("grids", {}).items()
               if key.split("|", 1)[0] == model and name in run.grids]
    parts = [run.grids[key] for key in context] + [run.grids[name] for _, name in columns]  # each (N, 3, H, W)
    count = min(len(p) for p in parts)
    cells = np.stack([p[:count] for p in parts], axis=1).reshape(-1, *parts[0].shape[1:])  # row i: pair i's columns
    uri = plots.grid_png(cells, per_row=len(parts))
    header = " | ".join([*PAIR_PARTS, *(policy for policy, _ in columns)])
    return (f"<h3>Pairs · {_esc(model)}</h3><p class=note>One row per test pair (the first {count}); columns: "
            f"{_esc(header)}. Every policy saw the same source, pose and noise.</p>"
            f"<figure><img alt='pair grid {_esc(model)}' src='{uri}'></figure>")


def summary_section(runs: list[Run]) -> str:
    """One row per (model, policy), one column per (task, headline metric)."""
    columns: list[tuple[str, str]] = []
    table: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    for run in runs:
        for r in run.results["records"]:
            for k, v in r["metrics"].items():
                if k not in HEADLINE:
                    continue
                if (run.task, k) not in columns:
                    columns.append((run.task, k))
                table.setdefault((r["model"], r["policy"]), {})[(run.task, k)] = v
    rows = []
    for (model, policy), values in table.items():
        rows.append("<tr>" + _cell(model, text=True) + _cell(policy, text=True)
                    + "".join(_cell(values.get(col)) for col in columns) + "</tr>")
    headers = ["model", "policy"] + [f"{task}: {_label(k)}" for task, k in columns]
    return "<h2 id=summary>Across tasks</h2>" + _table(headers, rows, text_cols=2, table_id="summary-table")


def training_section(runs: list[Run]) -> str:
    parts = []
    for run in runs:
        track = run.results.get("training_track")
        if track and track.get("points"):
            recipe = ", ".join(f"{k} {v}" for k, v in track.get("recipe", {}).items())
            parts.append(f"<h3>{_esc(run.task)}</h3><p class=note>Recorded every {track.get('every')} steps while "
                         f"the model was trained ({_esc(recipe)}): c at the sampler's first timestep over all "
                         f"conditions.</p><div class=figs><img alt='training dynamics' "
                         f"src='{plots.training_figure(track['points'])}'></div>")
    return ("<h2 id=training>Training dynamics</h2>" + "".join(parts)) if parts else ""


def provenance_section(runs: list[Run]) -> str:
    parts = ["<h2 id=provenance>Provenance</h2>"]
    for run in runs:
        r = run.results
        protocols = sorted({rec["protocol"] for rec in r["records"]})
        parts.append(f"<h3>{_esc(run.path)}</h3><p class=note>schema {r.get('schema_version')}; metric protocol: "
                     f"{_esc('; '.join(protocols))}</p>")
        payload = {"environment": r["environment"], "suite": r["suite"], "task": r["task"], "models": r["models"]}
        parts.append(f"<pre>{_esc(json.dumps(payload, indent=1, default=str))}</pre>")
    return "".join(parts)


def build_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write the report of ``run_dirs`` to ``out`` and return its path."""
    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise ReportError("no run directories given")
    tasks: dict[str, list[Run]] = {}
    for run in runs:
        tasks.setdefault(run.task, []).append(run)
    nav = ["<a href='#summary'>Across tasks</a>"] + [f"<a href='#task-{_slug(t)}'>{_esc(t)}</a>" for t in tasks]
    body = [f"<h1>condbench report</h1><p class=note>{len(runs)} run(s): "
            f"{_esc(', '.join(str(r.path) for r in runs))}</p>", summary_section(runs)]
    for task, task_runs in tasks.items():
        body.append(f"<h2 id='task-{_slug(task)}'>Task: {_esc(task)}</h2>")
        body.append(embedding_section(task, task_runs))
        body.append(policy_section(task, task_runs))
        body.append(samples_section(task_runs))
    training = training_section(runs)
    if training:
        nav.append("<a href='#training'>Training dynamics</a>")
        body.append(training)
    body.append(savings_section([r.path for r in runs]))  # reports/savings.py: RUN_DIR/pruned/*/savings.json
    body.append(blocks_section([r.path for r in runs]))  # reports/blocks.py: RUN_DIR/blocks.json
    nav.append("<a href='#provenance'>Provenance</a>")
    body.append(provenance_section(runs))
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>condbench report</title>"
            f"<style>{STYLE}</style></head><body><nav>{''.join(nav)}</nav><main>{''.join(body)}</main>"
            f"<script>{SORTER}</script></body></html>")
    return atomic_write(out, page)
