"""What a loaded model is: name, file, architecture, classes, normalisation, metrics on record.

Built once when a :class:`~ferlab.inference.Recognizer` loads its model, from the metadata it
reads anyway (a checkpoint's JSON sidecar, or an ONNX file's metadata), and kept on it as
``recognizer.info``, so nothing (the web server's ``/api/model``, the CLI) reads it again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constants import CLASS_NAMES, MEAN, STD


@dataclass(frozen=True)
class ModelInfo:
    name: str | None  # shipped model name, run folder name (for best.safetensors) or file stem
    path: str | None  # the file the weights came from
    format: str  # "safetensors" or "onnx"
    arch: str | None
    class_names: list[str]
    mean: float
    std: float
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)  # everything on record, as stored

    @property
    def file(self) -> str | None:
        """The file name only (what may be shown to others: no folders)."""
        return Path(self.path).name if self.path else None

    def accuracy(self) -> dict[str, float]:
        """Accuracy per split on record (``{"val": 0.67, "test": 0.69, ...}``; empty if none)."""
        return {split: float(v["accuracy"]) for split, v in self.metrics.items()
                if isinstance(v, dict) and isinstance(v.get("accuracy"), (int, float))}

    @classmethod
    def from_meta(cls, path: str | os.PathLike[str] | None, meta: dict[str, Any], fmt: str) -> ModelInfo:
        model = meta.get("model")
        arch = model.get("name") if isinstance(model, dict) else None
        arch = arch or (meta.get("arch") if isinstance(meta.get("arch"), str) and meta.get("arch") != "?" else None)
        metrics = meta.get("metrics")
        return cls(name=model_name(path) if path else None, path=str(path) if path else None, format=fmt,
                   arch=arch, class_names=list(meta.get("class_names", CLASS_NAMES)),
                   mean=float(meta.get("mean", MEAN)), std=float(meta.get("std", STD)),
                   metrics=metrics if isinstance(metrics, dict) else {}, meta=dict(meta))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ModelInfo:
        """From a checkpoint's sidecar (for objects that hold only a file path); an absent
        or unreadable sidecar gives an entry with the defaults."""
        p = Path(path)
        meta: dict[str, Any] = {}
        sidecar = p.with_suffix(".json")
        if p.suffix in (".safetensors", ".onnx") and sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                meta = {}
        fmt = "onnx" if p.suffix == ".onnx" else "safetensors"
        return cls.from_meta(p, meta if isinstance(meta, dict) else {}, fmt)


def model_name(path: str | os.PathLike[str]) -> str:
    """A shipped model's name, a run folder's name for its ``best.safetensors``, else the stem."""
    from ..models.hub import is_shipped

    p = Path(path)
    if is_shipped(p):
        return p.stem
    return (p.parent.name or p.resolve().parent.name) if p.stem == "best" else p.stem
