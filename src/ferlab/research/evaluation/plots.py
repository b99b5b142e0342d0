"""Confusion-matrix and reliability-diagram PNGs.

Figures are built with ``matplotlib.figure.Figure`` on the Agg canvas rather than ``pyplot``:
that needs no display, never changes the backend of a user's notebook, and keeps no global
figure state between calls (safe from threads, e.g. the server).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...fileio import write_with


def new_figure(width: float, height: float):  # noqa: ANN201 - matplotlib Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | Path) -> Path:
    # format given explicitly: the atomic temp file has no .png suffix; no metadata so that
    # the same figure gives the same bytes
    write_with(path, lambda p: fig.savefig(p, format="png", bbox_inches="tight", metadata={"Software": None}))
    return Path(path)


def _matrix(ax: Any, m: np.ndarray, names: Sequence[str], title: str, fmt: str) -> None:
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(float(m.max()), 1e-12))
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    half = m.max() / 2
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > half else "black")


def plot_confusion(metrics: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Counts (left) and row-normalised, i.e. per-class recall on the diagonal (right)."""
    names = metrics["class_names"]
    fig = new_figure(13, 5.5)
    ax1, ax2 = fig.subplots(1, 2)
    _matrix(ax1, np.asarray(metrics["confusion_matrix"]), names, "counts", "d")
    _matrix(ax2, np.asarray(metrics["confusion_matrix_normalized"]), names, "row-normalised", ".2f")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def plot_reliability(metrics: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Accuracy per confidence bin against the diagonal of perfect calibration, with the share
    of samples per bin underneath (a bin with 3 samples should not be read like one with 3000)."""
    cal = metrics["calibration"]
    bins = cal["reliability"]
    lo = np.array([b["lo"] for b in bins])
    width = bins[0]["hi"] - bins[0]["lo"]
    acc = np.array([b["accuracy"] if b["count"] else 0.0 for b in bins])
    conf = np.array([b["confidence"] if b["count"] else 0.0 for b in bins])
    count = np.array([b["count"] for b in bins], dtype=float)
    fig = new_figure(5.5, 6.5)
    ax, axc = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(lo, acc, width=width, align="edge", edgecolor="black", color="tab:blue", label="accuracy")
    gap_bottom = np.minimum(acc, conf)
    ax.bar(lo, np.abs(conf - acc) * (count > 0), bottom=gap_bottom, width=width, align="edge",
           color="tab:red", alpha=0.35, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left")
    ax.set_title(title or f"ECE {cal['ece']:.3f}   NLL {cal['nll']:.3f}")
    axc.bar(lo, count / max(count.sum(), 1), width=width, align="edge", color="gray", edgecolor="black")
    axc.set_xlabel("confidence (max softmax)")
    axc.set_ylabel("share")
    return save_png(fig, path)
