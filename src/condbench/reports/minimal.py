"""A minimal self-contained HTML page for one run directory: statistics, the policy table, sample grids.

The full cross-task report is a separate module; this page is what ``condbench run`` leaves beside its
results so that a run can be looked at straight away.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0} td:first-child,th:first-child{text-align:left}
.grids{display:flex;flex-wrap:wrap;gap:16px}.grids figure{margin:0}
figcaption{font-size:12px;text-align:center;font-family:monospace}
img.grid{image-rendering:pixelated;width:240px;border:1px solid #ccc}
.note{color:#666;font-size:13px}
"""


def grid_png(images: np.ndarray, per_row: int = 10, scale: int = 1) -> str:
    """Images (N, C, H, W) in [0, 1] -> a PNG grid as a data URI; row r holds indices r*per_row..."""
    from PIL import Image

    n, c, h, w = images.shape
    rows = -(-n // per_row)
    canvas = np.ones((rows * (h + 1), per_row * (w + 1)), dtype=np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, per_row)
        canvas[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = image.mean(0)
    img = Image.fromarray((canvas.clip(0, 1) * 255).astype(np.uint8), mode="L")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v) if not isinstance(v, str) else html.escape(v)}</td>" for v in row)
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_minimal_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``index.html`` (or ``out``) for the run in ``run_dir``."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    grids = np.load(run_dir / "samples_grid.npz")
    parts = [f"<h1>condbench run: {html.escape(results['suite']['name'])}</h1>",
             f"<p class=note>task {html.escape(results['task']['task'])}, {results['task']['num_samples']} samples "
             f"per policy, seed {results['suite']['seed']}; condbench {results['environment']['condbench']}, "
             f"torch {results['environment']['torch']}, {html.escape(results['environment']['date'])}</p>",
             "<h2>Embedding statistics (first sampling step)</h2>"]
    rows = []
    for model, stats in results["analysis"].items():
        for part in ("c", "cond_only"):
            s = stats[part]
            rows.append([f"{model} ({'t + cond' if part == 'c' else 'cond only'})", s["dim"], s["pr"]["mean"],
                         f"{s['npr']['mean']:.2%}", s["cosine"]["mean"], s["cosine"]["min"], s["variance"]["mean"]])
    parts.append(_table(["model", "d", "PR", "nPR", "mean cosine", "min cosine", "mean variance"], rows))
    parts.append("<h2>Policies</h2><p class=note>Δ class fidelity: paired difference against the baseline "
                 "(same noise per index), 95% bootstrap interval.</p>")
    rows = []
    for r in results["records"]:
        d = r["paired_vs_baseline"].get("correct")
        ci = f"{d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else "–"
        rows.append([r["model"], r["policy"], f"{r['dims_removed']:.1f} ({r['dims_removed_fraction']:.0%})",
                     r["metrics"]["fid"], r["metrics"]["is"], r["metrics"]["class_fidelity"], ci,
                     f"{r['timing']['seconds']:.1f}"])
    parts.append(_table(["model", "policy", "dims removed", "FID", "IS", "class fidelity", "Δ class fidelity",
                         "seconds"], rows))
    parts.append(f"<p class=note>Metric protocol: {html.escape(results['records'][0]['protocol'])}</p>")
    parts.append("<h2>Samples (same seeds in the same places; row k = indices 10k..10k+9, classes 0..9)</h2>"
                 "<div class=grids>")
    for key, name in results["grids"].items():
        parts.append(f"<figure><img class=grid src='{grid_png(grids[name], scale=3)}'>"
                     f"<figcaption>{html.escape(key)}</figcaption></figure>")
    parts.append("</div>")
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>condbench {html.escape(results['suite']['name'])}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    target = Path(out) if out else run_dir / "index.html"
    target.write_text(page)
    return target

