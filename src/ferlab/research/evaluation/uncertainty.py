"""Calibrated confidence and an ``uncertain`` flag, measured against FER+'s ten votes per face.

The thesis names overconfidence on ambiguous faces as the system's main limitation (sections
2.2 and 9.1). FER+ (Barsoum et al. 2016) says which faces people could not read, so the claim
"the model knows when it does not know" can be measured instead of asserted:

- **temperature scaling** (Guo et al. 2017): one scalar T, p = softmax(z / T), fitted on
  PublicTest only by minimising the NLL (bounded 1-D search with SciPy). With FER+ votes the
  NLL is against the vote distribution (the confidence then estimates how many people would
  agree); without votes, against the FER2013 labels. T never changes the top class.
- **uncertainty score** u = 1 - max_c p_c of the calibrated probabilities.
- **threshold**: ``uncertain`` = u >= threshold. With votes, PublicTest is flagged in the same
  proportion as FER+ finds its faces *unreadable* (defined below; 717 of 3,579 = 20.0 %): the
  precision-recall break-even point, where as many faces are flagged as there are unreadable
  ones, so flagged precision equals recall. (Youden's J, the other usual rule, flags well over
  half of all faces for these models, which would make "uncertain" the normal case.) Without
  votes the threshold flags 20 % of PublicTest (80 % coverage), the same share.
- **unreadable** faces: FER+'s first-of-tied-maxima over its ten columns is ``unknown`` or
  ``NF`` (not a face), or the top category has at most 5 of the 10 votes (no majority of people
  agree). Faces without FER+ votes are left out of these numbers.

Measured on the evaluated split: AUROC of u for unreadable faces, and accuracy at 80 % and 90 %
coverage (the most confident faces kept), counted over the faces whose FER+ majority is one of
the seven classes, against that majority (and against FER2013's label on the same faces).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...probabilities import softmax
from .calibration import ECE_BINS, expected_calibration_error, reliability_bins

COVERAGES = (0.8, 0.9)
NO_VOTES_COVERAGE = 0.8  # threshold rule without FER+ votes (FER+'s unreadable share of PublicTest)
T_BOUNDS = (0.05, 20.0)


# softmax(logits / T), flip views averaged: the one definition (ferlab.probabilities)
calibrated_probs = softmax


def soft_nll(target: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy -sum_c t_c log p_c of distributions ``target`` (one-hot = NLL)."""
    logp = np.log(np.maximum(probs, np.finfo(np.float64).tiny))
    return float(-(np.asarray(target, dtype=np.float64) * logp).sum(axis=1).mean())


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def fit_temperature(logits: np.ndarray, target: np.ndarray) -> float:
    """The T in :data:`T_BOUNDS` minimising the cross-entropy of softmax(z/T) against ``target``
    ((N,) labels or (N, C) distributions); a bounded scalar search over log T."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    target = np.asarray(target)
    if target.ndim == 1:
        target = one_hot(target.astype(np.int64), logits.shape[-1])
    res = minimize_scalar(lambda lt: soft_nll(target, calibrated_probs(logits, math.exp(lt))),
                          bounds=(math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1])), method="bounded",
                          options={"xatol": 1e-5})
    return float(math.exp(res.x))


def uncertainty_score(probs: np.ndarray) -> np.ndarray:
    """u = 1 - max calibrated probability (higher = less sure)."""
    return 1.0 - np.asarray(probs).max(axis=1)


def unreadable(votes: Any) -> np.ndarray:
    """(N,) bool over faces with votes: FER+ top category unknown/NF, or top <= 5 of 10 votes."""
    c10 = votes.counts10()
    top = c10.argmax(axis=1)
    share = c10.max(axis=1) / np.maximum(c10.sum(axis=1), 1)
    return (top >= 8) | (share <= 0.5)


def break_even_threshold(score: np.ndarray, positive: np.ndarray) -> float:
    """The threshold (flag u >= t) that flags the positives' share of the faces: the
    precision-recall break-even point."""
    return coverage_threshold(score, 1.0 - float(np.mean(positive)))


def coverage_threshold(score: np.ndarray, coverage: float) -> float:
    """The score at which ``1 - coverage`` of the faces are flagged."""
    return float(np.quantile(score, coverage, method="higher"))


def accuracy_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Accuracy over the ceil(coverage * N) most confident faces (ties: earlier faces first)."""
    k = max(1, math.ceil(coverage * len(confidence)))
    order = np.argsort(-confidence, kind="stable")[:k]
    return float(correct[order].mean())


