"""``condbench report RUN_DIR... -o report.html``: one self-contained page across runs and tasks.

Per task: the embedding statistics (the study's Table 1 and its figures), the policies (Table 2 with
paired deltas, significant changes and best values marked, metric-vs-fraction-removed curves), the study's
own numbers for the same models, sample grids with the same seeds in the same places; across tasks: one
summary table; then training dynamics and provenance. This module turns runs into plain data (Table 1 and
Table 2 from the table model of :mod:`.tables`, which ``condbench tables`` writes too); the layout is the jinja2
template ``templates/report.html.j2``; every figure is also written as PDF and SVG under ``RUN_DIR/figures/``.
Every image is embedded as a data URI and the only script is the inline table sorter, so the file opens anywhere.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..policies import parse_policy
from ..storage import atomic_write
from . import paper_reference, plots, tables
from .blocks import blocks_results
from .savings import HEADERS as SAVINGS_HEADERS, savings_rows
from .tables import (DIGITS, MetricCell, ReportError, Run, Shown, load_run, metric_entry, metric_keys,
                     metric_label, removed_entry, shown, slug)

TABLE2_NOTE = (
    "Each metric cell holds the value, then Δ, the paired difference against the baseline (same noise per sample "
    "index), and its 95% bootstrap interval. ★ marks a change whose interval excludes 0 in the better direction; "
    "red, one that excludes 0 in the worse direction. Bold marks the best value of a column when it beats the "
    "baseline; rows that tie (at the digits shown) are all bold. “dims removed” is the mean number of zeroed "
    "dimensions per row the network sees, over both guidance branches (conditional and unconditional rows) and "
    "over every step the policy acts; Table 1's s(τ)·d counts the conditional embeddings at the first step only, "
    "so the two differ. Click a column to sort.")


# --- cells and tables: plain dicts the template lays out ---------------------------------------------

def cell(value: Any, digits: int = DIGITS, text: Optional[str] = None, cls: str = "", sub: str = "",
         title: str = "") -> dict:
    """One table cell: ``v`` sorts it, ``text`` shows it, ``sub`` is a smaller second line."""
    number = shown(value, f".{digits}f")
    return shown_cell(number if text is None or number.raw is None else Shown(text, number.number, value),
                      cls=cls, sub=sub, title=title)


def shown_cell(number: Shown, cls: str = "", sub: str = "", title: str = "") -> dict:
    """The cell of a number of the table model (:mod:`.tables`): sorted by its unrounded value."""
    return {"v": "" if number.raw is None else number.raw, "text": number.text, "cls": cls, "sub": sub,
            "title": title}


def header(text: str, cls: str = "", title: str = "") -> dict:
    return {"text": text, "cls": cls, "title": title}


def table(table_id: str, headers: list[dict], rows: list[dict]) -> dict:
    return {"id": table_id, "headers": headers, "rows": rows}


def removed_cell(record: dict) -> dict:
    """Dimensions removed, or the part of c a drop-t/drop-cond policy removes."""
    removed, part = removed_entry(record)
    return removed_html(removed, part)


def removed_html(removed: Shown, part: bool) -> dict:
    return shown_cell(removed, cls="part" if part else "")


def metric_cell(record: dict, key: str, best: set[str]) -> dict:
    return metric_html(metric_entry(record, key, best))


def metric_html(entry: MetricCell) -> dict:
    """A metric cell: its marks as classes (the page draws ★, bold and red), Δ and interval below."""
    return shown_cell(entry.value, cls=" ".join(entry.marks), sub=entry.delta_text)


# --- sections --------------------------------------------------------------------------------------------

def table1(task: str, runs: list[Run]) -> tuple[dict, list[str]]:
    """The embedding statistics of every model, each followed by the study's row for it where there is one."""
    rows, sources = [], []
    for row in (r for r in tables.table1_rows(runs) if r.task == task):
        rows.append({"cls": "", "cells": [cell(row.model, cls="text"), *map(shown_cell, row.cells)]})
        paper = paper_reference.paper_model(row.model)
        if paper and paper.table1:
            rows.append(paper_table1_row(row.model, paper))
            sources += sorted({ref.source for ref in paper.table1.values()} - set(sources))
    headers = [header("model", "text")] + [header(column.header) for column in tables.TABLE1_COLUMNS]
    return table(f"table1-{slug(task)}", headers, rows), sources


