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

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from ..errors import FerlabError
from .options import DEFAULTS, DETECTORS
from .tracker import iou_matrix

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
    48x48 (``maintainers/benchmarks/bench_fidelity.py --framing 1500``, ``maintainers/benchmarks/results-fidelity.txt``)."""

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

    def detect_faces(self, bgr: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """YuNet's raw (K, 15) rows: x, y, w, h, five (x, y) landmarks, score (OpenCV's layout);
        ``threshold`` replaces the score threshold for this call (candidates for a second look)."""
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        if isinstance(self._net, _OrtYuNet):
            return self._net.detect(bgr, threshold)
        h, w = bgr.shape[:2]
        with self._lock:
            if self._size != (w, h):
                self._net.setInputSize((w, h))
                self._size = (w, h)
            if threshold is not None:
                self._net.setScoreThreshold(float(threshold))
            try:
                _, faces = self._net.detect(bgr)
            finally:
                if threshold is not None:
                    self._net.setScoreThreshold(self.score_threshold)
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
    (maintainers/benchmarks/results-cpu.md, section 2). tests/test_detector.py checks it finds the same boxes as
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

    def detect(self, bgr: np.ndarray, threshold: float | None = None) -> np.ndarray:
        thr = self.score_threshold if threshold is None else float(threshold)
        h, w = bgr.shape[:2]
        ph, pw = (h - 1) // 32 * 32 + 32, (w - 1) // 32 * 32 + 32
        padded = cv2.copyMakeBorder(bgr, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT, value=0) if (ph, pw) != (h, w) else bgr
        blob = cv2.dnn.blobFromImage(padded)  # (1, 3, ph, pw) float32, BGR, unscaled: what FaceDetectorYN feeds
        outs = dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: blob})))
        rows = []
        for s in YUNET_STRIDES:
            cols = pw // s
            score = np.sqrt(np.clip(outs[f"cls_{s}"].reshape(-1), 0, 1) * np.clip(outs[f"obj_{s}"].reshape(-1), 0, 1))
            idx = np.flatnonzero(score >= thr)
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
                                thr, self.nms_threshold, top_k=self.top_k)
        return faces[np.asarray(keep, np.int64).reshape(-1)]


YUNET_SMALLEST = 28
"""Face side (px, in the image a pass sees) down to which a pass finds >= 99% of faces: YuNet
scores almost every face of this size >= ``CANDIDATE_THRESHOLD`` (at its own 0.8 only 94%;
24 px: 88%), and the second look confirms it. The finest pass is the scale at which a
``min_face`` face is this large. On 1920x1080 canvases 28 and 32 px gave the same recall of the
sample-photo faces in ``maintainers/benchmarks/bench_scale.py`` (one hard, cut-off face apart), and 28 needs
a 23% smaller finer pass, which keeps a 3.6 MP photo under 100 ms."""
YUNET_LARGEST = 480
"""Face side (px, in the image YuNet sees) up to which it finds >= 99% of faces: its
stride-32 cells are trained on faces of up to a few hundred pixels, and a face much larger
than this is not a face to it (it found none at 800 px): so a face that fills a 4K frame must
be looked for on a smaller copy."""
PASS_RATIO = 8.0
"""Largest step between the scales of two passes: each pass finds faces over a range of about
YUNET_LARGEST / YUNET_SMALLEST = 17x, so with steps of at most 8x every size is inside the
trusted range of one pass with room to spare."""
CANDIDATE_THRESHOLD = 0.3
"""Boxes a pass scores from this up to the detector's threshold (0.8) are candidates: small faces
score low (a 24 px face reaches 0.8 in 88% of cases, 0.3 in 94%), so each candidate gets a
second look on a crop enlarged until it is ``VERIFY_FACE`` px, and is kept only if YuNet finds
it there with a score of at least ``CONFIRM_THRESHOLD``. On face-free backgrounds YuNet gives
about one such candidate in 15 frames of 640x480, so the second looks cost nothing there."""
VERIFY_FACE = 96
"""The candidate's side (px) in its second look. Faces cut by the frame's edge and faces with
little around them (a tight crop pasted on a background) are the usual candidates; at 96 px YuNet
confirms more of them than at 64 px, and a second look still costs a few milliseconds."""
CONFIRM_THRESHOLD = 0.7
"""YuNet's score in the second look that confirms a candidate. Most non-faces score near 0
there while true faces cut by an edge often score 0.6-0.8. On the scale benchmark 0.7 found
exactly the faces 0.6 found with 4 false faces in 485 images instead of 10, and 0.8 (at 64 px)
1 false face but 12 fewer faces (``maintainers/benchmarks/results-scale-second-look.txt``, one
run); a hand can still score 0.7."""
VERIFY_CONTEXT = 3.0  # the second look's crop is this many candidate sides wide: the head and around it
FOLLOWED_IOU = 0.5  # a candidate overlapping a face the stream follows this much is that face
REJECTED_IOU = 0.3  # ... and one overlapping a recently rejected candidate this much is that candidate
RECHECK_SECONDS = 0.5
"""A candidate the second look rejected is not looked at again in about the same place until the
stream's clock passes the next multiple of this (seconds of stream time): the same rejected
candidates come back frame after frame in video (a face in profile, a poster, a face cut by the
frame), and looking at each of them every frame would almost double the cost of a 640x480
frame with four faces. The periods are fixed on the stream's own timestamps, not counted from
each rejection, so what a frame's detection remembers depends only on the frames since the
period began: a video cut into segments (``ferlab batch``), each with a warm-up longer than a
period, detects exactly what the unsplit run detects."""
MAX_CANDIDATES = 16  # second looks per frame at most (highest scores first)
CONTAINED = 0.6  # a box with this share of its area inside a box twice its side is part of that face
TILE = 2560
"""Finer passes over a copy larger than this (px on a side) run tile by tile, each tile cut from
the frame and shrunk on its own: YuNet's memory grows with its input (about 50 bytes a pixel,
1.1 GB for a 6144x3456 copy), a tile's does not. Tiles overlap by ``TILE_OVERLAP``, more than
the largest face a finer pass reports, so every such face lies whole in one tile."""
TILE_OVERLAP = YUNET_LARGEST + 32


class StreamMemory:
    """What one video stream's detection remembers between frames, so that candidates seen
    before need no second look: the faces the stream follows (its tracker's confirmed boxes in
    the previous frame; a candidate on one is that face again and is kept) and the candidates
    the second look rejected since the current ``RECHECK_SECONDS`` period of stream time began
    (one in about the same place is dropped without a look until the next period). Owned by
    one stream (a :class:`~ferlab.inference.recognizer.Session`), never shared: the detector
    itself is shared."""

    def __init__(self) -> None:
        self.followed = np.zeros((0, 4))
        self._rejected: list[np.ndarray] = []
        self._period: int | None = None

    def next_round(self, followed: np.ndarray, timestamp: float) -> None:
        """Start a detection round at ``timestamp`` (seconds of stream time): the boxes followed
        now; a new period forgets the rejections."""
        self.followed = np.asarray(followed, np.float64).reshape(-1, 4)
        period = math.floor(timestamp / RECHECK_SECONDS)
        if period != self._period:
            self._period, self._rejected = period, []

    def reset(self) -> None:
        """A scene cut or a new stream: nothing seen before is still there."""
        self.followed = np.zeros((0, 4))
        self._rejected, self._period = [], None

    def follows(self, squares: np.ndarray) -> np.ndarray:
        return _overlaps(squares, self.followed, FOLLOWED_IOU)

    def recently_rejected(self, squares: np.ndarray) -> np.ndarray:
        return _overlaps(squares, np.array(self._rejected, np.float64).reshape(-1, 4), REJECTED_IOU)

    def reject(self, squares: np.ndarray) -> None:
        self._rejected += list(squares)


def _overlaps(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """For each box of ``a``: does a box of ``b`` overlap it with IoU >= ``threshold``?"""
    if not len(a) or not len(b):
        return np.zeros(len(a), bool)
    return iou_matrix(a, b).max(axis=1) >= threshold


@dataclass(frozen=True)
class DetectionPass:
    """One run of the inner detector on a copy of the frame scaled by ``scale``; it reports
    faces up to ``largest`` px in that copy (None: all), because larger ones are out of its
    trusted range and a coarser pass reports them."""

    scale: float
    largest: float | None = None

    def size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(width, height) of the copy this pass looks at, for a frame of ``shape`` (h, w, ...)."""
        return max(1, int(round(shape[1] * self.scale))), max(1, int(round(shape[0] * self.scale)))

    def tiles(self, shape: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) of each tile of the scaled copy: the whole copy, unless this is a
        finer pass over a copy larger than ``TILE`` on a side."""
        w, h = self.size(shape)
        if self.largest is None or max(w, h) <= TILE:
            return [(0, 0, w, h)]

        def cuts(n: int) -> list[tuple[int, int]]:
            k = max(1, int(np.ceil((n - TILE_OVERLAP) / (TILE - TILE_OVERLAP))))
            side = int(np.ceil((n + (k - 1) * TILE_OVERLAP) / k))
            starts = [min(i * (side - TILE_OVERLAP), n - side) for i in range(k)] if k > 1 else [0]
            return [(a, min(n, a + side)) for a in starts]

        return [(x0, y0, x1, y1) for y0, y1 in cuts(h) for x0, x1 in cuts(w)]

    def describe(self, shape: tuple[int, ...]) -> str:
        w, h = self.size(shape)
        n = len(self.tiles(shape))
        return (f"{w}x{h}" + (f" in {n} tiles" if n > 1 else "")
                + (f" (faces < {self.largest:.0f} px)" if self.largest else ""))


class ScaledDetector:
    """The detection policy: which copies of a frame the inner detector looks at.

    YuNet finds faces reliably only from about 28 to 480 px (``YUNET_SMALLEST``,
    ``YUNET_LARGEST``), so one pass at one size cannot serve both a face that fills a 4K frame
    and a face of 40 px in it. For YuNet the policy is a small pyramid:

    1. the *working pass*: a copy at ``work_side`` px on its longer side (640, as YuNet's own
       demos; never enlarged, and smaller when a face filling the shorter side would exceed
       ``YUNET_LARGEST``) finds every face from the whole frame down to ~28 px of that copy;
    2. *finer passes*, only when the working copy would miss faces of ``min_face`` px (i.e. the
       frame is larger than the working size): copies up to the scale at which a ``min_face``
       face is ``YUNET_SMALLEST`` px (at most full resolution), in steps of at most
       ``PASS_RATIO``; each reports only faces below ``YUNET_LARGEST`` px, which are its range.

    Boxes of all passes are merged by non-maximum suppression on YuNet's scores, and a box mostly
    inside a box of twice its side (an eye or a mouth a fine pass took for a face) is dropped.
    Boxes a pass scores between ``CANDIDATE_THRESHOLD`` and the detector's threshold get a
    second look on a crop enlarged until they are ``VERIFY_FACE`` px. A 640x480 frame gets one
    full-resolution pass, as before; a 1920x1080 one a 640x360 and a 1344x756 pass, cheaper
    than the full-resolution pass of before and right at every size.

    ``scale`` (``--detect-scale``) shrinks every pass (faces below ``min_face / scale`` are
    missed: cheaper); ``max_side`` (``--max-detect-side``) caps the longer side of every pass
    (faces below ``min_face * long side / max_side`` are missed on larger frames). With
    ``work_side=0`` there is one pass at ``min(scale, max_side / long side)``, the previous
    default policy with ``max_side=1920``. Other detectors (Haar, plug-ins) get that one pass: the
    cascade scans every size itself, from its 30 px minimum up.
    """

    def __init__(self, inner: FaceDetector, scale: float = DEFAULTS.detect_scale,
                 max_side: int | None = DEFAULTS.max_detect_side, *, work_side: int | None = DEFAULTS.detect_side,
                 min_face: int | None = DEFAULTS.min_face) -> None:
        if not 0 < scale <= 1:
            raise FerlabError(f"detect scale must be in (0, 1], got {scale}")
        self.inner = inner
        self.scale = float(scale)
        self.max_side = max_side or None
        self.work_side = work_side or None
        self.min_face = min_face or None
        self.name = getattr(inner, "name", type(inner).__name__)
        # YuNet's trusted range and the second look, as attributes so benchmarks can vary them
        self.smallest, self.largest = float(YUNET_SMALLEST), float(YUNET_LARGEST)
        self.candidate_threshold: float | None = CANDIDATE_THRESHOLD
        self.confirm_threshold, self.verify_face = CONFIRM_THRESHOLD, float(VERIFY_FACE)
        self.verify_context = VERIFY_CONTEXT
        self._scaled_cache: dict[float, FaceDetector] = {}

    # -- the plan ------------------------------------------------------------------------
    def _effective_scale(self, shape: tuple[int, ...]) -> float:
        """The finest scale any pass may use on a frame of ``shape``: ``scale``, capped by ``max_side``."""
        s = self.scale
        if self.max_side:
            s = min(s, self.max_side / max(shape[0], shape[1]))
        return s

    def plan(self, shape: tuple[int, ...]) -> list[DetectionPass]:
        """The passes made on a frame of ``shape`` (h, w, ...), coarsest first."""
        top = self._effective_scale(shape)
        if not isinstance(self.inner, YuNetDetector) or not self.work_side:
            return [DetectionPass(top)]
        long_side, short_side = max(shape[0], shape[1]), min(shape[0], shape[1])
        coarse = min(top, self.work_side / long_side, self.largest / short_side)
        fine = min(top, self.smallest / self.min_face) if self.min_face else coarse
        if fine <= coarse * 1.25:  # a second pass this close would find the same faces
            return [DetectionPass(coarse)]
        steps = int(np.ceil(np.log(fine / coarse) / np.log(PASS_RATIO) - 1e-9))
        scales = [coarse * (fine / coarse) ** (k / steps) for k in range(steps + 1)]
        return [DetectionPass(scales[0])] + [DetectionPass(s, self.largest) for s in scales[1:]]

    # -- running it ----------------------------------------------------------------------
    def _inner_for(self, s: float) -> FaceDetector:
        if not isinstance(self.inner, HaarDetector) or s >= 1:
            return self.inner
        key = round(s, 4)
        if key not in self._scaled_cache:
            if len(self._scaled_cache) > 8:
                self._scaled_cache.clear()
            self._scaled_cache[key] = self.inner.scaled_min_size(s)
        return self._scaled_cache[key]

    @staticmethod
    def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if (image.shape[1], image.shape[0]) == size:
            return image
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def _single(self, bgr: np.ndarray, gray: np.ndarray, s: float) -> np.ndarray:
        """One pass of any detector at scale ``s``, boxes in frame pixels."""
        inner = self._inner_for(s)
        if s >= 1:
            return inner.detect(bgr, gray)
        size = (max(1, int(round(gray.shape[1] * s))), max(1, int(round(gray.shape[0] * s))))
        # Haar never looks at colour and YuNet never at the gray copy: resize only what is used
        if isinstance(inner, HaarDetector):
            small_gray = small_bgr = self._resized(gray, size)
        else:
            small_bgr = self._resized(bgr, size)
            small_gray = small_bgr if isinstance(inner, YuNetDetector) else self._resized(gray, size)
        boxes = inner.detect(small_bgr, small_gray)
        if not len(boxes):
            return boxes
        sx, sy = gray.shape[1] / size[0], gray.shape[0] / size[1]
        out = boxes.astype(np.float64) * np.array([sx, sy, sx, sy])
        return np.round(out).astype(np.int32)

    def _rows(self, bgr: np.ndarray, p: DetectionPass) -> np.ndarray:
        """YuNet's (K, 15) rows of one pass, in frame pixels, limited to the pass's range."""
        assert isinstance(self.inner, YuNetDetector)
        w, h = p.size(bgr.shape)
        sx, sy = bgr.shape[1] / w, bgr.shape[0] / h
        out = []
        for x0, y0, x1, y1 in p.tiles(bgr.shape):
            if (x1 - x0, y1 - y0) == (w, h):
                tile = self._resized(bgr, (w, h))
            else:  # cut the tile from the frame, then shrink it: no full-size copy at this scale
                fx0, fy0 = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
                fx1, fy1 = min(bgr.shape[1], int(np.ceil(x1 * sx))), min(bgr.shape[0], int(np.ceil(y1 * sy)))
                tile = self._resized(bgr[fy0:fy1, fx0:fx1], (x1 - x0, y1 - y0))
            rows = self.inner.detect_faces(tile, self._candidates())
            if p.largest is not None and len(rows):
                rows = rows[np.maximum(rows[:, 2], rows[:, 3]) < p.largest]
            if len(rows):
                out.append(_moved(rows, x0, y0, sx, sy))
        return np.concatenate(out) if out else np.zeros((0, 15), np.float32)

    def _candidates(self) -> float | None:
        """The score threshold of the passes: the candidates' when a second look is on."""
        thr = self.inner.score_threshold  # type: ignore[union-attr]
        c = self.candidate_threshold
        return c if c is not None and c < thr else None

    def _second_look(self, bgr: np.ndarray, row: np.ndarray) -> np.ndarray | None:
        """YuNet again on a crop around a candidate, enlarged (or shrunk) until the candidate is
        ``verify_face`` px: its row there (frame pixels) if it finds the face with a score of at
        least ``confirm_threshold``, else None. Parts of the crop outside the frame are black, as
        YuNet pads."""
        x, y, w, h = (float(v) for v in row[:4])
        side = max(w, h)
        f = self.verify_face / side
        half = self.verify_context * side / 2
        cx, cy = x + w / 2, y + h / 2
        rx0, ry0 = cx - half, cy - half
        fx0, fy0 = max(0, int(np.floor(rx0))), max(0, int(np.floor(ry0)))
        fx1, fy1 = min(bgr.shape[1], int(np.ceil(cx + half))), min(bgr.shape[0], int(np.ceil(cy + half)))
        if fx1 - fx0 < 2 or fy1 - fy0 < 2:
            return None
        out_w, out_h = max(1, int(round((fx1 - fx0) * f))), max(1, int(round((fy1 - fy0) * f)))
        crop = cv2.resize(bgr[fy0:fy1, fx0:fx1], (out_w, out_h),
                          interpolation=cv2.INTER_LINEAR if f > 1 else cv2.INTER_AREA)
        full = int(round(2 * half * f))
        left, top = max(0, int(round((fx0 - rx0) * f))), max(0, int(round((fy0 - ry0) * f)))
        crop = cv2.copyMakeBorder(crop, top, max(0, full - top - out_h), left, max(0, full - left - out_w),
                                  cv2.BORDER_CONSTANT, value=0)
        rows = self.inner.detect_faces(crop, self.confirm_threshold)  # type: ignore[union-attr]
        if not len(rows):
            return None
        rows = _moved(rows, -left, -top, 1 / f, 1 / f, fx0, fy0)
        cand = square_boxes(row[None, :4].astype(np.float64))
        overlap = iou_matrix(square_boxes(rows[:, :4].astype(np.float64)), cand)[:, 0]
        best = int(np.argmax(np.where(overlap >= 0.3, rows[:, 14], -1)))
        return rows[best] if overlap[best] >= 0.3 else None

    def detect_faces(self, bgr: np.ndarray, memory: StreamMemory | None = None) -> np.ndarray:
        """YuNet's (K, 15) rows over every pass, merged, in frame pixels (YuNet only).
        ``memory``: what the stream this frame belongs to remembers of its earlier frames
        (:class:`StreamMemory`), so the same candidates are not looked at again and again."""
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        plan = self.plan(bgr.shape)
        faces = np.concatenate([self._rows(bgr, p) for p in plan])
        if self._candidates() is not None and len(faces):
            # duplicates go first (a candidate on a sure face is that face); parts-of-a-face only
            # among the boxes finally kept, so an unconfirmed large candidate cannot hide a face
            faces = merge_passes(faces, self.inner.nms_threshold, parts=False)  # type: ignore[union-attr]
            sure = faces[:, 14] >= self.inner.score_threshold  # type: ignore[union-attr]
            skip = np.zeros_like(sure)
            if memory is not None and not sure.all():
                squares = square_boxes(faces[:, :4].astype(np.float64))
                sure |= memory.follows(squares)
                skip = ~sure & memory.recently_rejected(squares)
            low = np.flatnonzero(~sure & ~skip)
            low = low[np.argsort(-faces[low, 14])][:MAX_CANDIDATES]
            looked = [(i, self._second_look(bgr, faces[i])) for i in low]
            if memory is not None:
                memory.reject(square_boxes(np.array([faces[i, :4] for i, r in looked if r is None],
                                                    np.float64).reshape(-1, 4)))
            kept = [r[None] for _, r in looked if r is not None]
            faces = np.concatenate([faces[sure]] + kept)
            return merge_passes(faces, self.inner.nms_threshold)  # type: ignore[union-attr]
        if len(plan) > 1 or any(len(p.tiles(bgr.shape)) > 1 for p in plan):
            faces = merge_passes(faces, self.inner.nms_threshold)  # type: ignore[union-attr]
        return faces

    def detect(self, bgr: np.ndarray, gray: np.ndarray, memory: StreamMemory | None = None) -> np.ndarray:
        """(K, 4) int boxes in frame pixels; ``memory`` as in :meth:`detect_faces`."""
        return self.detect_scored(bgr, gray, memory)[0]

    @property
    def scores_faces(self) -> bool:
        """Whether :meth:`detect_scored` gives YuNet's scores (the multi-pass policy), not 1.0 each."""
        return isinstance(self.inner, YuNetDetector) and bool(self.work_side)

    def detect_scored(self, bgr: np.ndarray, gray: np.ndarray,
                      memory: StreamMemory | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`detect`'s boxes and YuNet's score of each (1.0 each for a detector without
        scores): how face-like each box is, e.g. to tell which way a sideways photo is turned."""
        if not self.scores_faces:
            boxes = self._single(bgr, gray, self._effective_scale(gray.shape))
            return boxes, np.ones(len(boxes))
        faces = self.detect_faces(bgr, memory)
        if not len(faces):
            return _empty(), np.zeros(0)
        boxes = square_boxes(faces) if self.inner.square else faces[:, :4]
        return np.round(boxes).astype(np.int32), faces[:, 14].astype(np.float64)

    def time_passes(self, bgr: np.ndarray, gray: np.ndarray, repeats: int = 3) -> list[tuple[str, float]]:
        """(description, best ms of ``repeats``) of each pass on this frame, resizing included:
        what ``maintainers/benchmarks/bench_scale.py`` prints as the cost of each pass."""
        out = []
        for p in self.plan(gray.shape):
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                if isinstance(self.inner, YuNetDetector) and self.work_side:
                    self._rows(bgr, p)
                else:
                    self._single(bgr, gray, p.scale)
                best = min(best, (time.perf_counter() - t) * 1000)
            out.append((p.describe(gray.shape), best))
        if isinstance(self.inner, YuNetDetector) and self.work_side and self._candidates() is not None:
            h, w = gray.shape[:2]  # one second look at a 24 px candidate in the middle of the frame
            row = np.zeros(15, np.float32)
            row[:4] = (w / 2 - 12, h / 2 - 12, 24, 24)
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                self._second_look(bgr, row)
                best = min(best, (time.perf_counter() - t) * 1000)
            out.append(("second look, per candidate", best))
        return out


_XS, _YS = [0, 4, 6, 8, 10, 12], [1, 5, 7, 9, 11, 13]  # x and y columns of YuNet's rows


def _moved(rows: np.ndarray, dx: float, dy: float, sx: float, sy: float, ox: float = 0.0,
           oy: float = 0.0) -> np.ndarray:
    """YuNet rows of a crop -> rows of the frame: points become ``(p + d) * s + o``, sizes ``size * s``."""
    out = rows.astype(np.float32).copy()
    out[:, _XS] = (out[:, _XS] + dx) * sx + ox
    out[:, _YS] = (out[:, _YS] + dy) * sy + oy
    out[:, 2] *= sx
    out[:, 3] *= sy
    return out


def merge_passes(faces: np.ndarray, nms_threshold: float = 0.3, parts: bool = True) -> np.ndarray:
    """YuNet rows of several passes -> one row per face: non-maximum suppression on the scores
    (``cv2.dnn.NMSBoxes``, as within a pass), then boxes mostly inside a box of at least twice
    their side dropped: a fine pass sees an eye or a mouth of a face a coarse pass found whole."""
    if not len(faces):
        return faces
    boxes = faces[:, :4].astype(np.float64)
    keep = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), faces[:, 14].astype(float).tolist(), 0.0, nms_threshold),
                      np.int64).reshape(-1)
    faces, boxes = faces[keep], boxes[keep]
    if not parts:
        return faces
    side = np.maximum(boxes[:, 2], boxes[:, 3])
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    iw = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    inside = iw * ih / np.maximum(boxes[:, 2] * boxes[:, 3], 1e-9)[:, None]  # [i, j]: share of i inside j
    part = (inside >= CONTAINED) & (side[None, :] >= 2 * side[:, None])
    return faces[~part.any(axis=1)]


def make_detector(name: str | FaceDetector = DEFAULTS.detector, model_path: str | os.PathLike[str] | None = None,
                  *, scale: float = DEFAULTS.detect_scale, max_side: int | None = DEFAULTS.max_detect_side,
                  work_side: int | None = DEFAULTS.detect_side, min_face: int | None = DEFAULTS.min_face,
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
    return ScaledDetector(inner, scale=scale, max_side=max_side, work_side=work_side, min_face=min_face)
