"""``ferlab.evaluate``: one checkpoint on one split -> metrics.json, report.md and figures.

With FER+ votes (found in a ``ferplus/`` folder beside the data, or given) the same call also
measures the model against the ten human votes per face and its uncertainty
(:mod:`.uncertainty`), written to ``metrics_ferplus.json`` beside ``metrics.json``. They are a
separate file so that ``metrics.json`` stays exactly what it has always been for the same
checkpoint and data, whether or not the votes happen to be on the machine.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FerlabError
from ...fileio import sha256_file, write_json, write_text
from .metrics import compute_metrics, round_floats
from .predict import predict_logits, probs_from_logits


def resolve_data(data: Any) -> Any:
    """``FerData`` as is, else a path (argument, then ``$FERLAB_DATA``): see
    :func:`ferlab.research.data.resolve_data`."""
    from ..data import resolve_data as _resolve

    return _resolve(data)


def resolve_device(device: str | None) -> str:
    """The one device rule (:func:`ferlab.research.device.resolve_device`), as a string."""
    from ..device import resolve_device as _resolve

    return str(_resolve(device))


def model_label(spec: str | Path | None, path: Path) -> str:
    """A short name for default output folders: the shipped name, else the file stem, else
    (for ``run/best.safetensors``) the run folder's name, since "best" says nothing."""
    from ...models.hub import known_models

    if spec is not None and any(m.name == str(spec) for m in known_models()):
        return str(spec)
    if path.stem in ("best", "last"):
        return path.parent.name or path.stem
    return path.stem




def data_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """Content hash of the evaluated faces and labels: identifies the data in metrics.json
    without a path, which would differ between machines holding the same files."""
    h = hashlib.sha1(np.ascontiguousarray(images).tobytes())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def find_votes(fer: Any, ferplus: str | Path | bool | None) -> Any:
    """FER+ votes for ``fer``: ``False`` = none; a path = that folder/file (an error if absent or
    not for this data); ``None`` = a ``ferplus/`` folder beside the data if there is one and it
    fits, else none (a warning says why votes that are there were not used)."""
    from ..data import load_ferplus

    if ferplus is False:
        return None
    if ferplus is None or ferplus is True:
        try:
            return load_ferplus(fer)
        except FerlabError as exc:
            if ferplus is True:
                raise
            if "no FER+ votes found" not in str(exc):  # votes beside the data that do not fit it
                import sys

                print(f"warning: FER+ votes beside the data not used: {exc}", file=sys.stderr)
            return None
    return load_ferplus(fer, ferplus)


