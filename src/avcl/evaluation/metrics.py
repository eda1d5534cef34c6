"""Classification metrics: top-k accuracy, the confusion matrix, and the report of a set of predictions
(``metrics.json`` and ``confusion.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from avcl import fileio
from avcl.evaluation.plots import plot_confusion_matrix


def topk_accuracy(logits: Tensor, labels: Tensor, ks=(1, 5)) -> dict[str, float]:
    """Percent of rows whose label is among the k largest logits, for each k (capped at #classes)."""
    out = {}
    for k in ks:
        k_eff = min(k, logits.shape[1])
        hit = (logits.topk(k_eff, dim=1).indices == labels[:, None]).any(dim=1).float().mean()
        out[f"top{k}"] = 100.0 * float(hit)
    return out


def confusion_matrix(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def report_predictions(
    logits: Tensor, labels: Tensor, classes: list[str], out: Path | None, title: str, ks=(1, 5)
) -> dict:
    """Top-k, per-class accuracy and the confusion matrix; files ``metrics.json`` and ``confusion.png``."""
    metrics = topk_accuracy(logits, labels, ks)
    pred = logits.argmax(dim=1).numpy()
    true = labels.numpy()
    matrix = confusion_matrix(pred, true, len(classes))
    per_class = {
        c: (100.0 * matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None for i, c in enumerate(classes)
    }
    metrics.update(
        {"videos": int(len(true)), "per_class_top1": per_class, "confusion": matrix.tolist(), "classes": list(classes)}
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion_matrix(matrix, classes, out / "confusion.png", title=f"{title}: top-1 {metrics['top1']:.1f}%")
        fileio.write_json(out / "metrics.json", metrics)
    return metrics