def vote_calibration(probs: np.ndarray, dist: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """ECE against the votes: in each confidence bin, the mean confidence is compared with the
    mean vote share of the predicted class (how often one of the ten people agrees with the
    prediction) instead of a 0/1 hit."""
    conf = probs.max(axis=1)
    agree = dist[np.arange(len(dist)), probs.argmax(axis=1)]
    bins = reliability_bins(conf, agree, n_bins)
    return {"ece": expected_calibration_error(bins), "ece_bins": n_bins, "mean_confidence": float(conf.mean()),
            "mean_vote_share_of_prediction": float(agree.mean())}


def fit_calibration(val_logits: np.ndarray, val_labels: np.ndarray, val_votes: Any | None = None) -> dict[str, Any]:
    """Temperature and ``uncertain`` threshold from PublicTest (see the module docstring)."""
    val_logits = np.asarray(val_logits, dtype=np.float64)
    if val_votes is not None:
        has = val_votes.has_votes7
        t = fit_temperature(val_logits[..., has, :], val_votes.distribution()[has])
        probs = calibrated_probs(val_logits, t)
        hv = val_votes.has_votes
        score, pos = uncertainty_score(probs)[hv], unreadable(val_votes.take(np.flatnonzero(hv)))
        thr = break_even_threshold(score, pos)
        return {"temperature": t, "fit_target": "ferplus votes", "threshold": thr,
                "threshold_rule": "flag PublicTest's share of FER+ unreadable faces (precision-recall break-even)",
                "score": "1 - max softmax(logits / T)", "fit_n": int(has.sum()),
                "fit_unreadable": int(pos.sum()), "fit_flagged": float((score >= thr).mean())}
    t = fit_temperature(val_logits, np.asarray(val_labels, dtype=np.int64))
    score = uncertainty_score(calibrated_probs(val_logits, t))
    thr = coverage_threshold(score, NO_VOTES_COVERAGE)
    return {"temperature": t, "fit_target": "fer2013 labels", "threshold": thr,
            "threshold_rule": f"{1 - NO_VOTES_COVERAGE:.0%} of PublicTest flagged (no FER+ votes)",
            "score": "1 - max softmax(logits / T)", "fit_n": int(len(score)),
            "fit_flagged": float((score >= thr).mean())}


def ferplus_metrics(logits: np.ndarray, labels: np.ndarray, votes: Any, calibration: dict[str, Any]) -> dict[str, Any]:
    """The FER+ block of ``ferlab evaluate``: accuracy against the FER+ majority, cross-entropy
    and ECE against the vote distribution (raw and temperature-scaled), and the uncertainty
    measures (AUROC for unreadable faces, accuracy at 80 % / 90 % coverage, flagged share)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=np.int64)
    raw, cal = calibrated_probs(logits, 1.0), calibrated_probs(logits, calibration["temperature"])
    maj = votes.majority()
    m7 = maj >= 0
    has7, hv = votes.has_votes7, votes.has_votes
    dist = votes.distribution()
    out: dict[str, Any] = {
        "votes_file": votes.source.rsplit("/", 1)[-1],
        "n": int(len(labels)), "n_with_votes": int(hv.sum()), "n_majority7": int(m7.sum()),
        "accuracy": float((raw[m7].argmax(1) == maj[m7]).mean()),  # FER+ majority accuracy
        "fer2013_accuracy_same_faces": float((raw[m7].argmax(1) == labels[m7]).mean()),
        "label_agreement": float((labels[m7] == maj[m7]).mean()),  # FER2013 label vs FER+ majority
    }
    for name, p in (("raw", raw), ("calibrated", cal)):
        out[name] = {"nll_votes": soft_nll(dist[has7], p[has7]),
                     "ece_votes": vote_calibration(p[has7], dist[has7])["ece"],
                     "ece_majority": expected_calibration_error(
                         reliability_bins(p[m7].max(1), p[m7].argmax(1) == maj[m7]))}
    out["calibrated"]["temperature"] = calibration["temperature"]
    score = uncertainty_score(cal)
    pos = unreadable(votes.take(np.flatnonzero(hv)))
    flagged = score >= calibration["threshold"]
    separable = 0 < pos.sum() < len(pos)
    unc: dict[str, Any] = {"score": calibration["score"], "threshold": calibration["threshold"],
                           "threshold_rule": calibration["threshold_rule"],
                           "n_unreadable": int(pos.sum()), "n_scored": int(hv.sum()),
                           "auroc_unreadable": float(roc_auc_score(pos, score[hv])) if separable else None,
                           "flagged": float(flagged.mean()),
                           "flagged_tpr": float(flagged[hv][pos].mean()) if pos.any() else None,
                           "flagged_fpr": float(flagged[hv][~pos].mean()) if (~pos).any() else None}
    conf7, pred7 = cal[m7].max(1), cal[m7].argmax(1)
    unc["accuracy_at_coverage"] = {
        f"{c:.0%}": {"ferplus": accuracy_at_coverage(conf7, pred7 == maj[m7], c),
                     "fer2013": accuracy_at_coverage(conf7, pred7 == labels[m7], c)} for c in COVERAGES}
    kept = ~flagged[m7]
    unc["accuracy_not_flagged"] = float((pred7[kept] == maj[m7][kept]).mean()) if kept.any() else None
    out["uncertainty"] = unc
    return out

