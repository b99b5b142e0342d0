"""What the loss is trained towards (``train.targets``): FER2013's label or FER+'s ten votes.

FER2013's single crowd label equals the FER+ majority on only 63.4 % of the faces, and the
thesis's answer to that noise is uniform label smoothing (Eq. 13-15). FER+ (Barsoum et al.
2016) records how ten people read every face, so the targets can use that instead:

``fer2013`` (default, the thesis)
    Eq. (13) of the FER2013 label, eps = ``train.label_smoothing``; class weights (Eq. 1) from
    the FER2013 label counts. Exactly the loss the trainer has always computed.
``ferplus-majority``
    Eq. (13) of the FER+ majority label (first of tied maxima over FER+'s ten columns, see
    :meth:`ferlab.research.data.ferplus.FerPlusVotes.majority`). Faces without a 7-class majority (no
    FER+ image, or contempt/unknown/not-a-face outvoting every emotion) are **dropped** from
    training; the count is printed and recorded. Class weights from the majority-label counts.
``ferplus-soft``
    The vote distribution over the seven classes (contempt, unknown and NF votes left out) as
    the target, as FER+'s "probabilistic label drawing"/cross-entropy scheme. Faces without any
    7-class vote are dropped. ``train.label_smoothing`` must be 0 (the votes are the
    smoothing). Class weights w_c = N / (C * S_c) with S_c = sum_i d_ic the summed vote shares
    (Eq. 1 with soft counts); each face is weighted by sum_c d_ic w_c.
``ferplus-smoothing``
    Vote-informed smoothing: Eq. (13)/(15) of the FER2013 label, with the eps off-target mass
    spread over the other classes in proportion to their FER+ votes instead of uniformly (see
    :func:`.loss.vote_smoothed_targets`; faces whose votes name no other class keep the uniform
    eps/(C-1)). No face is dropped; class weights as ``fer2013``.

Every variant is one (N, C) target matrix and one per-face weight, built once per run and put
on the device with the images, so the training step is the same for all of them.

Selection stays on PublicTest: ``val_acc`` is FER2013-label accuracy whatever the targets (the
default), ``val_ferplus_acc`` the accuracy against the FER+ majority over PublicTest faces that
have one. ``val_loss`` is the training criterion against the val faces' targets under the same
rule (faces the rule drops are left out of the loss only), and against FER2013's labels for
``fer2013``, as before. ``train_acc`` counts hits on the hard label of the targets (FER2013's
label; the majority; for soft targets the most-voted of the seven classes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config_schema import TARGETS
from ...constants import CLASS_NAMES, NUM_CLASSES
from ..data.dataset import FerSplit, class_weights
from ..data.ferplus import FerPlusVotes
from ...errors import FerlabError
from .loss import smoothed_targets, vote_smoothed_targets

NEEDS_VOTES = frozenset(t for t in TARGETS if t.startswith("ferplus"))


@dataclass
class Targets:
    """Targets of one split under one rule; rows follow ``keep`` (faces that train)."""

    kind: str
    keep: np.ndarray  # (N,) bool over the split's faces
    probs: torch.Tensor  # (n, C) float32 target distributions q
    labels: np.ndarray  # (n,) int64 hard label of the target (train accuracy; Eq. 1 counts)
    soft_counts: np.ndarray  # (C,) float64 per-class mass Eq. (1) counts: label counts or summed shares

    @property
    def dropped(self) -> int:
        return int((~self.keep).sum())

    def sample_weights(self, weights: np.ndarray | None) -> torch.Tensor | None:
        """w_i: the class weight of the hard label, or for soft targets sum_c q_ic w_c."""
        if weights is None:
            return None
        w = torch.as_tensor(weights, dtype=torch.float32)
        if self.kind == "ferplus-soft":
            return self.probs @ w
        return w[torch.from_numpy(self.labels)]


def soft_class_weights(soft_counts: np.ndarray) -> np.ndarray:
    """Eq. (1) with (possibly fractional) class counts: w_c = N / (C * N_c)."""
    counts = np.asarray(soft_counts, dtype=np.float64)
    if (counts <= 0).any():
        missing = [CLASS_NAMES[i] for i in np.flatnonzero(counts <= 0)]
        raise FerlabError(f"no training mass for class(es) {', '.join(missing)}: class weights undefined")
    return counts.sum() / (len(counts) * counts)


def _vote_argmax(votes: FerPlusVotes) -> np.ndarray:
    """Class of the most 7-class votes, ties in FER+'s column order (as ``majority``)."""
    from ..data.ferplus import FERPLUS_TO_CLASS, VOTE_COLUMNS

    col_to_class = np.array([CLASS_NAMES.index(FERPLUS_TO_CLASS[c]) for c in VOTE_COLUMNS[:7]])
    return col_to_class[votes.counts10()[:, :7].argmax(axis=1)]


def build_targets(kind: str, split: FerSplit, votes: FerPlusVotes | None, eps: float) -> Targets:
    """The targets of ``split`` under rule ``kind`` (see the module docstring)."""
    if kind not in TARGETS:
        raise FerlabError(f"unknown targets {kind!r} ({', '.join(TARGETS)})")
    labels = np.asarray(split.labels, dtype=np.int64)
    if kind in NEEDS_VOTES:
        if votes is None:
            raise FerlabError(f"targets {kind!r} need FER+ votes")
        if len(votes) != len(labels):
            raise FerlabError(f"{len(votes)} FER+ rows for the {len(labels)} faces of split {split.name!r}")
    if kind == "fer2013":
        keep = np.ones(len(labels), dtype=bool)
        q = smoothed_targets(torch.from_numpy(labels), NUM_CLASSES, eps)
        hard = labels
    elif kind == "ferplus-smoothing":
        keep = np.ones(len(labels), dtype=bool)
        v = np.where(votes.has_votes[:, None], votes.votes7, 0)
        q = vote_smoothed_targets(torch.from_numpy(labels), torch.from_numpy(v), eps)
        hard = labels
    elif kind == "ferplus-majority":
        maj = votes.majority()
        keep = maj >= 0
        hard = maj[keep]
        q = smoothed_targets(torch.from_numpy(hard), NUM_CLASSES, eps)
    else:  # ferplus-soft
        keep = votes.has_votes7
        dist = votes.distribution()[keep]
        q = torch.from_numpy(dist.astype(np.float32))
        hard = _vote_argmax(votes)[keep]
    if kind == "ferplus-soft":
        soft_counts = q.double().sum(dim=0).numpy()
    else:
        soft_counts = np.bincount(hard, minlength=NUM_CLASSES).astype(np.float64)
    return Targets(kind, keep, q, np.asarray(hard, dtype=np.int64), soft_counts)


def target_class_weights(t: Targets) -> np.ndarray:
    """Eq. (1) for these targets: label counts (fer2013, majority, smoothing), or summed vote
    shares (soft). Integer counts go through :func:`ferlab.research.data.class_weights` itself, so
    ``fer2013`` gives exactly the weights the trainer has always used."""
    if t.kind == "ferplus-soft":
        return soft_class_weights(t.soft_counts)
    return class_weights(t.labels)


def kept_split(split: FerSplit, keep: np.ndarray) -> FerSplit:
    """The faces of ``split`` that train (all of them unless the targets drop some)."""
    if keep.all():
        return split
    idx = np.flatnonzero(keep)
    return FerSplit(split.name, split.images[idx], split.labels[idx],
                    [split.names[i] for i in idx] if split.names else [])
