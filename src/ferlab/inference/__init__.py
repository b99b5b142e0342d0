"""Inference: detect faces, classify them, smooth per tracked face, draw, export to ONNX.

Names are imported lazily so ``ferlab --help`` (which imports the CLI module) and the web
server do not pay for OpenCV/torch/onnxruntime until something is actually run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .overlay import annotate
    from .recognizer import Recognizer, Session
    from .results import Face, FrameResult

_LAZY = {
    "Recognizer": "recognizer",
    "Session": "recognizer",
    "Face": "results",
    "FrameResult": "results",
    "annotate": "overlay",
    "export_onnx": "export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
