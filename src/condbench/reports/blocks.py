"""The report's section on block diversity: heatmaps of ``RUN_DIR/blocks.json`` (``condbench analyze --blocks``),
linear CKA between every pair of block outputs, one row of heatmaps per policy, one column per sampling step."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from ..blocks import BLOCKS_FILE
from .plots import _uri, plt


def blocks_figure(result: dict, measure: str = "cka") -> str:
    """A grid of (L, L) heatmaps, policies x steps, as a PNG data URI."""
    policies, steps = list(result["policies"]), [str(s) for s in result["steps"]]
    fig, axes = plt.subplots(len(policies), len(steps), figsize=(2.2 * len(steps), 2.2 * len(policies)),
                             squeeze=False)
    for row, policy in enumerate(policies):
        for col, step in enumerate(steps):
            ax = axes[row][col]
            image = ax.imshow(np.asarray(result["policies"][policy][step][measure]), vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"step {step}", fontsize=8)
            if col == 0:
                ax.set_ylabel(policy, fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6)
    return _uri(fig)


def blocks_section(run_dirs: list[Path]) -> str:
    """HTML for every run's ``blocks.json`` ('' when there is none)."""
    parts = []
    for run in run_dirs:
        path = Path(run) / BLOCKS_FILE
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        rows = "".join(f"<tr><td class=text>{html.escape(policy)}</td>" +
                       "".join(f"<td>{m['mean_cka']:.3f} / {m['mean_cosine']:.3f}</td>" for m in per_step.values())
                       + "</tr>" for policy, per_step in result["policies"].items())
        head = "".join(f"<th>step {s} (t = {t:g})</th>" for s, t in zip(result["steps"], result["timesteps"]))
        parts.append(f"<h3>{html.escape(result['model'])} ({html.escape(str(path))})</h3>"
                     f"<p class=note>Linear CKA between every pair of block outputs (tokens of {result['num_samples']} "
                     "samples as examples; 1 = the same representation up to rotation and scale), at the policy's "
                     "own trajectory, conditional branch. Table: mean off-diagonal CKA / mean token cosine (lower = "
                     "more diverse blocks).</p>"
                     f"<table class='sortable'><thead><tr><th class=text>policy</th>{head}</tr></thead>"
                     f"<tbody>{rows}</tbody></table><img alt='block CKA heatmaps' src='{blocks_figure(result)}'>")
    return "<h2 id=blocks>Block diversity</h2>" + "".join(parts) if parts else ""