def evaluate(model: str | Path | None = None, data: Any = None, *, split: str = "test", tta: bool = False,
             out: str | Path | None = None, batch_size: int = 512, device: str | None = "auto",
             write: bool = True, ferplus: str | Path | bool | None = None) -> dict[str, Any]:
    """Evaluate checkpoint ``model`` (shipped name, file or run folder) on ``split`` of ``data``.

    ``device``: ``auto`` (default) = CUDA if available, else the CPU (:mod:`ferlab.research.device`).
    Returns what is written to ``metrics.json``: provenance that depends only on the checkpoint
    and data (weights hash, data hash, split, TTA) followed by :func:`compute_metrics`' fields,
    floats rounded to 6 digits. No timestamps or paths, so the same inputs give the same file.
    With ``write`` the report and figures go to ``out`` (default ``runs/eval-<model>-<split>``,
    ``-tta`` appended with TTA so the two never overwrite each other) and the returned dict also
    holds ``out``, the folder written.

    ``ferplus`` (None = look beside the data, False = off, or a path): with votes the returned
    dict also holds ``ferplus``, the FER+ block (:func:`.uncertainty.ferplus_metrics`, with the
    temperature and ``uncertain`` threshold fitted on PublicTest), which goes to
    ``metrics_ferplus.json``; ``metrics.json`` never contains it.
    """
    from ..._version import __version__
    from ...models.hub import resolve_model
    from ..nets.checkpoint import load_checkpoint
    from .plots import plot_confusion, plot_reliability
    from .report import markdown_report

    wpath = resolve_model(model)
    device = resolve_device(device)
    ckpt = load_checkpoint(wpath, map_location=device)
    fer = resolve_data(data)
    sp = fer.split(split)
    logits = predict_logits(ckpt.model, sp.images, ckpt.mean, ckpt.std, batch_size=batch_size, tta=tta, device=device)
    probs = probs_from_logits(logits).cpu().numpy()
    label = model_label(model, wpath)
    result: dict[str, Any] = {
        "model": {"name": label, "arch": ckpt.meta.get("model", {}).get("name"), "sha256": sha256_file(wpath)},
        "data": {"split": split, "n": len(sp), "sha1": data_fingerprint(sp.images, sp.labels)},
        "tta": "flip" if tta else None,
        "normalisation": {"mean": ckpt.mean, "std": ckpt.std},
        "ferlab_version": __version__,
        **round_floats(compute_metrics(sp.labels, probs, ckpt.class_names)),
    }
    votes = find_votes(fer, ferplus)
    fp_result = None
    if votes is not None:
        from ..data import split_votes
        from .uncertainty import ferplus_metrics, fit_calibration

        val = fer.split("val")
        val_logits = logits if split == "val" else predict_logits(
            ckpt.model, val.images, ckpt.mean, ckpt.std, batch_size=batch_size, tta=tta, device=device)
        calib = fit_calibration(val_logits.cpu().numpy(), val.labels, split_votes(val, votes))
        block = ferplus_metrics(logits.cpu().numpy(), sp.labels, split_votes(sp, votes), calib)
        block["calibration_fitted_on"] = "val"
        fp_result = {k: result[k] for k in ("model", "data", "tta", "normalisation", "ferlab_version")}
        fp_result["ferplus"] = round_floats(block)
    if write:
        out_dir = Path(out) if out else Path("runs") / f"eval-{label}-{split}{'-tta' if tta else ''}"
        out_dir.mkdir(parents=True, exist_ok=True)
        title = f"{label} on {split}{' (flip TTA)' if tta else ''}"
        plot_confusion(result, out_dir / "confusion_matrix.png", title)
        plot_reliability(result, out_dir / "reliability.png")
        info = {"model": label, "checkpoint": str(wpath), "data": getattr(fer, "source", ""), "split": split,
                "faces": len(sp), "test-time augmentation": "horizontal flip" if tta else "none",
                "normalisation": f"(x/255 - {ckpt.mean}) / {ckpt.std}", "device": device}
        write_text(out_dir / "report.md", markdown_report(result, info))
        if fp_result is not None:
            write_json(out_dir / "metrics_ferplus.json", fp_result)
        write_json(out_dir / "metrics.json", result)  # last: its presence marks a complete evaluation
        result["out"] = str(out_dir)
    if fp_result is not None:
        result["ferplus"] = fp_result["ferplus"]
    return result


def calibrate(model: Any = None, data: Any = None, *, tta: bool = False, out: Any = None, batch_size: int = 512,
              device: str | None = "auto", ferplus: Any = None, write: bool = True) -> dict[str, Any]:
    """Fit :func:`fit_calibration` for checkpoint ``model`` on PublicTest of ``data`` and write
    it as JSON (default ``<checkpoint>.calibration.json`` beside the checkpoint): what a
    shipping script or the inference code needs to report a calibrated confidence and the
    ``uncertain`` flag. ``ferplus`` as in :func:`ferlab.research.evaluation.run.evaluate`."""
    from ..data import split_votes
    from ..nets.checkpoint import load_checkpoint
    from ...models.hub import resolve_model
    from .uncertainty import fit_calibration

    wpath = resolve_model(model)
    device = resolve_device(device)
    ckpt = load_checkpoint(wpath, map_location=device)
    fer = resolve_data(data)
    votes = find_votes(fer, ferplus)
    val = fer.split("val")
    logits = predict_logits(ckpt.model, val.images, ckpt.mean, ckpt.std, batch_size=batch_size, tta=tta,
                            device=device).cpu().numpy()
    cal = fit_calibration(logits, val.labels, None if votes is None else split_votes(val, votes))
    result = {"model": {"sha256": sha256_file(wpath)},
              "data": {"split": "val", "n": len(val), "sha1": data_fingerprint(val.images, val.labels)},
              "tta": "flip" if tta else None, **round_floats(cal)}
    if write:
        path = Path(out) if out else wpath.with_name(wpath.stem + ".calibration.json")
        write_json(path, result)
        result["out"] = str(path)
    return result
