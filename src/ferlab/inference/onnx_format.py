"""The ONNX files ferlab writes: export to bytes, the metadata, INT8 quantisation, the cache.

The ONNX file is meant to be usable alone, from any runtime and language: input
``input`` is N x 1 x 48 x 48 float32 already normalised by Eq. (27), output ``logits`` is N x 7,
the batch dimension is dynamic, and the class names and the mean/std of Eq. (27) are stored in
the model's ``metadata_props`` (``class_names`` as a JSON list, ``mean``, ``std``).

The user-facing export (checks against PyTorch, calibration folders) is
:func:`ferlab.inference.export.export_onnx`; this module is what the backends need.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import CLASS_NAMES, IMAGE_SIZE, MEAN, STD
from ..errors import FerlabError
from ..fileio import atomic_path

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17


def _export_bytes(model: Any, opset: int) -> bytes:
    """TorchScript-based exporter first (fast, no extra dependency, exact for these CNNs);
    the dynamo exporter (needs onnxscript) only if that fails, e.g. on a future torch."""
    import torch

    import copy

    model = getattr(model, "module", model)
    # a copy: exporting must not switch a model in training to eval mode or move it off the GPU
    model = copy.deepcopy(getattr(model, "_orig_mod", model)).eval().cpu()
    dummy = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    errors = []
    for dynamo in (False, True):
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecation notices of the legacy exporter
                kwargs: dict[str, Any] = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                              opset_version=opset, dynamo=dynamo)
                if dynamo:
                    kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
                else:
                    kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
                    kwargs["do_constant_folding"] = True
                with torch.no_grad():
                    out = torch.onnx.export(model, (dummy,), buf, **kwargs)
                if dynamo and out is not None and not buf.getvalue():
                    out.save(buf)
            data = buf.getvalue()
            if data:
                return data
            errors.append(f"dynamo={dynamo}: exporter wrote nothing")
        except Exception as exc:  # noqa: BLE001 - try the next exporter, report both
            errors.append(f"dynamo={dynamo}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise FerlabError("ONNX export failed: " + "; ".join(errors))


def _with_metadata(data: bytes, class_names: list[str], mean: float, std: float,
                   extra: dict[str, Any] | None = None) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    meta = {"class_names": json.dumps(list(class_names)), "mean": repr(float(mean)), "std": repr(float(std)),
            "input": f"N x 1 x {IMAGE_SIZE} x {IMAGE_SIZE} float32 grayscale, (pixel / 255 - mean) / std",
            "output": f"N x {len(class_names)} logits (softmax for probabilities)"}
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "ferlab"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def read_metadata(path_or_bytes: str | os.PathLike[str] | bytes) -> dict[str, Any]:
    """Class names and normalisation stored by :func:`export_onnx` (defaults when absent)."""
    import onnxruntime as ort

    sess = _session(path_or_bytes, ort)
    raw = dict(sess.get_modelmeta().custom_metadata_map)
    return parse_metadata(raw)


def parse_metadata(raw: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(raw)
    try:
        out["class_names"] = json.loads(raw["class_names"]) if "class_names" in raw else list(CLASS_NAMES)
        out["mean"] = float(raw.get("mean", MEAN))
        out["std"] = float(raw.get("std", STD))
    except (ValueError, TypeError) as exc:
        raise FerlabError(f"ONNX metadata is malformed: {exc}") from None
    return out


def _session(path_or_bytes: str | os.PathLike[str] | bytes, ort: Any) -> Any:
    src = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"])


def export_bytes(checkpoint: Any, opset: int = DEFAULT_OPSET, extra: dict[str, Any] | None = None) -> bytes:
    """A :class:`ferlab.models.Checkpoint` -> ONNX bytes with metadata."""
    from .._version import __version__

    meta = {"ferlab_version": __version__, "arch": checkpoint.meta.get("model", {}).get("name", "?")}
    meta.update(extra or {})
    return _with_metadata(_export_bytes(checkpoint.model, opset), checkpoint.class_names,
                          checkpoint.mean, checkpoint.std, meta)


INT8_SCHEME = "U8S8, reduce_range"
"""How :func:`quantize_int8` quantises: unsigned 8-bit activations, signed weights limited to
7 bits (``reduce_range``), per output channel.

