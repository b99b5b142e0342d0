"""Weighted cross-entropy against per-face target distributions: Eq. (15) of the thesis,
generalised to the FER+ targets of :mod:`.targets`.

PyTorch's ``cross_entropy(weight=..., label_smoothing=...)`` differs in two ways that change
the numbers: it spreads eps over all C classes (eps/C, target keeps 1-eps+eps/C) where Eq. (13)
gives eps/(C-1) to each *other* class, and with weights it divides by the sum of the batch's
weights where Eq. (15) divides by the batch size B. So the loss is written out here.

The loss is L = -(1/B) sum_i w_i sum_c q_c^(i) log p_c^(i). Eq. (15) is the case q^(i) = Eq. (13)
of the label y_i (:func:`smoothed_targets`) and w_i = w_{y_i}; the FER+ variants differ from it
only in q and w. Smoothing is part of the targets, never of the loss: the training build makes
q and w once per split (:func:`.targets.build_targets`, :meth:`.targets.Targets.sample_weights`),
so eps is applied in exactly one place, for the training and the validation loss alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """-(1/B) sum_i w_i sum_c q_ic log softmax(logits)_ic for (B, C) ``targets`` q and (B,)
    per-face ``weights`` w (None = 1 each).

    ``eps=0`` targets and no weights give plain cross-entropy (Eq. 11); one-hot targets with
    the class weights of the labels give Eq. (12). Both are the ablation rows of Exp. 6-8.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    per_sample = -(targets.to(logp.dtype) * logp).sum(dim=1)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()
