"""How far the model's confidence can be trusted (thesis section 2.2, Exp. 8).

Label smoothing was adopted to make the model less overconfident; these numbers are how that
claim is checked: mean confidence on right and on wrong answers, expected calibration error
and negative log-likelihood.
"""
from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15  # Guo et al. 2017, the usual choice, so numbers compare with the literature


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Equal-width confidence bins (lo, hi], as in Guo et al.; empty bins are kept with
    ``count=0`` so the diagram always has the same x axis."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin i holds lo < c <= hi; a confidence of exactly 0 (impossible for a softmax) goes to bin 0
    idx = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    for i in range(n_bins):
        sel = idx == i
        n = int(sel.sum())
        bins.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "count": n,
                     "accuracy": float(correct[sel].mean()) if n else None,
                     "confidence": float(confidence[sel].mean()) if n else None})
    return bins


def expected_calibration_error(bins: list[dict[str, Any]]) -> float:
    """ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|."""
    total = sum(b["count"] for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def negative_log_likelihood(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean -log p(true class). Probabilities are floored at the smallest normal float64 so a
    single hard zero gives a large but finite number rather than ``inf`` in the JSON."""
    p = probs[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(p, np.finfo(np.float64).tiny)).mean())


def calibration_metrics(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, Any]:
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = reliability_bins(confidence, correct, n_bins)
    return {
        "mean_confidence": float(confidence.mean()),
        "mean_confidence_correct": float(confidence[correct].mean()) if correct.any() else None,
        "mean_confidence_wrong": float(confidence[~correct].mean()) if (~correct).any() else None,
        "ece": expected_calibration_error(bins),
        "ece_bins": n_bins,
        "nll": negative_log_likelihood(labels, probs),
        "reliability": bins,
    }
