"""Evaluation: predictions normalised as in training, Table 7 metrics, calibration, reports."""
from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562), so building the ``ferlab`` parser (which imports this area's
# cli module) needs no PyTorch: the core install lists every command and names the extra.
_LAZY = {'compute_metrics': 'metrics', 'evaluate': 'run', 'predict_probs': 'predict', 'predict_logits': 'predict',
         'calibrate': 'run', 'calibrated_probs': 'uncertainty', 'fit_calibration': 'uncertainty'}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
