"""Figures written next to the numbers: training curves, confusion matrices, comparison bars."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    """A figure drawn on its own Agg canvas: files only, and nothing touches pyplot's state or the
    backend a notebook user chose."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def _bar_axes(ax, x, names: Sequence[str], ylabel: str, title: str) -> None:
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def plot_run(run: str | Path) -> Path | None:
    """``loss_curves.png`` of a run folder, from its ``log.jsonl`` (what the caller of a training draws)."""
    from avcl.engine.logger import read_log

    run = Path(run)
    if not (run / "log.jsonl").is_file():
        return None
    return plot_training_curves(read_log(run / "log.jsonl"), run / "loss_curves.png")


def plot_training_curves(records: list[dict], path: str | Path, title: str = "training") -> Path | None:
    """Per-step losses (thin) and per-epoch means (markers) from a run's ``log.jsonl`` records."""
    steps = [r for r in records if r.get("kind") == "train"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not steps and not epochs:
        return None
    keys = [k for k in (steps or epochs)[0] if k.startswith("loss")]
    metric_keys = [k for k in (epochs[0] if epochs else {}) if k.startswith("val_") or k == "acc"]
    ncols = 2 if metric_keys else 1
    fig = _figure(6 * ncols, 4)
    axes = fig.subplots(1, ncols, squeeze=False)
    ax = axes[0][0]
    for key in keys:
        if steps:
            ax.plot([r["step"] for r in steps], [r.get(key, np.nan) for r in steps], lw=1, label=f"{key} (steps)")
        if epochs:
            ax.plot(
                [r["step"] for r in epochs],
                [r.get(key, np.nan) for r in epochs],
                "o-",
                ms=3,
                label=f"{key} (epoch mean)",
            )
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if metric_keys:
        ax = axes[0][1]
        for key in metric_keys:
            ax.plot([r["epoch"] for r in epochs], [r.get(key, np.nan) for r in epochs], "o-", ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        int(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_bars(
    names: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float] | None,
    path: str | Path,
    ylabel: str = "top-1 accuracy (%)",
    title: str = "",
) -> Path:
    """One bar per row (e.g. per method), with standard deviations as error bars."""
    fig = _figure(max(5, 0.7 * len(names) + 2), 4)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x, means, yerr=stds if stds is not None else None, capsize=3, color="#4c72b0")
    for i, m in enumerate(means):
        ax.text(i, m, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
    _bar_axes(ax, x, names, ylabel, title)
    return _save(fig, path)


def plot_embedding(
    points: np.ndarray, labels: Sequence[int], classes: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """A 2-D embedding (e.g. t-SNE), one colour per class, with a legend."""
    fig = _figure(7, 6)
    ax = fig.add_subplot()
    labels = np.asarray(labels)
    cmap = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
    for i, name in enumerate(classes):
        mask = labels == i
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=12, color=cmap(i % cmap.N), label=name, alpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    if len(classes) <= 40:
        ax.legend(fontsize=6, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(fig, path)


def plot_image_rows(
    rows: Sequence[Sequence[np.ndarray]],
    captions: Sequence[Sequence[str]],
    path: str | Path,
    title: str = "",
    cell: float = 1.6,
) -> Path:
    """A grid of RGB images (uint8 HxWx3, or 2-D maps drawn with a colour map), one caption each."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = _figure(cell * n_cols, cell * n_rows + (0.4 if title else 0))
    for r, (images, texts) in enumerate(zip(rows, captions)):
        for c, (image, text) in enumerate(zip(images, texts)):
            ax = fig.add_subplot(n_rows, n_cols, r * n_cols + c + 1)
            ax.imshow(
                image,
                cmap="magma" if np.ndim(image) == 2 else None,
                aspect="auto",
                origin="lower" if np.ndim(image) == 2 else "upper",
            )  # spectrograms: low bands at the bottom
            ax.set_title(text, fontsize=6)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_grouped_bars(
    names: Sequence[str],
    series: dict[str, Sequence[tuple[float | None, float | None]]],
    path: str | Path,
    ylabel: str = "top-1 accuracy (%)",
    title: str = "",
) -> Path:
    """Bars grouped per row (e.g. per method), one colour per series (e.g. video / audio / both);
    ``series[k][i]`` is (mean, std) of row i, None where the row has no value."""
    fig = _figure(max(5, 1.0 * len(names) + 2), 4)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    width = 0.8 / max(1, len(series))
    for j, (label, values) in enumerate(series.items()):
        offset = (j - (len(series) - 1) / 2) * width
        labelled = False
        for i, (m, s) in enumerate(values):
            if m is None:
                continue
            ax.bar(x[i] + offset, m, width, yerr=s, capsize=2, color=f"C{j}", label=None if labelled else label)
            labelled = True
            ax.text(x[i] + offset, m, f"{m:.0f}", ha="center", va="bottom", fontsize=6)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7)
    _bar_axes(ax, x, names, ylabel, title)
    return _save(fig, path)
