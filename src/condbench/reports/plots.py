"""Figures of the report, each returned as a PNG data URI so the page embeds it (no network, one file); given
``save_as`` (a path without suffix), a figure is also written as ``save_as.pdf`` and ``save_as.svg`` for a paper."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..storage import atomic_write, ensure_folder  # noqa: E402

DPI = 90
COLORS = {"tail": "#1f77b4", "random-like": "#d62728", "head": "#2ca02c", "c": "#1f77b4", "cond": "#ff7f0e"}


FIGURES = "figures"  # the folder of a run directory that holds its figures as PDF and SVG files
VECTOR_FORMATS = ("pdf", "svg")


def _uri(fig, save_as: Optional[Path] = None) -> str:
    """The figure as a PNG data URI (then closed); with ``save_as``, first also as PDF and SVG files there."""
    if save_as is not None:
        save_vector(fig, save_as)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def save_vector(fig, stem: Path) -> list[Path]:
    """``fig`` as ``stem.pdf`` and ``stem.svg`` (each written atomically; the folder is made when missing)."""
    ensure_folder(stem.parent, "figures folder")
    paths = []
    for fmt in VECTOR_FORMATS:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
        paths.append(atomic_write(stem.parent / f"{stem.name}.{fmt}", buffer.getvalue()))
    return paths


def grid_per_row(n: int) -> int:
    """Images per grid row: 10 when the grid holds whole rounds of 10 classes (digits), else 8."""
    return 10 if n % 10 == 0 else 8


def grid_png(images: np.ndarray, per_row: int = 10, thumb: int = 96) -> str:
    """Images (N, C, H, W) in [0, 1] -> a grid as a data URI; row r holds indices r*per_row.. (RGB or grey).

    Small images are enlarged (nearest) to about 24 px; large ones become ``thumb``-pixel thumbnails and the
    grid a JPEG, so that a report of many policies of a 256-px model stays a few MB.
    """
    from PIL import Image

    n, c, h, w = images.shape
    rows = -(-n // per_row)
    channels = 3 if c == 3 else 1
    canvas = np.ones((rows * (h + 1), per_row * (w + 1), channels), dtype=np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, per_row)
        pixels = image.transpose(1, 2, 0) if channels == 3 else image.mean(0, keepdims=True).transpose(1, 2, 0)
        canvas[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = pixels
    array = (canvas.clip(0, 1) * 255).astype(np.uint8)
    img = Image.fromarray(array[..., 0] if channels == 1 else array, mode="L" if channels == 1 else "RGB")
    factor = thumb / h if h > thumb else max(1, 24 // h)
    if factor != 1:
        img = img.resize((round(img.width * factor), round(img.height * factor)),
                         Image.LANCZOS if factor < 1 else Image.NEAREST)
    buffer = io.BytesIO()
    if h > thumb:
        img.save(buffer, format="JPEG", quality=85)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    img.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def cosine_heatmaps(cosine: np.ndarray, zoom: int = 10, seed: int = 0, save_as: Optional[Path] = None) -> str:
    """The full cosine matrix over all conditions and a zoom on ``zoom`` conditions drawn at random."""
    n = len(cosine)
    panels = [(cosine, f"all {n} conditions", np.arange(n))]
    if n > zoom:  # with few conditions the zoom would repeat the full matrix
        picked = np.sort(np.random.default_rng(seed).choice(n, size=zoom, replace=False))
        panels.append((cosine[np.ix_(picked, picked)], f"{zoom} random conditions", picked))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4), squeeze=False)
    off = cosine[~np.eye(n, dtype=bool)] if n > 1 else cosine.ravel()
    vmin = float(off.min()) if off.size else 0.0
    for ax, (matrix, title, labels) in zip(axes[0], panels):
        im = ax.imshow(matrix, vmin=vmin, vmax=1.0, cmap="viridis", interpolation="nearest")
        ax.set_title(f"cosine of c, {title}", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046)
        if len(labels) <= 20:
            ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=90)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
    return _uri(fig, save_as)


def magnitude_figure(c_matrix: np.ndarray, sorted_mean_abs: np.ndarray, dim_var: np.ndarray, head_k: int,
                     save_as: Optional[Path] = None) -> str:
    """Histogram of |c_i|; sorted mean magnitudes and sorted per-dimension variance with the head marked."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    magnitudes = np.abs(c_matrix).ravel()
    bins = np.logspace(np.log10(max(magnitudes[magnitudes > 0].min(), 1e-6)), np.log10(magnitudes.max()), 50) \
        if (magnitudes > 0).any() else 50
    axes[0].hist(magnitudes, bins=bins, color=COLORS["c"])
    axes[0].set_xscale("log")
    axes[0].set_title("histogram of |c_i| (all conditions)", fontsize=10)
    axes[0].set_xlabel("|c_i|")
    for ax, values, title in ((axes[1], sorted_mean_abs, "mean |c_i|, sorted"),
                              (axes[2], np.sort(dim_var)[::-1], "variance across conditions, sorted")):
        ax.semilogy(np.arange(1, len(values) + 1), np.maximum(values, 1e-12), color=COLORS["c"])
        ax.axvspan(0.5, head_k + 0.5, color="#ffdd99", alpha=0.6, label=f"head (top {head_k})")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("dimension rank")
        ax.legend(fontsize=8)
    return _uri(fig, save_as)