def paper_table1_row(model: str, paper: paper_reference.PaperModel) -> dict:
    def ref(key: str, percent: bool = False) -> dict:
        """A number as the study prints it, its table and column as the tooltip."""
        r = paper.table1.get(key)
        if r is None:
            return cell(None)
        return cell(r.value, text=f"{r.value:.2%}" if percent else repr(r.value), title=r.source)

    return {"cls": "paper", "cells": [
        cell(f"study: {model}", cls="text", title=paper.label), ref("dim"), ref("pr"), ref("npr", percent=True),
        ref("cosine"), cell(None), ref("cond_cosine"), ref("cond_npr", percent=True), cell(None), cell(None)]}


def model_figures(model: str, stats: dict, arrays: dict[str, np.ndarray], folder: Path) -> dict:
    """The figures of one model's embedding statistics; each also written as PDF and SVG into ``folder``."""
    if "c_matrix" not in arrays:
        return {"model": model, "missing": True, "images": []}
    c = stats["c"]
    sweep = {"sweep_cosine_mean": arrays["sweep_cosine_mean"], "sweep_npr_mean": arrays["sweep_npr_mean"],
             "sweep_norm_mean": arrays["sweep_norm_mean"]}
    labels = {"sweep_cosine_mean": "mean cosine of c over steps", "sweep_npr_mean": "nPR of c over steps",
              "sweep_norm_mean": "|c| over steps"}

    def named(what: str) -> Path:
        return folder / f"{slug(model)}_{what}"

    return {"model": model, "missing": False, "images": [
        ("cosine heatmaps", plots.cosine_heatmaps(arrays["c_cosine"], save_as=named("cosine_heatmaps"))),
        ("magnitudes", plots.magnitude_figure(arrays["c_matrix"], arrays["c_sorted_mean_abs"], arrays["c_dim_var"],
                                              c["head_k"], save_as=named("magnitudes_and_variance_of_c"))),
        ("trajectory", plots.trajectory_figure(arrays["sweep_step"], sweep, labels,
                                               save_as=named("c_over_sampling_steps"))),
        ("condition only vs c", plots.cond_vs_full_figure(arrays["c_cosine"], arrays["cond_cosine"],
                                                          save_as=named("cosine_condition_only_vs_c"))),
        ("2-D embedding", plots.embedding_2d_figure(arrays["c_matrix"], c["head_by_magnitude"],
                                                    save_as=named("embedding_2d_full_head_tail")))]}


def table1_protocol(runs: list[Run]) -> list[tuple[str, str]]:
    items = []
    for run in runs:
        for model, stats in run.results.get("analysis", {}).items():
            items.append((model, f"c at sampling step {stats.get('step', 0)} (t = {stats.get('t', '?')}), "
                                 f"{stats['c'].get('num_conditions', '?')} conditions; PR and nPR per condition, "
                                 "then averaged"))
    return items


def guidance_text(sampler: dict) -> str:
    scale = sampler.get("cfg_scale")
    if scale is None or scale == 1.0:
        return "none (one conditional forward per step)"
    channels = sampler.get("cfg_channels")
    where = f", on the first {channels} output channels" if channels else ""
    # MDT, X-MDPT and MDSGen scale the guidance by a power-cosine of t (they carry scale_pow)
    how = (f"power-cosine schedule (pow {sampler['scale_pow']:g}) up to scale {scale:g}" if "scale_pow" in sampler
           else f"scale {scale:g}")
    return f"classifier-free, {how}{where}: a conditional and an unconditional branch per step"


def model_protocol(run: Run, model: str, records: list[dict]) -> list[tuple[str, str]]:
    """Sampler, guidance, samples, bootstrap and metric protocol of one model's Table 2."""
    first = records[0]
    sampler = first.get("config", {}).get("sampler") or run.results.get("models", {}).get(model, {}).get("sampler", {})
    resamples = next((p["resamples"] for r in records for p in r.get("paired_vs_baseline", {}).values()
                      if "resamples" in p), run.results.get("suite", {}).get("bootstrap"))
    steps = f", {sampler['num_steps']} steps" if sampler.get("num_steps") else ""
    return [("sampler", f"{sampler.get('name', '?')}{steps}"), ("guidance", guidance_text(sampler)),
            ("samples", f"{first['num_samples']} per policy, seed {first['seed']}, the same noise per sample index"),
            ("bootstrap", f"{resamples} paired resamples per Δ interval (95% basic interval, pivot about their "
                          "median)" if resamples else "none"),
            ("metric protocol", "; ".join(sorted({r["protocol"] for r in records})))]


