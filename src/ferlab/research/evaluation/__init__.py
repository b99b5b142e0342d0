"""Evaluation: predictions normalised as in training, Table 7 metrics, calibration, reports."""
from __future__ import annotations

from ..._lazy import lazy_exports


# Loaded on first use (PEP 562), so building the ``ferlab`` parser (which imports this area's
# cli module) needs no PyTorch: the core install lists every command and names the extra.
_LAZY = {'compute_metrics': 'metrics', 'evaluate': 'run', 'predict_probs': 'predict', 'predict_logits': 'predict',
         'calibrate': 'run', 'calibrated_probs': 'uncertainty', 'fit_calibration': 'uncertainty',
         'recalibrate': 'recalibration', 'fit_vector_scaling': 'recalibration'}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