def trajectory_figure(steps: np.ndarray, series: dict[str, np.ndarray], ylabels: dict[str, str],
                      save_as: Optional[Path] = None) -> str:
    """Statistics of c at each analysed sampling step (step 0 = pure noise)."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.3 * len(series), 3.2))
    for ax, (key, values) in zip(np.atleast_1d(axes), series.items()):
        ax.plot(steps, values, marker="o", ms=3, color=COLORS["c"])
        ax.set_title(ylabels[key], fontsize=10)
        ax.set_ylabel(ylabels[key].split(" over ")[0])
        ax.set_xlabel("sampling step (0 = pure noise)")
    fig.tight_layout()  # else a panel's y label runs into the tick labels of the panel to its left
    return _uri(fig, save_as)


def cond_vs_full_figure(c_cosine: np.ndarray, cond_cosine: np.ndarray, save_as: Optional[Path] = None) -> str:
    """Distributions of pairwise cosine for c (t + condition) and for the condition part alone."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    n = len(c_cosine)
    mask = ~np.eye(n, dtype=bool)
    ax.hist(cond_cosine[mask], bins=40, alpha=0.7, color=COLORS["cond"], label="condition part only")
    ax.hist(c_cosine[mask], bins=40, alpha=0.7, color=COLORS["c"], label="c = t + condition")
    ax.set_xlabel("pairwise cosine")
    ax.set_ylabel("pairs of conditions")
    ax.set_title("what the timestep embedding does to alignment", fontsize=10)
    ax.legend(fontsize=8)
    return _uri(fig, save_as)


