"""Distillation targets (``train.teachers``): the mean softmax of trained models on each face.

The ensemble of two shipped models is better than either (on PublicTest, flip-TTA
``fernet_votesmooth`` + ``resnet18`` reach 70.1% against 68.4% for the better one alone:
maintainers/scripts/ensemble_publictest.py), but an ensemble costs twice the compute per face, which the
live pipeline cannot pay. Distillation (Hinton et al. 2015) moves part of that gain into one compact model: its training target
becomes

    q_i = (1 - w) * q_i^rule + w * mean_t softmax(teacher_t(x_i))

where ``q^rule`` is the target of ``train.targets`` (Eq. 13/15 or the FER+ votes) and
``w = train.teacher_weight``. The teachers' distributions are computed once per run on the
un-augmented training faces (with ``train.teacher_tta``, averaged with their mirror, which
matches the random flips training applies) and cached on disk, keyed by the teachers' weight
files and the faces, so a resumed or repeated run does not pay for them again.

Teachers trained on the same faces have partly memorised them, so their training-set outputs
are more confident than on unseen faces; the mixing weight keeps the rule's target in the
loss, and selection stays on PublicTest, which the teachers never trained on.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...constants import CLASS_NAMES
from ..data.dataset import FerSplit
from ...errors import FerlabError
from ...fileio import atomic_path, sha256_file


def _cache_dir() -> Path:
    return Path(os.environ.get("FERLAB_CACHE", Path.home() / ".cache" / "ferlab")) / "teachers"


def _cache_key(paths: Sequence[Path], split: FerSplit, tta: bool) -> str:
    h = hashlib.sha1()
    for p in paths:
        h.update(sha256_file(p).encode())
    h.update(np.ascontiguousarray(split.images).tobytes())
    h.update(b"tta" if tta else b"plain")
    return h.hexdigest()


def teacher_probs(teachers: Sequence[str], split: FerSplit, *, tta: bool = True, batch_size: int = 512,
                  device: str | torch.device = "cpu", cache: bool = True) -> np.ndarray:
    """(N, C) float32: the mean over ``teachers`` of each one's softmax on ``split``'s faces.

    ``teachers`` are shipped names, checkpoint files or run folders; each is applied with its
    own normalisation (sidecar mean/std), so teachers of different recipes can be mixed.
    """
    from ..evaluation.predict import predict_logits, probs_from_logits
    from ..nets import load_checkpoint
    from ...models.hub import resolve_model

    if not teachers:
        raise FerlabError("train.teachers is empty: name at least one trained model")
    paths = [resolve_model(t) for t in teachers]
    key = _cache_key(paths, split, tta)
    cached = _cache_dir() / f"{key}.npy"
    if cache and cached.is_file():
        probs = np.load(cached)
        if probs.shape == (len(split), len(CLASS_NAMES)):
            return probs
    total = np.zeros((len(split), len(CLASS_NAMES)), dtype=np.float64)
    for spec, path in zip(teachers, paths):
        ckpt = load_checkpoint(path, map_location=device)
        if ckpt.class_names != list(CLASS_NAMES):
            raise FerlabError(f"teacher {spec!r} predicts {ckpt.class_names}, not {list(CLASS_NAMES)}")
        logits = predict_logits(ckpt.model, split.images, ckpt.mean, ckpt.std, batch_size=batch_size,
                                tta=tta, device=device)
        total += probs_from_logits(logits).cpu().numpy()
        del ckpt
    probs = (total / len(teachers)).astype(np.float32)
    if cache:
        with atomic_path(cached) as tmp, open(tmp, "wb") as f:  # np.save(path) would add ".npy"
            np.save(f, probs)
    return probs


def mix_targets(rule: torch.Tensor, teacher: np.ndarray, weight: float) -> torch.Tensor:
    """(1 - w) q^rule + w q^teacher, row by row (both (N, C) distributions)."""
    if not 0.0 < weight <= 1.0:
        raise FerlabError(f"train.teacher_weight must be in (0, 1], got {weight}")
    t = torch.from_numpy(np.asarray(teacher, dtype=np.float32))
    if t.shape != rule.shape:
        raise FerlabError(f"teacher targets are {tuple(t.shape)}, the rule's {tuple(rule.shape)}")
    return (1.0 - weight) * rule.float() + weight * t
