"""Face detectors behind one small interface, so a better one than the thesis's can be plugged in.

The default is YuNet, OpenCV's light CNN face detector (model zoo, MIT licence), whose
230 KB ONNX file ships inside the package (``ferlab/assets``, attribution in
``assets/ATTRIBUTION.md``): it finds turned, small and partly occluded faces the thesis's
Viola-Jones cascade misses, makes fewer false faces and is several times faster on a
640x480 frame (measured numbers in ``docs/thesis-deviations.md``). ``detector="haar"`` is the
thesis's Viola-Jones Haar cascade exactly (section 4.10, settings of section 7.1: scale 1.1,
5 neighbours, 30 px). Any object with a matching ``detect`` method works as a detector.

Detection dominates the cost of a frame (milliseconds to tens of milliseconds per 640x480
frame on a laptop CPU, against about a millisecond per face for the classifier), so
:class:`ScaledDetector` can run a detector on a downscaled copy of the frame and maps boxes
back; it also caps the side detection sees, so huge photos stay fast.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from ..errors import FerlabError
from .options import DEFAULTS, DETECTORS

HAAR_FILE = "haarcascade_frontalface_default.xml"
YUNET_FILE = "face_detection_yunet_2026may.onnx"
BUNDLED_YUNET = Path(__file__).resolve().parents[1] / "assets" / YUNET_FILE
HAAR_WINDOW = 24  # the cascade's training window; smaller min sizes change nothing


@runtime_checkable
class FaceDetector(Protocol):
    """``detect`` gets the BGR frame and its grayscale (computed once per frame by the caller)
    and returns an (K, 4) int array of (x, y, w, h) boxes in that frame's pixels."""

    name: str

    def detect(self, bgr: np.ndarray, gray: np.ndarray) -> np.ndarray: ...


def _empty() -> np.ndarray:
    return np.zeros((0, 4), np.int32)


class HaarDetector:
    """Viola-Jones with the thesis settings: scale 1.1, min neighbours 5, min size 30x30."""

    name = "haar"

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: tuple[int, int] = (30, 30), cascade: str | os.PathLike[str] | None = None) -> None:
        path = Path(cascade) if cascade else Path(cv2.data.haarcascades) / HAAR_FILE
        if not path.is_file():
            raise FerlabError(f"Haar cascade not found: {path} (is opencv-python(-headless) < 5 installed?)")
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FerlabError(f"Haar cascade {path} could not be loaded")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = (int(min_size[0]), int(min_size[1]))
        # CascadeClassifier keeps per-call buffers; the server calls from several threads.
        self._lock = threading.Lock()

    def detect(self, bgr: np.ndarray, gray: np.ndarray) -> np.ndarray:
        with self._lock:
            boxes = self._cascade.detectMultiScale(gray, scaleFactor=self.scale_factor,
                                                   minNeighbors=self.min_neighbors, minSize=self.min_size)
        return np.asarray(boxes, np.int32).reshape(-1, 4) if len(boxes) else _empty()

    def scaled_min_size(self, scale: float) -> HaarDetector:
        """A copy whose min size is ``min_size * scale`` (floored at the cascade window), so a
        downscaled frame still means "faces of at least 30 px in the original"."""
        clone = object.__new__(HaarDetector)
        clone.__dict__.update(self.__dict__)
        clone._lock = threading.Lock()
        clone.min_size = tuple(max(HAAR_WINDOW, int(round(s * scale))) for s in self.min_size)  # type: ignore[assignment]
        return clone


