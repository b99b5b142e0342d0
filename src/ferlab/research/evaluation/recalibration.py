"""Vector scaling (Guo et al. 2017): a class-wise affine map of the logits, fitted on PublicTest
and folded into the network's last linear layer.

Why: the thesis's class-weighted loss (Eq. 1) and label smoothing (Eq. 13-15) both move a
model's output away from the frequencies it will meet at test time: rare classes are pushed up
and every probability is pulled towards uniform. A single temperature cannot undo a per-class
shift (``maintainers/benchmarks/results-calibration-val.txt``: it keeps or raises ECE for most FER2013 models),
but z'_c = w_c z_c + b_c (14 numbers) can, and because it may change the top class it can also
recover accuracy that the weighting traded for balanced recall.

Folding makes the result an ordinary checkpoint: the last ``nn.Linear`` (W, beta) becomes
(diag(w) W, w * beta + b), so every inference path (PyTorch, ONNX, flip TTA, Grad-CAM, the web
page) computes the recalibrated logits without knowing about this step.

Fitting on PublicTest and then quoting PublicTest accuracy would flatter the fit, so
:func:`cross_fitted` measures it honestly on PublicTest alone: fit on one random half, score on
the other, both ways, over several seeds. That estimate, not the in-sample one, is what choosing
between shipped models uses (:meth:`ferlab.models.hub.ShippedModel.selection_accuracy`).
PrivateTest is never read here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FerlabError
from .calibration import calibration_metrics
from .uncertainty import calibrated_probs

METHOD = "vector scaling (Guo et al. 2017): z'_c = w_c z_c + b_c, fitted by NLL on PublicTest's FER2013 labels"


def apply_vector_scaling(logits: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """w * z + b on the last axis (so (2, N, C) flip-TTA logits map view by view)."""
    return np.asarray(logits, dtype=np.float64) * np.asarray(w) + np.asarray(b)


def fit_vector_scaling(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w, b) minimising the mean NLL of softmax(w * z + b) against ``labels``; starts at the
    identity (w = 1, b = 0), gradient-based (SciPy L-BFGS-B, analytic gradient). The problem is
    convex in (w, b), so the start does not decide the answer."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise FerlabError(f"vector scaling needs (N, C) logits and N labels, got {z.shape} and {y.shape}")
    n, c = z.shape
    rows = np.arange(n)

    def loss_and_grad(p: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = p[:c], p[c:]
        logp = log_softmax(z * w + b, axis=1)
        g = np.exp(logp)
        g[rows, y] -= 1.0
        g /= n
        return float(-logp[rows, y].mean()), np.concatenate([(g * z).sum(axis=0), g.sum(axis=0)])

    res = minimize(loss_and_grad, np.concatenate([np.ones(c), np.zeros(c)]), jac=True, method="L-BFGS-B")
    return res.x[:c].copy(), res.x[c:].copy()


def _scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    p = calibrated_probs(logits)  # (2, N, C) flip-TTA logits: the mean of the two views' softmaxes
    m = calibration_metrics(labels, p)
    return {"accuracy": float((p.argmax(1) == labels).mean()), "ece": m["ece"], "nll": m["nll"]}


def cross_fitted(logits: np.ndarray, labels: np.ndarray, seeds: int = 10) -> dict[str, Any]:
    """PublicTest-only estimate of what vector scaling does to unseen faces: for each seed, split
    the faces into two random halves, fit on one and score on the other, both ways; the mean over
    the 2 x ``seeds`` scores, beside the same halves' scores without it. With (2, N, C) flip-TTA
    logits the map is fitted on the plain view (as :func:`recalibrate` fits it) and scored on the
    mean of both views' softmaxes (what the folded model gives with ``--tta flip``)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    before: list[dict[str, float]] = []
    after: list[dict[str, float]] = []
    for seed in range(seeds):
        perm = np.random.default_rng(seed).permutation(len(y))
        halves = (perm[::2], perm[1::2])
        for fit, score in (halves, halves[::-1]):
            w, b = fit_vector_scaling((z[0] if z.ndim == 3 else z)[fit], y[fit])
            before.append(_scores(z[..., score, :], y[score]))
            after.append(_scores(apply_vector_scaling(z[..., score, :], w, b), y[score]))

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    return {"halves": "random halves of the fitting split; fit on one, scored on the other, both ways",
            "seeds": seeds, "without": mean(before), "with": mean(after)}


