"""The report's block-diversity data: ``RUN_DIR/blocks*.json`` (``condbench analyze --blocks``, a suite's ``blocks``), linear CKA between
every pair of block outputs, as a table and heatmaps (one row per policy, one column per sampling step)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .plots import FIGURES, _uri, plt
from .tables import slug

BLOCKS_GLOB = "blocks*.json"  # `condbench analyze --blocks` writes blocks.json; a suite's blocks probe blocks_MODEL.json


def blocks_figure(result: dict, measure: str = "cka", save_as: Optional[Path] = None) -> str:
    """A grid of (L, L) heatmaps, policies x steps, as a PNG data URI (and PDF and SVG files with ``save_as``)."""
    policies, steps = list(result["policies"]), [str(s) for s in result["steps"]]
    fig, axes = plt.subplots(len(policies), len(steps), figsize=(2.2 * len(steps), 2.2 * len(policies)),
                             squeeze=False)
    for row, policy in enumerate(policies):
        for col, step in enumerate(steps):
            ax = axes[row][col]
            image = ax.imshow(np.asarray(result["policies"][policy][step][measure]), vmin=0, vmax=1, cmap="viridis")
            ax.set_xlabel("block", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"step {step}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{policy}\nblock", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label=f"linear {measure.upper()}")
    return _uri(fig, save_as)


def blocks_results(run_dirs: list[Path]) -> list[dict]:
    """Every run's ``blocks.json`` as template data: model, path, sample count, step headers, per-policy rows
    (mean off-diagonal CKA / mean token cosine per step) and the heatmap image."""
    results = []
    for path in (p for run in run_dirs for p in sorted(Path(run).glob(BLOCKS_GLOB))):
        result = json.loads(path.read_text())
        results.append({
            "model": result["model"], "path": str(path), "num_samples": result["num_samples"],
            "steps": [f"step {s} (t = {t:g})" for s, t in zip(result["steps"], result["timesteps"])],
            "rows": [{"policy": policy, "cells": [f"{m['mean_cka']:.3f} / {m['mean_cosine']:.3f}"
                                                  for m in per_step.values()]}
                     for policy, per_step in result["policies"].items()],
            "uri": blocks_figure(result, save_as=Path(path).parent / FIGURES / f"block_cka_{slug(result['model'])}")})
    return results