def table2(model_table: tables.Table2) -> dict:
    """Table 2 of one model as the page's table: policy, dims removed, each metric, seconds."""
    rows = [{"cls": "", "cells": [cell(row.policy, cls="text policy"), removed_html(row.removed, row.removed_part)]
             + [metric_html(entry) for entry in row.cells] + [shown_cell(row.seconds)]} for row in model_table.rows]
    headers = [header("policy", "text"), header("dims removed", title="mean zeroed dimensions per row, both "
                                                 "guidance branches, over the steps the policy acts")]
    headers += [header(metric_label(k), title="value; Δ vs baseline [95% paired bootstrap interval]")
                for k in model_table.metrics]
    return table(f"table2-{slug(model_table.task)}-{slug(model_table.model)}", headers + [header("sampling s")], rows)


def paper_table2(model: str, records: list[dict]) -> Optional[dict]:
    """The study's Table 2 rows for ``model``, with a caution when the run's sample count differs."""
    paper = paper_reference.paper_model(model)
    if not paper or not paper.table2:
        return None
    keys = [k for k in tables.METRICS if any(k in row.metrics for row in paper.table2)]
    rows = [{"cls": "paper", "cells": [cell(row.policy, cls="text policy"), cell(row.removed, cls="text")]
             + [cell(row.metrics[k].value, text=repr(row.metrics[k].value), title=row.metrics[k].source)
                if k in row.metrics else cell(None)
                for k in keys]
             + [cell(", ".join(sorted({ref.source for ref in row.metrics.values()})), cls="text policy")]}
            for row in paper.table2]
    headers = [header("policy", "text"), header("dims removed", "text")] + [header(metric_label(k)) for k in keys] \
        + [header("source", "text")]
    caution = ""
    if paper.samples and records[0]["num_samples"] != paper.samples:
        caution = (f"This run has {records[0]['num_samples']} samples per policy, the study {paper.samples:,}: FID "
                   "and the other set metrics depend on the sample count, so compare changes, not values.")
    return {"label": paper.label, "note": paper.table2_note, "caution": caution,
            "table": table(f"paper-table2-{slug(model)}", headers, rows)}


def curves(records: list[dict], keys: list[str], folder: Path) -> list[tuple[str, str]]:
    """Each metric against the fraction removed for tail, its random control and head (every-step policies),
    with the paired intervals as error bars; each also written as PDF and SVG into ``folder``."""
    baseline = next((r for r in records if r["policy"] == "baseline"), None)
    families: dict[str, list[dict]] = {"tail": [], "random-like": [], "head": []}
    for r in records:
        policy = parse_policy(r["policy"])
        if policy.schedule.kind != "all" or policy.mask != "per-sample" or policy.branch != "both":
            continue
        kind = policy.action.kind
        if kind == "random-like" and policy.action.control_of.kind == "tail":
            families["random-like"].append(r)
        elif kind in ("tail", "head"):
            families[kind].append(r)
    if not any(families.values()):
        return []
    images = []
    for key in [k for k in keys if tables.is_score(k)]:  # not spreads like IS std
        lines = {}
        for family, members in families.items():
            points = [plots.CurvePoint(r["dims_removed_fraction"], r["metrics"][key],
                                       *_interval(r["metrics"][key], r.get("paired_vs_baseline", {}).get(key)))
                      for r in members if r["metrics"].get(key) is not None]
            if points and baseline:
                points.append(plots.CurvePoint(0.0, baseline["metrics"][key]))
            if points:
                lines[family] = points
        images.append((f"{key} against fraction removed",
                       plots.pruning_curves(lines, metric_label(key), baseline["metrics"][key] if baseline else None,
                                            save_as=folder / f"{slug(records[0]['model'])}_{key}_vs_fraction_removed")))
    return images


def _interval(value: float, paired: Optional[dict]) -> tuple[Optional[float], Optional[float]]:
    """The paired 95% interval of a change, placed around the policy's value (None, None without one)."""
    if not paired:
        return None, None
    return value + paired["ci95"][0] - paired["delta"], value + paired["ci95"][1] - paired["delta"]


