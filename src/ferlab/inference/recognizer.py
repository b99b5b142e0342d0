"""The public inference API: detect -> crop/normalise (Eq. 27) -> classify -> track -> smooth.

``Recognizer`` holds what is shared and stateless (model backend, detector, class names,
normalisation); ``Session`` holds what belongs to one stream (tracker, smoother, frame
counter). The web server keeps one Recognizer and one Session per websocket client, so
clients never see each other's tracks or smoothing state.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FerlabError
from .backends import Backend, OnnxBackend, make_backend, softmax
from .detector import FaceDetector, make_detector
from .preprocess import clip_boxes, load_image, make_batch, to_bgr, to_gray
from .results import Face, FrameResult
from .smoothing import make_smoother
from .tracker import IouTracker

_SESSION_KEYS = {"smoothing", "window", "ema_alpha", "detect_every", "iou_threshold", "max_missed"}


class Recognizer:
    """Detect and classify faces. Build with :meth:`from_pretrained`.

    Options (all keyword): ``smoothing`` (window|ema|none|shared), ``window`` (N of Eq. 26),
    ``ema_alpha``, ``detect_every`` (run the detector every k-th frame, track in between),
    ``iou_threshold``/``max_missed`` (tracker). They are defaults for :meth:`session`.
    """

    def __init__(self, backend: Backend, detector: FaceDetector, *, class_names: list[str],
                 mean: float, std: float, smoothing: str = "window", window: int = 10,
                 ema_alpha: float | None = None, detect_every: int = 1, iou_threshold: float = 0.3,
                 max_missed: int = 15, source: str | None = None) -> None:
        self.backend = backend
        self.detector = detector
        self.class_names = list(class_names)
        self.mean = float(mean)
        self.std = float(std)
        self.source = source
        self.options: dict[str, Any] = dict(smoothing=smoothing, window=int(window), ema_alpha=ema_alpha,
                                            detect_every=int(detect_every), iou_threshold=float(iou_threshold),
                                            max_missed=int(max_missed))
        make_smoother(smoothing, int(window), ema_alpha)  # validate now, not on the first frame
        if int(detect_every) < 1:
            raise FerlabError(f"detect_every must be >= 1, got {detect_every}")

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike[str] | None = None, *, backend: str = "auto",
                        detector: str | FaceDetector = "haar", detector_model: str | os.PathLike[str] | None = None,
                        detect_scale: float = 1.0, max_detect_side: int | None = 1920, device: str = "cpu",
                        threads: int | None = None, **options: Any) -> Recognizer:
        """Shipped model name, checkpoint (``.safetensors``/run folder) or an exported
        ``.onnx`` file; ``None`` = the default shipped model (:func:`ferlab.hub.resolve_model`)."""
        unknown = set(options) - _SESSION_KEYS
        if unknown:
            raise FerlabError(f"unknown Recognizer option(s): {', '.join(sorted(unknown))}")
        det = make_detector(detector, detector_model, scale=detect_scale, max_side=max_detect_side)
        if path_or_name is not None and str(path_or_name).lower().endswith(".onnx"):
            if backend == "torch":
                raise FerlabError(f"{path_or_name} is an ONNX file: use backend onnx or auto")
            onnx = OnnxBackend(Path(path_or_name), threads=threads)
            meta = onnx.metadata
            return cls(onnx, det, class_names=meta["class_names"], mean=meta["mean"], std=meta["std"],
                       source=str(path_or_name), **options)
        from ..models.hub import resolve_model
        from ..models.checkpoint import load_checkpoint

        weights = resolve_model(path_or_name)
        ckpt = load_checkpoint(weights)
        be = make_backend(backend, ckpt, weights, device=device, threads=threads)
        return cls(be, det, class_names=ckpt.class_names, mean=ckpt.mean, std=ckpt.std,
                   source=str(weights), **options)

    # -- stateless steps -------------------------------------------------------------------
    def detect(self, bgr: np.ndarray, gray: np.ndarray) -> np.ndarray:
        boxes = self.detector.detect(bgr, gray)
        return clip_boxes(boxes, gray.shape[1], gray.shape[0])

    def classify(self, gray: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Probabilities (K, C) for K boxes of one frame, in one batch."""
        if not len(boxes):
            return np.zeros((0, len(self.class_names)))
        logits = self.backend(make_batch(gray, boxes, self.mean, self.std))
        return softmax(logits)

    def predict(self, image: np.ndarray | str | os.PathLike[str]) -> list[Face]:
        """Faces of one photo (path or array: BGR, gray, BGRA, 16-bit or float), left to right.
        No tracking or smoothing: ``track_id`` and ``smoothed`` are None."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        bgr = to_bgr(image)
        gray = to_gray(bgr)
        boxes = self.detect(bgr, gray)
        if len(boxes):
            boxes = boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]
        probs = self.classify(gray, boxes)
        return [Face(tuple(int(v) for v in b), p, self.class_names) for b, p in zip(boxes, probs)]  # type: ignore[arg-type]

    # -- streams ---------------------------------------------------------------------------
    def session(self, **overrides: Any) -> Session:
        unknown = set(overrides) - _SESSION_KEYS
        if unknown:
            raise FerlabError(f"unknown session option(s): {', '.join(sorted(unknown))}")
        return Session(self, **{**self.options, **overrides})

    def stream(self, source: str | int | os.PathLike[str], *, max_frames: int | None = None,
               **overrides: Any) -> Iterator[FrameResult]:
        """Per-frame results for anything ``cv2.VideoCapture`` opens (file, camera index, RTSP).
        Frames are read one at a time, so memory does not grow with the length."""
        from .video import iter_frames, open_capture

        sess = self.session(**overrides)
        cap, info = open_capture(source)
        try:
            for index, t, frame in iter_frames(cap, info, max_frames=max_frames):
                yield sess.process(frame, t)
        finally:
            cap.release()


class Session:
    """Per-stream state: tracker, smoother, frame counter. Not shared between streams."""

    def __init__(self, recognizer: Recognizer, *, smoothing: str = "window", window: int = 10,
                 ema_alpha: float | None = None, detect_every: int = 1, iou_threshold: float = 0.3,
                 max_missed: int = 15) -> None:
        self.recognizer = recognizer
        self.smoothing = smoothing
        self.smoother = make_smoother(smoothing, window, ema_alpha)
        # missed counts detection rounds, so scale it to keep the same wall-clock grace period
        self.tracker = IouTracker(iou_threshold=iou_threshold, max_missed=max(1, max_missed // detect_every))
        self.detect_every = int(detect_every)
        self.frame_index = 0
        self._t0: float | None = None

    def reset(self) -> None:
        self.tracker.reset()
        self.smoother.reset()
        self.frame_index = 0
        self._t0 = None

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        """Detect (every ``detect_every`` frames; in between the last boxes are re-used),
        classify all faces in one batch, update tracks and per-track smoothing.
        ``timestamp``: seconds from stream start; default = wall-clock since the first call."""
        rec = self.recognizer
        if timestamp is None:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
            timestamp = now - self._t0
        bgr = to_bgr(frame)
        gray = to_gray(bgr)
        detect_now = self.frame_index % self.detect_every == 0
        if detect_now:
            boxes = rec.detect(bgr, gray)
            ids, expired = self.tracker.update(boxes)
            for tid in expired:
                self.smoother.forget(tid)
        else:
            ids, kept = [], []
            for track in self.tracker.visible:  # held boxes; a client may change frame size
                clipped = clip_boxes(np.round(track.box), gray.shape[1], gray.shape[0])
                if len(clipped):
                    ids.append(track.id)
                    kept.append(clipped[0])
            boxes = np.array(kept, np.int32).reshape(-1, 4)
        probs = rec.classify(gray, boxes)
        faces: list[Face] = []
        for box, tid, p in zip(boxes, ids, probs):
            smoothed = self.smoother.update(tid, p)
            faces.append(Face(tuple(int(v) for v in box), p, rec.class_names,  # type: ignore[arg-type]
                              track_id=int(tid), smoothed=smoothed))
        result = FrameResult(self.frame_index, float(timestamp), faces, detected=detect_now)
        self.frame_index += 1
        return result
