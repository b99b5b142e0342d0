"""Classification metrics in the layout of thesis Table 7, plus calibration.

Counting is left to scikit-learn (one well-tested implementation, with explicit handling of
classes that are never predicted) instead of hand-written loops.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .calibration import calibration_metrics


def _check(labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> None:
    if probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(probs):
        raise ValueError(f"need labels (N,) and probs (N, C); got {labels.shape} and {probs.shape}")
    if len(labels) == 0:
        raise ValueError("no samples to evaluate")
    if probs.shape[1] != len(class_names):
        raise ValueError(f"probs have {probs.shape[1]} columns but there are {len(class_names)} class names")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(f"labels must lie in 0..{len(class_names) - 1}")
    if not np.isfinite(probs).all():
        raise ValueError("probs contain NaN or inf (did the model diverge?)")


def compute_metrics(labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, the
    confusion matrix (rows = true class, counts and row-normalised) and calibration.

    Every class in ``class_names`` gets a row even if it has no samples or predictions (its
    scores are then 0, scikit-learn's ``zero_division=0``), so tables always have 7 rows and
    runs can be compared line by line. Plain Python floats and lists: the result is JSON-ready.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.asarray(labels).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    _check(labels, probs, class_names)
    preds = probs.argmax(axis=1)
    ids = list(range(len(class_names)))
    prec, rec, f1, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    out: dict[str, Any] = {
        "n": int(len(labels)),
        "accuracy": float((preds == labels).mean()),
        "per_class": {name: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(class_names)},
    }
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, preds, labels=ids, average=avg, zero_division=0)
        out[f"{avg}_avg"] = {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(len(labels))}
    cm = confusion_matrix(labels, preds, labels=ids)
    rows = cm.sum(axis=1, keepdims=True)
    out["class_names"] = list(class_names)
    out["confusion_matrix"] = cm.astype(int).tolist()
    # a class with no samples has an all-zero row rather than 0/0
    out["confusion_matrix_normalized"] = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0).tolist()
    out["calibration"] = calibration_metrics(labels, probs)
    return out


def round_floats(obj: Any, digits: int = 6) -> Any:
    """Round every float for the JSON file: 6 digits is far below any difference that matters
    and keeps the file readable and diff-able between runs."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, digits) for v in obj]
    return obj