class YuNetDetector:
    """OpenCV's ``FaceDetectorYN``. Boxes are made square around their centre (side = the longer
    side), because YuNet's boxes are tall and FER2013 faces are square crops: resizing a tall box
    to 48x48 would squash the face.

    That square is also how FER2013 frames its faces: on 1,500 train faces upscaled 4x and
    padded by repeating their border, YuNet's box (found on 88.7%) has a median height of 1.001
    of the 48 px frame and a width of 0.762 of it, with its centre 0.016 box heights above the
    frame's; so the frame is the square on the longer side, centred on the box, to under 1 px at
    48x48 (``benchmarks/bench_fidelity.py --framing 1500``, ``benchmarks/results-fidelity.txt``)."""

    name = "yunet"

    def __init__(self, model_path: str | os.PathLike[str] | None = None, score_threshold: float = 0.8,
                 nms_threshold: float = 0.3, top_k: int = 5000, square: bool = True,
                 engine: str = "auto", threads: int | None = None) -> None:
        path = Path(model_path) if model_path else BUNDLED_YUNET
        if not path.is_file():
            if model_path:
                raise FerlabError(f"YuNet model not found: {path} (check --detector-model, or use --detector haar)")
            raise FerlabError(f"the bundled YuNet face detector is missing ({path}); reinstall ferlab, "
                              "give --detector-model PATH to a face_detection_yunet_*.onnx file, "
                              "or use --detector haar")
        if engine not in YUNET_ENGINES:
            raise FerlabError(f"unknown YuNet engine {engine!r}; choose {', '.join(YUNET_ENGINES)}")
        self.square = square
        self.score_threshold, self.nms_threshold, self.top_k = float(score_threshold), float(nms_threshold), int(top_k)
        self._net: _OrtYuNet | cv2.FaceDetectorYN
        if engine in ("auto", "onnxruntime") and _has_onnxruntime():
            self._net = _OrtYuNet(path, self.score_threshold, self.nms_threshold, self.top_k, threads)
            self.engine = "onnxruntime"
        elif engine == "onnxruntime":
            raise FerlabError("YuNet engine onnxruntime needs onnxruntime (pip install onnxruntime)")
        else:
            try:
                self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), self.score_threshold,
                                                      self.nms_threshold, self.top_k)
            except cv2.error as exc:
                raise FerlabError(f"YuNet model {path} could not be loaded: "
                                  f"{str(exc).strip().splitlines()[-1]}") from None
            self.engine = "opencv"
        self._size: tuple[int, int] | None = None
        self._lock = threading.Lock()  # setInputSize + detect must not interleave

    def detect_faces(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet's raw (K, 15) rows: x, y, w, h, five (x, y) landmarks, score (OpenCV's layout)."""
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        if isinstance(self._net, _OrtYuNet):
            return self._net.detect(bgr)
        h, w = bgr.shape[:2]
        with self._lock:
            if self._size != (w, h):
                self._net.setInputSize((w, h))
                self._size = (w, h)
            _, faces = self._net.detect(bgr)
        return np.zeros((0, 15), np.float32) if faces is None else faces

    def detect(self, bgr: np.ndarray, gray: np.ndarray) -> np.ndarray:
        faces = self.detect_faces(bgr)
        if not len(faces):
            return _empty()
        boxes = square_boxes(faces) if self.square else faces[:, :4]
        return np.round(boxes).astype(np.int32)


def square_boxes(faces: np.ndarray) -> np.ndarray:
    """(K, 4) float squares on the longer side of YuNet's (x, y, w, h), same centre: how
    FER2013 frames its faces (see :class:`YuNetDetector`)."""
    x, y, bw, bh = (faces[:, i] for i in range(4))
    side = np.maximum(bw, bh)
    return np.stack([x + (bw - side) / 2, y + (bh - side) / 2, side, side], axis=1)


YUNET_ENGINES = ("auto", "onnxruntime", "opencv")
YUNET_STRIDES = (8, 16, 32)


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:  # pragma: no cover - onnxruntime is a core dependency
        return False
    return True


class _OrtYuNet:
    """YuNet run by ONNX Runtime instead of OpenCV's DNN module: the same network and the same
    decoding as OpenCV's ``FaceDetectorYN`` (frame padded to a multiple of 32, raw BGR pixels,
    score = sqrt(cls * obj), boxes and landmarks decoded per stride-8/16/32 cell, NMS by
    ``cv2.dnn.NMSBoxes``), at about 40% of the CPU time on a 640x480 frame
    (benchmarks/results-cpu.md, section 2). tests/test_detector.py checks it finds the same boxes as
    OpenCV on real footage. ORT sessions may be called from several threads at once."""

    def __init__(self, path: Path, score_threshold: float, nms_threshold: float, top_k: int,
                 threads: int | None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        # no busy-waiting between calls: the classifier runs on the same cores right after
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise FerlabError(f"YuNet model {path} could not be loaded: {str(exc).splitlines()[0]}") from None
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        wanted = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in YUNET_STRIDES]
        if sorted(names) != sorted(wanted):
            raise FerlabError(f"{path} is not a YuNet model with outputs {', '.join(wanted)}")
        self.output_names = wanted
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        ph, pw = (h - 1) // 32 * 32 + 32, (w - 1) // 32 * 32 + 32
        padded = cv2.copyMakeBorder(bgr, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT, value=0) if (ph, pw) != (h, w) else bgr
        blob = cv2.dnn.blobFromImage(padded)  # (1, 3, ph, pw) float32, BGR, unscaled: what FaceDetectorYN feeds
        outs = dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: blob})))
        rows = []
        for s in YUNET_STRIDES:
            cols = pw // s
            score = np.sqrt(np.clip(outs[f"cls_{s}"].reshape(-1), 0, 1) * np.clip(outs[f"obj_{s}"].reshape(-1), 0, 1))
            idx = np.flatnonzero(score >= self.score_threshold)
            if not len(idx):
                continue
            r, c = np.divmod(idx, cols)
            cell = np.stack([c, r], axis=1).astype(np.float32)  # (k, 2) as (x, y)
            bb = outs[f"bbox_{s}"].reshape(-1, 4)[idx]
            centre = (cell + bb[:, :2]) * s
            size = np.exp(bb[:, 2:]) * s
            kps = (outs[f"kps_{s}"].reshape(-1, 5, 2)[idx] + cell[:, None, :]) * s
            rows.append(np.concatenate([centre - size / 2, size, kps.reshape(-1, 10), score[idx, None]], axis=1))
        if not rows:
            return np.zeros((0, 15), np.float32)
        faces = np.concatenate(rows).astype(np.float32)
        # OpenCV runs NMS on integer rectangles and returns the float rows it keeps
        keep = cv2.dnn.NMSBoxes(faces[:, :4].astype(np.int32).tolist(), faces[:, 14].tolist(),
                                self.score_threshold, self.nms_threshold, top_k=self.top_k)
        return faces[np.asarray(keep, np.int64).reshape(-1)]


class ScaledDetector:
    """Detect on a copy shrunk by ``scale`` (and at most ``max_side`` px), map boxes back.

    Halving the side makes Haar about 2-3x faster (``benchmarks/results-cpu.md``); faces smaller than min size / scale are lost,
    which for a webcam at arm's length (faces > 100 px) costs nothing. ``max_side`` keeps a
    10,000 px photo from taking a minute in the cascade.
    """

    def __init__(self, inner: FaceDetector, scale: float = DEFAULTS.detect_scale,
                 max_side: int | None = DEFAULTS.max_detect_side) -> None:
        if not 0 < scale <= 1:
            raise FerlabError(f"detect scale must be in (0, 1], got {scale}")
        self.inner = inner
        self.scale = float(scale)
        self.max_side = max_side
        self.name = getattr(inner, "name", type(inner).__name__)
        self._scaled_cache: dict[float, FaceDetector] = {}

    def _effective_scale(self, shape: tuple[int, ...]) -> float:
        s = self.scale
        if self.max_side:
            s = min(s, self.max_side / max(shape[0], shape[1]))
        return s

    def _inner_for(self, s: float) -> FaceDetector:
        if not isinstance(self.inner, HaarDetector) or s >= 1:
            return self.inner
        key = round(s, 4)
        if key not in self._scaled_cache:
            if len(self._scaled_cache) > 8:
                self._scaled_cache.clear()
            self._scaled_cache[key] = self.inner.scaled_min_size(s)
        return self._scaled_cache[key]

    def detect(self, bgr: np.ndarray, gray: np.ndarray) -> np.ndarray:
        s = self._effective_scale(gray.shape)
        inner = self._inner_for(s)
        if s >= 1:
            return inner.detect(bgr, gray)
        size = (max(1, int(round(gray.shape[1] * s))), max(1, int(round(gray.shape[0] * s))))
        # Haar never looks at colour and YuNet never at the gray copy: resize only what is used
        if isinstance(inner, HaarDetector):
            small_gray = small_bgr = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        else:
            small_bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            small_gray = small_bgr if isinstance(inner, YuNetDetector) else cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        boxes = inner.detect(small_bgr, small_gray)
        if not len(boxes):
            return boxes
        sx, sy = gray.shape[1] / size[0], gray.shape[0] / size[1]
        out = boxes.astype(np.float64) * np.array([sx, sy, sx, sy])
        return np.round(out).astype(np.int32)


def make_detector(name: str | FaceDetector = DEFAULTS.detector, model_path: str | os.PathLike[str] | None = None,
                  *, scale: float = DEFAULTS.detect_scale, max_side: int | None = DEFAULTS.max_detect_side,
                  **options: Any) -> ScaledDetector:
    """``yunet`` (default; the bundled model unless ``model_path`` names another file),
    ``haar`` (the thesis's Viola-Jones) or a detector object."""
    if not isinstance(name, str):
        if not hasattr(name, "detect"):
            raise FerlabError(f"detector {name!r} has no detect(bgr, gray) method")
        inner: FaceDetector = name
    elif name == "haar":
        if model_path:
            raise FerlabError("--detector-model is a YuNet file; it cannot be used with --detector haar")
        inner = HaarDetector(**options)  # type: ignore[arg-type]
    elif name == "yunet":
        inner = YuNetDetector(model_path, **options)  # type: ignore[arg-type]
    else:
        raise FerlabError(f"unknown detector {name!r}; choose {' or '.join(DETECTORS)}")
    return ScaledDetector(inner, scale=scale, max_side=max_side)