CURVES_NOTE = ("Every-step policies only: each metric against the fraction of c removed (both guidance branches), "
               "for tail pruning, its random-like control and head pruning; error bars are the paired 95% "
               "bootstrap intervals of the change against the baseline, drawn around each value. A metric axis "
               "spanning more than a factor 20 is logarithmic.")


def policy_models(task: str, runs: list[Run]) -> list[dict]:
    out = []
    for (cell_task, model), (run, records) in tables.records_by_cell(runs).items():
        if cell_task == task:
            out.append({"name": model, "protocol": model_protocol(run, model, records), "note": TABLE2_NOTE,
                        "table2": table2(tables.table2(task, model, records)), "paper": paper_table2(model, records),
                        "curves": curves(records, metric_keys(records), run.path / plots.FIGURES),
                        "curves_note": CURVES_NOTE})
    return out


def sounds(runs: list[Run]) -> Optional[dict]:
    """Waveform grids (N, L): one row per policy, the same first clips in the same columns, each a player
    and its mel spectrogram; None when the runs hold image grids."""
    if not any(run.grids[name].ndim == 2 for run in runs for name in run.results.get("grids", {}).values()
               if name in run.grids):
        return None
    rows, columns = [], 0
    for run in runs:
        rates = {model: info.get("sample_rate", 16000) for model, info in run.results.get("models", {}).items()}
        for key, name in run.results.get("grids", {}).items():
            if name not in run.grids:
                continue
            waves, rate = run.grids[name], rates.get(key.split("|")[0], 16000)
            columns = max(columns, len(waves))
            rows.append({"label": key.replace("|", " · "), "clips": [
                {"index": i, "seconds": f"{len(w) / rate:.6f}", "wav": plots.wav_uri(w, rate),
                 "mel": plots.mel_png(w, rate)} for i, w in enumerate(waves)]})
    return {"columns": columns, "rows": rows}


def image_grids(runs: list[Run]) -> list[dict]:
    """Image sample grids (N, C, H, W), one per (model, policy); waveform grids are the players' (:func:`sounds`)."""
    out = []
    for run in runs:
        for key, name in run.results.get("grids", {}).items():
            if name in run.grids and run.grids[name].ndim == 4:
                grid = run.grids[name]
                out.append({"key": key, "caption": key.replace("|", " · "),
                            "uri": plots.grid_png(grid, per_row=plots.grid_per_row(len(grid)))})
    return out


PAIR_PARTS = ("source", "pose", "target")


def pair_grid(run: Run, model: str) -> Optional[dict]:
    """Paired tasks (pose): one row per pair, columns source | pose | target | baseline | each policy."""
    context = [f"context_{slug(run.task)}_{part}" for part in PAIR_PARTS]
    if not all(key in run.grids for key in context):
        return None
    columns = [(key.split("|", 1)[1], name) for key, name in run.results.get("grids", {}).items()
               if key.split("|", 1)[0] == model and name in run.grids]
    parts = [run.grids[key] for key in context] + [run.grids[name] for _, name in columns]  # each (N, 3, H, W)
    count = min(len(p) for p in parts)
    cells = np.stack([p[:count] for p in parts], axis=1).reshape(-1, *parts[0].shape[1:])  # row i: pair i's columns
    return {"model": model, "count": count, "header": " | ".join([*PAIR_PARTS, *(policy for policy, _ in columns)]),
            "uri": plots.grid_png(cells, per_row=len(parts))}


def summary(runs: list[Run]) -> dict:
    """One row per (model, policy), one column per (task, headline metric): every task of ``runs`` appears."""
    columns: list[tuple[str, str]] = []
    values_by_row: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    for run in runs:
        headline = {task: tables.headline_metrics(run, task) for task in dict.fromkeys(map(run.record_task,
                                                                                        run.results["records"]))}
        for r in run.results["records"]:
            task = run.record_task(r)
            columns += [(task, k) for k in headline[task] if (task, k) not in columns]
            values_by_row.setdefault((r["model"], r["policy"]), {}).update(
                {(task, k): r["metrics"].get(k) for k in headline[task]})
    rows = [{"cls": "", "cells": [cell(model, cls="text"), cell(policy, cls="text policy")]
             + [cell(values.get(col)) for col in columns]} for (model, policy), values in values_by_row.items()]
    headers = [header("model", "text"), header("policy", "text")] + [header(f"{task}: {metric_label(k)}")
                                                                    for task, k in columns]
    return table("summary-table", headers, rows)


