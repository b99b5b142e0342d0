"""The public inference API: detect -> crop/normalise (Eq. 27) -> classify -> track -> smooth.

``Recognizer`` holds what is shared and stateless (model backend, detector, class names,
normalisation, what the model is); ``Session`` holds what belongs to one stream (tracker,
smoother, frame counter). The web server keeps one Recognizer and one Session per websocket
client, so clients never see each other's tracks or smoothing state. Options and their
defaults are declared once, in :mod:`ferlab.inference.options`.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FerlabError
from ..preprocessing import make_batch
from .backends import Backend, OnnxBackend, make_backend, softmax
from .detector import FaceDetector, make_detector
from .model_info import ModelInfo
from .options import InferenceOptions, split_options
from .preprocess import clip_boxes, load_image, to_bgr, to_gray
from .results import Face, FrameResult
from .smoothing import make_smoother
from .stream import FrameFilter, Sink, Stream
from .tracker import IouTracker


class Recognizer:
    """Detect and classify faces. Build with :meth:`from_pretrained`.

    ``options`` (:class:`~ferlab.inference.options.InferenceOptions`) are what it was built
    with; their ``stream`` part (smoothing, window, ema_alpha, detect_every, iou_threshold,
    max_missed) are the defaults of :meth:`session`. ``info``
    (:class:`~ferlab.inference.model_info.ModelInfo`) says what the model is.
    """

    def __init__(self, backend: Backend, detector: FaceDetector, *, class_names: list[str],
                 mean: float, std: float, source: str | None = None, info: ModelInfo | None = None,
                 options: InferenceOptions | None = None, **stream_options: Any) -> None:
        split_options(stream_options, "stream", what="Recognizer option")
        self.backend = backend
        self.detector = detector
        self.class_names = list(class_names)
        self.mean = float(mean)
        self.std = float(std)
        self.source = source
        self.options = (options or InferenceOptions()).replace(**stream_options)
        self.info = info or ModelInfo.from_meta(source, {"class_names": self.class_names, "mean": self.mean,
                                                         "std": self.std}, "?")

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike[str] | None = None, *,
                        options: InferenceOptions | None = None, **kwargs: Any) -> Recognizer:
        """Shipped model name, checkpoint (``.safetensors``/run folder) or an exported
        ``.onnx`` file; ``None`` = the default shipped model (:func:`ferlab.models.hub.resolve_model`).

        Keyword arguments are the fields of :class:`~ferlab.inference.options.InferenceOptions`
        (``backend``, ``device``, ``threads``, ``detector``, ``detector_model``,
        ``detect_scale``, ``max_detect_side``, ``smoothing``, ``window``, ``ema_alpha``,
        ``detect_every``, ``iou_threshold``, ``max_missed``; ``model`` instead of the first
        argument), on top of ``options`` when given, so ``from_pretrained(**opts)`` works.
        """
        split_options(kwargs, what="Recognizer option")
        opts = (options or InferenceOptions()).replace(**kwargs)
        if path_or_name is not None:
            if opts.model is not None and str(opts.model) != str(path_or_name):
                raise FerlabError(f"two models given: {path_or_name} and model={opts.model}")
            opts = opts.replace(model=path_or_name)
        det = make_detector(opts.detector, opts.detector_model, scale=opts.detect_scale, max_side=opts.max_detect_side)
        spec = opts.model
        if spec is not None and str(spec).lower().endswith(".onnx"):
            if opts.backend == "torch":
                raise FerlabError(f"{spec} is an ONNX file: use backend onnx or auto")
            onnx = OnnxBackend(Path(spec), threads=opts.threads)
            info = ModelInfo.from_meta(spec, onnx.metadata, "onnx")
            return cls(onnx, det, class_names=info.class_names, mean=info.mean, std=info.std,
                       source=str(spec), info=info, options=opts)
        from ..models.checkpoint import load_checkpoint
        from ..models.hub import resolve_model

        weights = resolve_model(spec)
        ckpt = load_checkpoint(weights)
        be = make_backend(opts.backend, ckpt, weights, device=opts.device, threads=opts.threads)
        info = ModelInfo.from_meta(weights, ckpt.meta, "safetensors")
        return cls(be, det, class_names=ckpt.class_names, mean=ckpt.mean, std=ckpt.std,
                   source=str(weights), info=info, options=opts)

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
        split_options(overrides, "stream", what="session option")
        return Session(self, options=self.options.replace(**overrides))

    def stream(self, source: Any, *, max_frames: int | None = None, sinks: Iterable[Sink] = (),
               frame_filter: FrameFilter | None = None, allow_empty: bool = True, **overrides: Any) -> Stream:
        """Per-frame results for anything ``cv2.VideoCapture`` opens (file, camera index, RTSP),
        in a new session. Iterate it, or ``.run()`` it for a summary; ``sinks``
        (:mod:`ferlab.inference.sinks`) receive every frame. Frames are read one at a time,
        so memory does not grow with the length."""
        return Stream(self.session(**overrides), source, sinks=sinks, frame_filter=frame_filter,
                      max_frames=max_frames, class_names=self.class_names, allow_empty=allow_empty)


class Session:
    """Per-stream state: tracker, smoother, frame counter. Not shared between streams.

    ``options``: an :class:`~ferlab.inference.options.InferenceOptions` (its stream part is
    used); keyword overrides on top (``Session(rec, window=4)``).
    """

    def __init__(self, recognizer: Recognizer, options: InferenceOptions | None = None, **overrides: Any) -> None:
        split_options(overrides, "stream", what="session option")
        opts = (options or InferenceOptions()).replace(**overrides)
        self.recognizer = recognizer
        self.options = opts
        self.smoothing = opts.smoothing
        self.smoother = make_smoother(opts.smoothing, opts.window, opts.ema_alpha)
        # missed counts detection rounds, so scale it to keep the same wall-clock grace period
        self.tracker = IouTracker(iou_threshold=opts.iou_threshold,
                                  max_missed=max(1, opts.max_missed // opts.detect_every))
        self.detect_every = opts.detect_every
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