def embedding_2d_figure(c_matrix: np.ndarray, head_dims: Sequence[int], seed: int = 0,
                        save_as: Optional[Path] = None) -> str:
    """2-D maps of full, head-only and tail-only c (t-SNE from 50 conditions on, PCA below, its axes labelled
    with the share of variance each component explains), coloured by condition."""
    n = len(c_matrix)
    head = np.zeros(c_matrix.shape[1], dtype=bool)
    head[list(head_dims)] = True
    views = {"full c": c_matrix, "head only": np.where(head, c_matrix, 0), "tail only": np.where(head, 0, c_matrix)}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    method = "t-SNE" if n >= 50 else "PCA"
    for ax, (title, data) in zip(axes, views.items()):
        points, explained = _project(data, method, seed)
        ax.scatter(points[:, 0], points[:, 1], c=np.arange(n), cmap="tab10" if n <= 10 else "viridis", s=18)
        if n <= 20:
            for i, (x, y) in enumerate(points):
                ax.annotate(str(i), (x, y), fontsize=7, xytext=(2, 2), textcoords="offset points")
        ax.set_title(f"{title} ({method})", fontsize=10)
        if explained is None:
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
        else:
            ax.set_xlabel(f"PC1 ({explained[0]:.1%} of variance)")
            ax.set_ylabel(f"PC2 ({explained[1]:.1%} of variance)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _uri(fig, save_as)


def _project(data: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Points (N, 2) and, for PCA, the share of the total variance of each of the two components."""
    centred = data - data.mean(0)
    if np.allclose(centred, 0):
        return np.zeros((len(data), 2)), (np.zeros(2) if method == "PCA" else None)
    if method == "PCA":
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        out = u[:, :2] * s[:2]
        explained = np.pad(s[:2] ** 2 / (s ** 2).sum(), (0, 2 - min(2, len(s))))
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))), explained
    from sklearn.manifold import TSNE

    points = TSNE(n_components=2, perplexity=min(30, (len(data) - 1) / 3), init="pca",
                  random_state=seed).fit_transform(centred)
    return points, None


class CurvePoint(NamedTuple):
    """One policy on a pruning curve: fraction of c removed, metric value, and its interval (or None)."""

    x: float
    y: float
    low: Optional[float] = None
    high: Optional[float] = None


LOG_SPAN = 20.0  # a metric axis whose positive values span more than this factor is drawn logarithmic


def log_axis(values: Sequence[float]) -> bool:
    """Whether a metric axis is drawn logarithmic: every value positive and spanning more than ``LOG_SPAN``."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > LOG_SPAN


def pruning_curves(curves: dict[str, list[CurvePoint]], metric_label: str, baseline: Optional[float],
                   save_as: Optional[Path] = None) -> str:
    """A metric against the fraction of c removed, one curve per family (tail, its random control, head), with
    error bars where a point has an interval; a log metric axis when the values span more than ``LOG_SPAN``."""
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    log = log_axis([v for points in curves.values() for p in points for v in (p.y, p.low, p.high) if v is not None])
    for family, points in curves.items():
        points = sorted(points)
        xs, ys = [p.x for p in points], [p.y for p in points]
        ax.plot(xs, ys, marker="o", ms=4, label=family, color=COLORS.get(family, None))
        bars = [p for p in points if p.low is not None]
        if bars:
            ax.errorbar([p.x for p in bars], [p.y for p in bars], fmt="none", capsize=3,
                        yerr=[[max(p.y - p.low, 0.0) for p in bars], [max(p.high - p.y, 0.0) for p in bars]],
                        color=COLORS.get(family, None), lw=1)
    if baseline is not None:
        ax.axhline(baseline, color="#777", ls="--", lw=1, label="baseline")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("fraction of c removed (mean over rows and steps)")
    ax.set_ylabel(metric_label + (" (log scale)" if log else ""))
    ax.set_title(f"{metric_label} against dimensions removed", fontsize=10)
    ax.legend(fontsize=8)
    return _uri(fig, save_as)


def training_figure(points: list[dict], save_as: Optional[Path] = None) -> str:
    """Cosine and nPR of c (first sampling step) during training: the emergence of the bottleneck."""
    steps = [p["step"] for p in points]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key, title in ((axes[0], "cosine_mean", "mean pairwise cosine of c"), (axes[1], "npr_mean", "nPR of c"),
                           (axes[2], "loss", "training loss")):
        ax.plot(steps, [p[key] for p in points], color=COLORS["c"])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(title.split(" of ")[0])
        ax.set_xlabel("training step")
    return _uri(fig, save_as)


def wav_uri(wave: np.ndarray, sample_rate: int) -> str:
    """A mono waveform (L,) in [-1, 1] -> a 16-bit PCM wav data URI (what an ``<audio>`` element plays)."""
    import wave as wavfile

    pcm = (np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0) * 32767).round().astype("<i2")
    buffer = io.BytesIO()
    with wavfile.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(sample_rate))
        handle.writeframes(pcm.tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


def mel_png(wave: np.ndarray, sample_rate: int, mels: int = 64) -> str:
    """The log-mel spectrogram (dB, 64 bands, 1024-point FFT, hop 160) of a waveform (L,) as a small PNG URI."""
    import librosa

    power = librosa.feature.melspectrogram(y=np.asarray(wave, dtype=np.float32), sr=sample_rate, n_fft=1024,
                                           hop_length=160, n_mels=mels)  # (mels, frames)
    fig, ax = plt.subplots(figsize=(2.6, 1.1))
    ax.imshow(librosa.power_to_db(power, ref=np.max, top_db=80), origin="lower", aspect="auto", cmap="magma")
    ax.set_axis_off()
    return _uri(fig)
