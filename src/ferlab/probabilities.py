"""From a network's logits to the probabilities every part of ferlab shows, in one place.

Inference (both backends, with or without flip TTA), evaluation, calibration and distillation
all turn logits into probabilities the same way, so a number measured by ``ferlab evaluate`` is
the number the live pipeline computes: softmax over the classes in float64, of ``logits / T``
for a temperature-calibrated model, and for flip TTA the mean of the two views' softmaxes (not
the softmax of the mean logits: the views are two readings, and a reading's confidence should
count as such).
"""
from __future__ import annotations

import numpy as np
from scipy.special import softmax as _softmax


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) over the last axis, float64. ``(2, N, C)`` logits are the two views
    of flip TTA (faces, mirrored faces): their softmaxes are averaged to ``(N, C)``."""
    p = _softmax(np.asarray(logits, dtype=np.float64) / float(temperature), axis=-1)
    return 0.5 * (p[0] + p[1]) if p.ndim == 3 else p


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(z / T) for a distribution p = softmax(z) whose logits are gone (a smoothed
    distribution, for instance): p^(1/T), renormalised."""
    q = np.power(np.maximum(np.asarray(probs, dtype=np.float64), np.finfo(np.float64).tiny), 1.0 / float(temperature))
    return q / q.sum(axis=-1, keepdims=True)
