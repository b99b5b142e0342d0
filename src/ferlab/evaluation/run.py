"""``ferlab.evaluate``: one checkpoint on one split -> metrics.json, report.md and figures."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FerlabError
from ..fileio import write_json, write_text
from .metrics import compute_metrics, round_floats
from .predict import predict_probs


def resolve_data(data: Any) -> Any:
    """``FerData`` as is, else a path (argument, then ``$FERLAB_DATA``): see :func:`ferlab.data.resolve_data`."""
    from ..data import resolve_data as _resolve

    return _resolve(data)


def resolve_device(device: str | None) -> str:
    """The one device rule (:func:`ferlab.device.resolve_device`), as a string."""
    from ..device import resolve_device as _resolve

    return str(_resolve(device))


def model_label(spec: str | Path | None, path: Path) -> str:
    """A short name for default output folders: the shipped name, else the file stem, else
    (for ``run/best.safetensors``) the run folder's name, since "best" says nothing."""
    from ..models.hub import shipped_models

    if spec is not None and any(m.name == str(spec) for m in shipped_models()):
        return str(spec)
    if path.stem in ("best", "last"):
        return path.parent.name or path.stem
    return path.stem


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """Content hash of the evaluated faces and labels: identifies the data in metrics.json
    without a path, which would differ between machines holding the same files."""
    h = hashlib.sha1(np.ascontiguousarray(images).tobytes())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def evaluate(model: str | Path | None = None, data: Any = None, *, split: str = "test", tta: bool = False,
             out: str | Path | None = None, batch_size: int = 512, device: str | None = "auto",
             write: bool = True) -> dict[str, Any]:
    """Evaluate checkpoint ``model`` (shipped name, file or run folder) on ``split`` of ``data``.

    ``device``: ``auto`` (default) = CUDA if available, else the CPU (:mod:`ferlab.device`).
    Returns what is written to ``metrics.json``: provenance that depends only on the checkpoint
    and data (weights hash, data hash, split, TTA) followed by :func:`compute_metrics`' fields,
    floats rounded to 6 digits. No timestamps or paths, so the same inputs give the same file.
    With ``write`` the report and figures go to ``out`` (default ``runs/eval-<model>-<split>``,
    ``-tta`` appended with TTA so the two never overwrite each other) and the returned dict also
    holds ``out``, the folder written.
    """
    from .._version import __version__
    from ..models.hub import resolve_model
    from ..models.checkpoint import load_checkpoint
    from .plots import plot_confusion, plot_reliability
    from .report import markdown_report

    wpath = resolve_model(model)
    device = resolve_device(device)
    ckpt = load_checkpoint(wpath, map_location=device)
    fer = resolve_data(data)
    sp = fer.split(split)
    probs = predict_probs(ckpt.model, sp.images, ckpt.mean, ckpt.std, batch_size=batch_size, tta=tta, device=device)
    label = model_label(model, wpath)
    result: dict[str, Any] = {
        "model": {"name": label, "arch": ckpt.meta.get("model", {}).get("name"), "sha256": _sha256(wpath)},
        "data": {"split": split, "n": len(sp), "sha1": data_fingerprint(sp.images, sp.labels)},
        "tta": "flip" if tta else None,
        "normalisation": {"mean": ckpt.mean, "std": ckpt.std},
        "ferlab_version": __version__,
        **round_floats(compute_metrics(sp.labels, probs, ckpt.class_names)),
    }
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
        write_json(out_dir / "metrics.json", result)  # last: its presence marks a complete evaluation
        result["out"] = str(out_dir)
    return result
