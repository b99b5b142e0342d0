"""Run the classifier: eager PyTorch or ONNX Runtime, same input and output.

``auto`` picks by rule, not by a start-up race: ONNX Runtime on CPU (when onnxruntime imports
and the export works), PyTorch when the model is on a GPU. On CPU, ORT runs FerNet faster than
eager PyTorch at batch 1 and 4 (``maintainers/benchmarks/bench_inference.py``; recorded numbers in
``maintainers/benchmarks/results-cpu.md``), and a timing race at start-up would pick differently from run
to run on a busy machine. PyTorch stays the fallback if the export fails.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import FerlabError
from .options import BACKENDS, DEFAULTS


class Backend(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, 48, 48) float32 normalised faces -> (N, C) logits as float32."""
        ...


class TorchBackend:
    name = "torch"

    def __init__(self, model: Any, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not len(batch):
            return np.zeros((0, 0), np.float32)
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
            return self.model(x).float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime on CPU. Spinning of idle worker threads is turned off: with a face
    detector running between two model calls on the same cores, threads busy-waiting for
    the next call steal the detector's CPU."""

    name = "onnx"

    def __init__(self, model: str | os.PathLike[str] | bytes, threads: int | None = None,
                 spinning: bool = False) -> None:
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - onnxruntime is a dependency
            raise FerlabError("backend onnx needs onnxruntime (pip install onnxruntime)") from None
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        if not spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        src: Any = model if isinstance(model, bytes) else str(model)
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise FerlabError(f"ONNX model not found: {model}")
        try:
            self.session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            where = "" if isinstance(model, bytes) else f" {model}"
            raise FerlabError(f"ONNX model{where} could not be loaded: {str(exc).splitlines()[0]}") from None
        self.input_name = self.session.get_inputs()[0].name
        from .onnx_format import parse_metadata

        self.metadata = parse_metadata(dict(self.session.get_modelmeta().custom_metadata_map))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not len(batch):
            return np.zeros((0, 0), np.float32)
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


def make_backend(kind: str, checkpoint: Any, weights_path: str | os.PathLike[str] | None = None,
                 *, device: str = DEFAULTS.device, threads: int | None = DEFAULTS.threads) -> Backend:
    """``torch``, ``onnx`` (export, cached per checkpoint) or ``auto`` (rule in module doc)."""
    if kind not in BACKENDS:
        raise FerlabError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    if kind == "torch" or (kind == "auto" and not str(device).startswith("cpu")):
        return TorchBackend(checkpoint.model, device)
    from .onnx_format import cached_export

    if kind == "onnx":
        return OnnxBackend(cached_export(checkpoint, weights_path), threads=threads)
    try:
        import onnxruntime  # noqa: F401

        return OnnxBackend(cached_export(checkpoint, weights_path), threads=threads)
    except (ImportError, FerlabError):
        return TorchBackend(checkpoint.model, device)
