"""Inference: detect faces, classify them, smooth per tracked face, draw, export to ONNX.

Modules: ``recognizer`` (Recognizer, Session), ``options`` (every option, declared once),
``stream`` (the one frame loop), ``sinks`` (its outputs), ``capture`` (opening sources),
``photos`` (predict_images), ``export`` (export_onnx), ``detector``, ``backends``,
``tracker``, ``smoothing``, ``overlay``, ``plot``, ``results``, ``model_info``, ``demo``.

Names are imported lazily so ``ferlab --help`` (which imports the CLI module) and the web
server do not pay for OpenCV/torch/onnxruntime until something is actually run.
"""
from __future__ import annotations

from .._lazy import lazy_exports

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .export import export_onnx
    from .model_info import ModelInfo
    from .options import InferenceOptions
    from .overlay import annotate
    from .photos import predict_images
    from .recognizer import Recognizer, Session
    from .results import Face, FrameResult
    from .stream import RunSummary, Stream

_LAZY = {
    "Recognizer": "recognizer",
    "Session": "recognizer",
    "InferenceOptions": "options",
    "Stream": "stream",
    "RunSummary": "stream",
    "Face": "results",
    "FrameResult": "results",
    "ModelInfo": "model_info",
    "annotate": "overlay",
    "predict_images": "photos",
    "export_onnx": "export",
}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