Why 7-bit weights: on x86 CPUs without VNNI (AVX2-only, and AVX-512 without VNNI) ONNX
Runtime multiplies u8 activations by s8 weights with ``vpmaddubsw``, which adds two products
into a *saturating* 16-bit integer: 2 x 255 x 127 overflows it, so full-range U8S8 models
compute wrong sums there (the shipped FerNet, quantised so, was measured agreeing with fp32
on only 55% of PrivateTest faces on such a CPU, against 98.7% on a VNNI CPU). With weights in [-64, 64] the largest pair
sum, 2 x 255 x 64 = 32,640, fits in int16, so every kernel (AVX2, AVX-512, VNNI, ARM) computes
the same exact integer sums and the model agrees with fp32 alike on every CPU. U8U8 is also
saturation-free but runs ~2x slower than U8S8 and agreed no better (98.3% on all PrivateTest
faces, against 98.9% for this scheme; ``docs/thesis-deviations.md``)."""


FP32_CONVS = 2


def fp32_nodes(proto: Any) -> list[str]:
    """Nodes :func:`quantize_int8` leaves in fp32: the first two convolutions (they read the
    image and its first features, have few channels and cost little) and the fully connected
    head (the logits the class is picked from). With 7-bit weights, keeping these raised
    agreement with fp32 for the shipped FerNet on all 3,589 PrivateTest faces from 97.9%
    (everything quantised) to 98.5% (first conv + head) and 98.9% (first two convs + head;
    PublicTest 99.4%)."""
    names: list[str] = []
    convs = 0
    for node in proto.graph.node:
        if node.op_type == "Conv" and convs < FP32_CONVS:
            names.append(node.name)
            convs += 1
        elif node.op_type in ("Gemm", "MatMul"):
            names.append(node.name)
    return names


def quantize_int8(fp32: bytes, calibration: np.ndarray, batch: int = 16) -> bytes:
    """Static quantisation (QDQ format), :data:`INT8_SCHEME`: activation ranges measured
    (min/max) on ``calibration`` (already-normalised N x 1 x 48 x 48 faces; a few thousand
    FER2013 train faces give stable ranges), per-channel 7-bit signed weights, the first two
    convolutions and the head in fp32 (:func:`fp32_nodes`). Metadata is copied over (the
    quantiser drops it) and says how the model was quantised."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    calibration = np.ascontiguousarray(calibration, np.float32)
    # equal batches: some calibrators stack per-batch statistics and fail on a short last one
    n_batches = max(1, len(calibration) // batch) if len(calibration) >= batch else 1
    batches = ([calibration[i * batch:(i + 1) * batch] for i in range(n_batches)]
               if len(calibration) >= batch else [calibration])

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{INPUT_NAME: b} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="ferlab-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            src = pre
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation only
            pass
        keep_fp32 = fp32_nodes(onnx.load(str(src)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the quantiser logs a root-logger WARNING for every rank-1 weight (BatchNorm1d in
            # the head) it leaves per-tensor; that is expected, not something users can act on
            logging.disable(logging.WARNING)
            try:
                quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                per_channel=True, reduce_range=True, nodes_to_exclude=keep_fp32)
            finally:
                logging.disable(logging.NOTSET)
        proto = onnx.load(str(dst))
    meta = {p.key: p.value for p in onnx.load_from_string(fp32).metadata_props}
    meta["quantization"] = (f"static int8 (QDQ, QUInt8 activations, per-channel 7-bit QInt8 weights "
                            f"[reduce_range: exact on CPUs with and without VNNI]; first {FP32_CONVS} convs and "
                            f"classifier head kept fp32), {sum(len(b) for b in batches)} calibration faces")
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    return proto.SerializeToString()


def cache_dir() -> Path:
    return Path(os.environ.get("FERLAB_CACHE", Path.home() / ".cache" / "ferlab")) / "onnx"


def cached_export(checkpoint: Any, weights_path: str | os.PathLike[str] | None) -> bytes:
    """ONNX bytes for a checkpoint, exported once and kept in the user cache (keyed by the
    checkpoint's content, ferlab/torch versions and opset), so ``backend=auto`` costs an
    export only on first use. An unwritable cache just means exporting every time."""
    import torch

    from .._version import __version__

    if weights_path is None:
        return export_bytes(checkpoint)
    wpath = Path(weights_path)
    h = hashlib.sha256()
    with open(wpath, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps(checkpoint.meta, sort_keys=True, default=str).encode())
    h.update(f"{__version__}|{torch.__version__}|{DEFAULT_OPSET}".encode())
    target = cache_dir() / f"{wpath.stem}-{h.hexdigest()[:16]}.onnx"
    if target.is_file():
        try:
            return target.read_bytes()
        except OSError:
            pass
    data = export_bytes(checkpoint)
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    except OSError:
        pass
    return data