def fold_into_head(model: Any, w: np.ndarray, b: np.ndarray) -> Any:
    """Fold z' = w * z + b into ``model.head``'s last ``nn.Linear`` in place (every ferlab model
    ends in one: :func:`ferlab.research.nets.heads.make_head`); returns the model."""
    import torch
    from torch import nn

    head = getattr(model, "head", None)
    last = head[-1] if isinstance(head, nn.Sequential) and len(head) else None
    if not isinstance(last, nn.Linear) or last.out_features != len(w) or last.bias is None:
        raise FerlabError("vector scaling can only be folded into a model whose head ends in a "
                          f"Linear layer with {len(w)} outputs and a bias")
    with torch.no_grad():
        wt = torch.as_tensor(np.asarray(w), dtype=last.weight.dtype, device=last.weight.device)
        bt = torch.as_tensor(np.asarray(b), dtype=last.weight.dtype, device=last.weight.device)
        last.weight.mul_(wt[:, None])
        last.bias.mul_(wt).add_(bt)
    return model


def recalibrate(model: Any = None, data: Any = None, *, out: str | Path, batch_size: int = 512,
                device: str | None = "auto", seeds: int = 10, half: bool | None = None) -> dict[str, Any]:
    """Fit vector scaling for checkpoint ``model`` on PublicTest of ``data`` (FER2013 labels) and
    write the folded network to ``out`` as a new checkpoint (weights + sidecar, written
    atomically; the source is never touched). The sidecar keeps the source's model config and
    training provenance, drops its training-time metrics (they describe other weights) and adds
    ``recalibration``: method, w, b, the source's hash and the :func:`cross_fitted` estimate.
    ``half`` (default: as the source) stores float16 weights. Returns that block plus ``out``."""
    from ...fileio import sha256_file
    from ..nets.checkpoint import _paths, load_checkpoint, save_checkpoint
    from ...models.hub import resolve_model
    from .predict import predict_logits
    from .run import data_fingerprint, resolve_data, resolve_device

    wpath = resolve_model(model)
    if _paths(out)[0].resolve() == wpath.resolve():
        raise FerlabError(f"--out {out} is the model being recalibrated; write the new checkpoint elsewhere")
    device = resolve_device(device)
    ckpt = load_checkpoint(wpath, map_location=device)
    if "recalibration" in ckpt.meta:
        raise FerlabError(f"{wpath} is already recalibrated; recalibrate the model it came from "
                          f"({ckpt.meta['recalibration'].get('source', {}).get('name', 'its source')})")
    val = resolve_data(data).split("val")
    z = predict_logits(ckpt.model, val.images, ckpt.mean, ckpt.std, batch_size=batch_size,
                       device=device).cpu().numpy().astype(np.float64)
    w, b = fit_vector_scaling(z, val.labels)
    block = {"method": METHOD, "w": [float(v) for v in w], "b": [float(v) for v in b],
             "source": {"name": wpath.stem, "sha256": sha256_file(wpath)},
             "fitted_on": {"split": "val", "n": len(val), "sha1": data_fingerprint(val.images, val.labels)},
             "in_sample": {"without": _scores(z, val.labels), "with": _scores(apply_vector_scaling(z, w, b), val.labels)},
             "cross_fitted": cross_fitted(z, val.labels, seeds=seeds)}
    meta = {k: v for k, v in ckpt.meta.items()
            if k not in ("metrics", "calibration", "calibration_tta", "ferlab_version", "dtype")}
    meta["recalibration"] = block
    folded = fold_into_head(ckpt.model, w, b)
    keep_half = ckpt.meta.get("dtype") == "float16" if half is None else half
    written = save_checkpoint(out, folded, meta, half=keep_half)
    return {**block, "out": str(written)}
