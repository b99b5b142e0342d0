"""Evaluation: predictions normalised as in training, Table 7 metrics, calibration, reports."""
from .metrics import compute_metrics
from .predict import predict_probs
from .run import evaluate

__all__ = ["compute_metrics", "evaluate", "predict_probs"]