def training(runs: list[Run]) -> list[dict]:
    out = []
    for run in runs:
        track = run.results.get("training_track")
        if track and track.get("points"):
            out.append({"task": run.task, "every": track.get("every"),
                        "recipe": ", ".join(f"{k} {v}" for k, v in track.get("recipe", {}).items()),
                        "uri": plots.training_figure(track["points"], save_as=run.path / plots.FIGURES
                                                     / f"training_dynamics_{slug(run.task)}")})
    return out


def git_text(environment: dict) -> str:
    """What provenance says about the code's git commit."""
    if "git" not in environment:
        return "not recorded (the run predates condbench recording it)"
    git = environment["git"]
    if git is None:
        return "not a git checkout (condbench ran from an installed package)"
    return git["commit"] + (" with uncommitted changes" if git.get("dirty") else "")


def provenance(runs: list[Run]) -> list[dict]:
    out = []
    for run in runs:
        r = run.results
        env = r["environment"]
        items = [("condbench", f"{env.get('condbench')}"), ("git commit", git_text(env)),
                 ("command", env.get("command", "?")), ("date", env.get("date", "?")),
                 ("torch / device", f"{env.get('torch')} / {env.get('cuda') or 'CPU'}"),
                 ("schema", str(r.get("schema_version"))),
                 ("metric protocol", "; ".join(sorted({rec["protocol"] for rec in r["records"]})))]
        payload = {"environment": env, "suite": r["suite"], "task": r["task"], "models": r["models"]}
        out.append({"path": str(run.path), "fields": items, "payload": json.dumps(payload, indent=1, default=str)})
    return out


def task_context(task: str, task_runs: list[Run]) -> dict:
    t1, sources = table1(task, task_runs)
    figures = [model_figures(model, stats, run.analysis.get(model, {}), run.path / plots.FIGURES)
               for run in task_runs for model, stats in run.results.get("analysis", {}).items()]
    note = ("At the sampler's first step (pure noise). PR and nPR are computed per condition, then averaged. "
            "“cond-only” is the condition embedding without the timestep embedding; “t share” is |t|²/|c|², "
            "averaged over conditions. s(τ)·d of the analysis counts these conditional embeddings only.")
    return {"name": task, "slug": slug(task), "comparability": paper_reference.comparability_note(task),
            "table1": t1, "table1_sources": sources, "table1_note": note,
            "table1_protocol": table1_protocol(task_runs), "figures": figures,
            "models": policy_models(task, task_runs), "sounds": sounds(task_runs),
            "grids": image_grids(task_runs),
            "pairs": [p for run in task_runs for model in run.results.get("models", {})
                      if (p := pair_grid(run, model)) is not None]}


def build_context(runs: list[Run]) -> dict:
    """Everything the template shows, as plain data."""
    tasks: dict[str, list[Run]] = {}
    for run in runs:
        tasks.setdefault(run.task, []).append(run)
    return {"runs": [str(r.path) for r in runs], "summary": summary(runs), "paper": paper_reference.PAPER,
            "tasks": [task_context(task, task_runs) for task, task_runs in tasks.items()],
            "training": training(runs), "provenance": provenance(runs),
            "savings": {"headers": SAVINGS_HEADERS, "rows": savings_rows([r.path for r in runs])},
            "blocks": blocks_results([r.path for r in runs])}


def breakable(text: str):
    """Escaped ``text`` with line-break opportunities after ':', '@' and ',' (policy specs wrap at their parts,
    and copy whole)."""
    import markupsafe

    return markupsafe.Markup(re.sub(r"([:@,])", r"\1<wbr>", str(markupsafe.escape(text))))


def render(context: dict) -> str:
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("condbench.reports", "templates"),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["breakable"] = breakable
    return environment.get_template("report.html.j2").render(**context)


def build_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write the report of ``run_dirs`` to ``out`` and return its path."""
    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise ReportError("no run directories given")
    return atomic_write(out, render(build_context(runs)))
