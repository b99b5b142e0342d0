"""Weighted label-smoothing cross-entropy, exactly Eq. (15) of the thesis.

PyTorch's ``cross_entropy(weight=..., label_smoothing=...)`` differs in two ways that change
the numbers: it spreads eps over all C classes (eps/C, target keeps 1-eps+eps/C) where Eq. (13)
gives eps/(C-1) to each *other* class, and with weights it divides by the sum of the batch's
weights where Eq. (15) divides by the batch size B. So the loss is written out here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def smoothed_targets(labels: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """Eq. (13): 1-eps on the true class, eps/(C-1) on each other class."""
    off = eps / (num_classes - 1) if num_classes > 1 else 0.0
    q = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    q.scatter_(1, labels[:, None], 1.0 - eps)
    return q


class WeightedLabelSmoothingCE(nn.Module):
    """L = -(1/B) sum_i w_{y_i} sum_c q~_c^(i) log p_c^(i)  (Eq. 15).

    ``eps=0`` and no weights give plain cross-entropy (Eq. 11); weights without smoothing give
    Eq. (12). Both are the ablation rows of Exp. 6-8.
    """

    def __init__(self, num_classes: int, eps: float = 0.1, weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.eps = float(eps)
        self.register_buffer("weights", None if weights is None else torch.as_tensor(weights, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        q = smoothed_targets(labels, self.num_classes, self.eps)
        per_sample = -(q * logp).sum(dim=1)
        if self.weights is not None:
            per_sample = per_sample * self.weights[labels]
        return per_sample.mean()
