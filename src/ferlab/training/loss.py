"""Weighted label-smoothing cross-entropy, exactly Eq. (15) of the thesis, generalised to any
per-face target distribution (the FER+ targets of :mod:`.targets`).

PyTorch's ``cross_entropy(weight=..., label_smoothing=...)`` differs in two ways that change
the numbers: it spreads eps over all C classes (eps/C, target keeps 1-eps+eps/C) where Eq. (13)
gives eps/(C-1) to each *other* class, and with weights it divides by the sum of the batch's
weights where Eq. (15) divides by the batch size B. So the loss is written out here.

The general form is L = -(1/B) sum_i w_i sum_c q_c^(i) log p_c^(i): Eq. (15) is the case
q^(i) = Eq. (13) of the label y_i and w_i = w_{y_i}. Passing labels keeps exactly that; passing
a (B, C) target matrix (and optionally per-face weights) trains on soft targets with the same
normalisation, so the FER+ variants differ from the thesis only in q and w.
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


def vote_smoothed_targets(labels: torch.Tensor, votes: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. (13) with the eps off-target mass spread by human votes instead of uniformly.

    1-eps stays on the label y; class c != y gets eps * v_c / sum_{k != y} v_k, where v are the
    face's FER+ votes for the seven classes. A face whose votes name no class other than y (all
    votes on y, no 7-class votes, or no FER+ image) has nothing to spread by, so it falls back to
    the uniform eps/(C-1) of Eq. (13): the thesis's recipe is then unchanged for that face.
    """
    num_classes = votes.shape[1]
    q = smoothed_targets(labels, num_classes, eps)
    other = votes.to(torch.float32).clone()
    other.scatter_(1, labels[:, None], 0.0)
    total = other.sum(dim=1, keepdim=True)
    informed = total[:, 0] > 0
    if bool(informed.any()):
        spread = eps * other[informed] / total[informed]
        spread.scatter_(1, labels[informed][:, None], 1.0 - eps)
        q[informed] = spread
    return q


class WeightedLabelSmoothingCE(nn.Module):
    """L = -(1/B) sum_i w_{y_i} sum_c q~_c^(i) log p_c^(i)  (Eq. 15).

    ``eps=0`` and no weights give plain cross-entropy (Eq. 11); weights without smoothing give
    Eq. (12). Both are the ablation rows of Exp. 6-8.

    ``forward(logits, labels)`` is Eq. (15). ``forward(logits, q, sample_weights)`` takes the
    (B, C) targets ``q`` as given (``eps`` is not applied again); each face is weighted by
    ``sample_weights`` if given, else by the expected class weight sum_c q_c w_c, which is
    w_y for a one-hot target.
    """

    def __init__(self, num_classes: int, eps: float = 0.1, weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.eps = float(eps)
        self.register_buffer("weights", None if weights is None else torch.as_tensor(weights, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        if target.ndim == 1:
            q = smoothed_targets(target, self.num_classes, self.eps)
            if sample_weights is None and self.weights is not None:
                sample_weights = self.weights[target]
        else:
            q = target.to(logp.dtype)
            if sample_weights is None and self.weights is not None:
                sample_weights = q @ self.weights
        per_sample = -(q * logp).sum(dim=1)
        if sample_weights is not None:
            per_sample = per_sample * sample_weights
        return per_sample.mean()
