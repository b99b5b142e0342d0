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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FerlabError
from ..probabilities import softmax, temper
from .backends import Backend, OnnxBackend, make_backend
from .detector import FaceDetector, ScaledDetector, StreamMemory, make_detector
from .model_info import ModelInfo
from .options import InferenceOptions, split_options
from .preprocess import (clip_boxes, crop_faces, faces_to_input, load_image, make_batch, to_bgr, to_gray, turn_image,
                         unturn_boxes)
from .results import Face, FrameResult
from .smoothing import make_smoother
from .stream import FrameFilter, Sink, Stream
from .tracker import IouTracker, face_descriptor


@dataclass(frozen=True)
class Calibration:
    """A model's temperature T and ``uncertain`` threshold, both fitted on PublicTest by
    :func:`ferlab.research.evaluation.run.calibrate` and kept in the shipped sidecar (``calibration``).

    A face's uncertainty is 1 - max softmax(z / T) of the distribution shown for it: the raw
    per-frame probabilities for a photo (exactly what was fitted), the smoothed window for a
    tracked face (the temperature applied to the window's mean, a close approximation; the
    window itself is over raw probabilities, as Eq. 26 defines it). The face is ``uncertain``
    when that reaches the threshold; its label and whole distribution are still reported.
    """

    temperature: float
    threshold: float

    @classmethod
    def from_meta(cls, meta: dict[str, Any], tta: str = "none") -> Calibration | None:
        """The sidecar's ``calibration``; with flip TTA its ``calibration_tta`` (fitted on the
        averaged distributions, which are less peaked), falling back to ``calibration``."""
        cal = meta.get("calibration_tta") if tta == "flip" else None
        cal = cal if isinstance(cal, dict) else meta.get("calibration")
        if not isinstance(cal, dict):
            return None
        try:
            t, thr = float(cal["temperature"]), float(cal["threshold"])
        except (KeyError, TypeError, ValueError):
            return None
        return cls(t, thr) if t > 0 else None

    def judge(self, face: Face) -> Face:
        u = 1.0 - float(temper(face.display_probs[None], self.temperature).max())
        face.uncertainty, face.uncertain = u, bool(u >= self.threshold)
        return face


UPRIGHT_SURE = 0.9
"""A photo whose clearest face YuNet scores this high is upright (``rotate="auto"``): frontal
upright faces score 0.9-0.95, the same faces seen sideways at most 0.87 and upside down up to
0.9 (``maintainers/benchmarks/bench_orientation.py``). About one upright photo in ten, its faces
small, blurred or in profile, scores lower and is also looked at turned."""
TURN_SURE = 0.87
"""The least score of a turned photo's clearest face for the turn to be taken: a face-free photo
turned shows YuNet a few face-like shapes (0.6-0.84 on the scale benchmark's backgrounds), while
98% of upright LFW-style faces score at least this."""
TURN_MARGIN = 0.02  # ... and it must score this much higher than the clearest face upright


class Recognizer:
    """Detect and classify faces. Build with :meth:`from_pretrained`.

    ``options`` (:class:`~ferlab.inference.options.InferenceOptions`) are what it was built
    with; their ``stream`` part (smoothing, window, ema_alpha, detect_every, iou_threshold,
    max_missed, confirm, appearance_threshold, scene_cut) are the defaults of :meth:`session`. ``info``
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
        self.calibration = Calibration.from_meta(self.info.meta, self.options.tta)

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike[str] | None = None, *,
                        options: InferenceOptions | None = None, **kwargs: Any) -> Recognizer:
        """Shipped model name, checkpoint (``.safetensors``/run folder) or an exported
        ``.onnx`` file; ``None`` = the default shipped model (:func:`ferlab.models.hub.resolve_model`).

        Keyword arguments are the fields of :class:`~ferlab.inference.options.InferenceOptions`
        (``backend``, ``device``, ``threads``, ``detector``, ``detector_model``, ``detect_threshold``,
        ``detect_side``, ``min_face``, ``detect_scale``, ``max_detect_side``, ``smoothing``, ``window``, ``ema_alpha``,
        ``detect_every``, ``iou_threshold``, ``max_missed``, ``confirm``, ``appearance_threshold``,
        ``scene_cut``; ``model`` instead of the first
        argument), on top of ``options`` when given, so ``from_pretrained(**opts)`` works.
        """
        split_options(kwargs, what="Recognizer option")
        opts = (options or InferenceOptions()).replace(**kwargs)
        if path_or_name is not None:
            if opts.model is not None and str(opts.model) != str(path_or_name):
                raise FerlabError(f"two models given: {path_or_name} and model={opts.model}")
            opts = opts.replace(model=path_or_name)
        # YuNet's ONNX Runtime session gets the same thread budget as the classifier: without it,
        # each ``ferlab batch`` worker's detector spread over every core and the workers fought.
        yunet = {"score_threshold": opts.detect_threshold, "threads": opts.threads}
        det = make_detector(opts.detector, opts.detector_model, scale=opts.detect_scale, max_side=opts.max_detect_side,
                            work_side=opts.detect_side, min_face=opts.min_face,
                            **(yunet if opts.detector == "yunet" else {}))
        spec = opts.model
        if spec is not None and str(spec).lower().endswith(".onnx"):
            if opts.backend == "torch":
                raise FerlabError(f"{spec} is an ONNX file: use backend onnx or auto")
            onnx = OnnxBackend(Path(spec), threads=opts.threads)
            return cls._with_info(onnx, det, ModelInfo.from_meta(spec, onnx.metadata, "onnx"), spec, opts)
        from ..models.hub import resolve_model

        weights = resolve_model(spec)
        if weights.suffix == ".onnx" and opts.backend in ("auto", "onnx") and str(opts.device).startswith("cpu"):
            # a model in the box is its ONNX file + sidecar: no PyTorch needed (core install)
            return cls._with_info(OnnxBackend(weights, threads=opts.threads), det, ModelInfo.read(weights), weights, opts)
        from ..research.nets.checkpoint import load_checkpoint

        ckpt = load_checkpoint(weights)
        be = make_backend(opts.backend, ckpt, weights, device=opts.device, threads=opts.threads)
        info = ModelInfo.from_meta(weights, ckpt.meta, "safetensors")
        return cls(be, det, class_names=ckpt.class_names, mean=ckpt.mean, std=ckpt.std,
                   source=str(weights), info=info, options=opts)

    @classmethod
    def _with_info(cls, backend: Backend, detector: FaceDetector, info: ModelInfo, source: Any,
                   opts: InferenceOptions) -> Recognizer:
        return cls(backend, detector, class_names=info.class_names, mean=info.mean, std=info.std,
                   source=str(source), info=info, options=opts)

    # -- stateless steps -------------------------------------------------------------------
    def detect(self, bgr: np.ndarray, gray: np.ndarray, memory: StreamMemory | None = None) -> np.ndarray:
        """Face boxes of one frame, clipped to it. ``memory``: what the frame's stream saw
        before (:class:`~ferlab.inference.detector.StreamMemory`; the default policy uses it)."""
        if memory is not None and isinstance(self.detector, ScaledDetector):
            boxes = self.detector.detect(bgr, gray, memory)
        else:
            boxes = self.detector.detect(bgr, gray)
        return clip_boxes(boxes, gray.shape[1], gray.shape[0])

    def classify(self, gray: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Probabilities (K, C) for K boxes of one frame, in one batch."""
        if not len(boxes):
            return np.zeros((0, len(self.class_names)))
        return self._probs(make_batch(gray, boxes, self.mean, self.std))

    def classify_crops(self, faces_u8: np.ndarray) -> np.ndarray:
        """Probabilities (K, C) for K already-cropped (K, 48, 48) uint8 faces, in one batch."""
        if not len(faces_u8):
            return np.zeros((0, len(self.class_names)))
        return self._probs(faces_to_input(faces_u8, self.mean, self.std))

    def _probs(self, batch: np.ndarray) -> np.ndarray:
        """Softmax of the backend's logits; with ``tta="flip"`` the faces and their mirror
        images go in one batch and the two softmaxes are averaged, as ``ferlab evaluate --tta
        flip`` does (:func:`ferlab.research.evaluation.predict.probs_from_logits`)."""
        if self.options.tta != "flip":
            return softmax(self.backend(batch))
        logits = self.backend(np.concatenate([batch, batch[..., ::-1]]))
        return softmax(logits.reshape(2, len(batch), -1))

    def predict(self, image: np.ndarray | str | os.PathLike[str]) -> list[Face]:
        """Faces of one photo (path or array: BGR, gray, BGRA, 16-bit or float), left to right.
        No tracking or smoothing: ``track_id`` and ``smoothed`` are None."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        bgr = to_bgr(image)
        gray = to_gray(bgr)
        degrees, gray, boxes = self._find_faces(bgr, gray)
        probs = self.classify(gray, boxes)  # each face read upright, in the turned photo
        height, width = image.shape[:2]
        boxes = unturn_boxes(boxes, degrees, width, height)
        order = np.lexsort((boxes[:, 1], boxes[:, 0])) if len(boxes) else np.zeros(0, np.int64)
        return [self._judged(Face(tuple(int(v) for v in boxes[i]), probs[i], self.class_names,  # type: ignore[arg-type]
                                  rotation=degrees))
                for i in order]

    def _find_faces(self, bgr: np.ndarray, gray: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """(degrees, gray, boxes): the photo's faces, and which way up it is. ``gray`` and
        ``boxes`` are those of the photo turned by ``degrees`` clockwise.

        A photo whose clearest face YuNet scores at least ``UPRIGHT_SURE`` is upright: nothing
        more is done (most photos). Otherwise, with ``rotate="auto"``, the photo is also looked
        at turned a quarter turn each way and upside down, and the turn whose clearest face
        scores highest wins, if that face scores at least ``TURN_SURE`` and beats upright by
        ``TURN_MARGIN``: a sideways photo whose EXIF tag is missing, or one upside down (YuNet
        finds upside-down faces too, at lower scores, and a face read upside down gets the wrong
        expression).
        """
        boxes, best = self._detect_scored(bgr, gray)
        scored = isinstance(self.detector, ScaledDetector) and self.detector.scores_faces
        if best >= UPRIGHT_SURE or self.options.rotate == "none" or not scored:
            return 0, gray, boxes  # a detector without scores (the thesis's cascade) cannot tell
        choice = (best + TURN_MARGIN, 0, gray, boxes)
        for degrees in (90, 270, 180):
            g = turn_image(gray, degrees)
            found, score = self._detect_scored(turn_image(bgr, degrees), g)
            if score > choice[0] and score >= TURN_SURE:
                choice = (score, degrees, g, found)
        return choice[1], choice[2], choice[3]

    def _detect_scored(self, bgr: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, float]:
        """Boxes of one photo and the score of its clearest face (0 for none; 1 for a detector
        without scores, which is then trusted upright)."""
        if isinstance(self.detector, ScaledDetector):
            boxes, scores = self.detector.detect_scored(bgr, gray)
            return clip_boxes(boxes, gray.shape[1], gray.shape[0]), float(scores.max()) if len(scores) else 0.0
        boxes = self.detect(bgr, gray)
        return boxes, float(len(boxes) > 0)

    def _judged(self, face: Face) -> Face:
        return face if self.calibration is None else self.calibration.judge(face)

    # -- streams ---------------------------------------------------------------------------
    def session(self, **overrides: Any) -> Session:
        split_options(overrides, "stream", what="session option")
        return Session(self, options=self.options.replace(**overrides))

    def stream(self, source: Any, *, max_frames: int | None = None, sinks: Iterable[Sink] = (),
               frame_filter: FrameFilter | None = None, allow_empty: bool = True, read_ahead: int = 4,
               batch_frames: int = 1, **overrides: Any) -> Stream:
        """Per-frame results for anything ``cv2.VideoCapture`` opens (file, camera index, RTSP),
        in a new session. Iterate it, or ``.run()`` it for a summary; ``sinks``
        (:mod:`ferlab.inference.sinks`) receive every frame. Frames are read one at a time,
        so memory does not grow with the length; ``batch_frames`` > 1 classifies the faces of
        that many frames in one call (:meth:`Session.process_many`), for GPUs."""
        return Stream(self.session(**overrides), source, sinks=sinks, frame_filter=frame_filter,
                      max_frames=max_frames, class_names=self.class_names, allow_empty=allow_empty,
                      read_ahead=read_ahead, batch_frames=batch_frames)


class SceneCutDetector:
    """A cut from frame statistics: the mean absolute grey-level change between 32x18
    thumbnails of consecutive frames. Within a shot (camera moves, people gesture) it stays
    under 13 on the bundled clip; its three hard cuts give 26-30. A change of frame size
    (a browser client switching camera) counts as a cut too."""

    SIZE = (32, 18)

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def __call__(self, gray: np.ndarray) -> bool:
        if self.threshold <= 0:
            return False
        import cv2

        thumb = cv2.resize(gray, self.SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
        prev, self._prev = self._prev, (thumb, gray.shape)  # type: ignore[assignment]
        if prev is None:
            return False
        if prev[1] != gray.shape:  # type: ignore[index]
            return True
        return float(np.abs(thumb - prev[0]).mean()) > self.threshold  # type: ignore[index]


@dataclass
class _Tracked:
    """One frame after detection and tracking, before its faces are classified and smoothed."""

    index: int
    timestamp: float
    detected: bool
    boxes: np.ndarray
    tracks: list[Any]
    ids: list[int | None]
    crops: np.ndarray
    forget: list[int]


class Session:
    """Per-stream state: tracker, smoother, scene-cut detector, frame counter. Not shared
    between streams.

    ``options``: an :class:`~ferlab.inference.options.InferenceOptions` (its stream part is
    used); keyword overrides on top (``Session(rec, window=4)``).

    A new face is shown (and gets an id) once the tracker confirmed it (``confirm``
    detections); its probabilities from before that still enter its smoothing window, which
    counts frames (Eq. 26), so after a gap the window holds only what is recent.
    """

    def __init__(self, recognizer: Recognizer, options: InferenceOptions | None = None, **overrides: Any) -> None:
        split_options(overrides, "stream", what="session option")
        opts = (options or InferenceOptions()).replace(**overrides)
        self.recognizer = recognizer
        self.options = opts
        self.smoother = make_smoother(opts.smoothing, opts.window, opts.ema_alpha)
        # missed counts detection rounds, so scale it to keep the same wall-clock grace period
        self.tracker = IouTracker(iou_threshold=opts.iou_threshold,
                                  max_missed=max(1, opts.max_missed // opts.detect_every),
                                  confirm=opts.confirm, appearance_threshold=opts.appearance_threshold)
        self.cuts = SceneCutDetector(opts.scene_cut)
        self.memory = StreamMemory()
        self.detect_every = opts.detect_every
        self.frame_index = 0
        self._since_detect = 0
        self._t0: float | None = None

    def reset(self) -> None:
        self.tracker.reset()
        self.memory.reset()
        self.smoother.reset()
        self.cuts.reset()
        self.frame_index = 0
        self._since_detect = 0
        self._t0 = None

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        """Detect (every ``detect_every`` frames and after a scene cut; in between the last
        boxes are re-used), classify all faces in one batch, update tracks and per-track
        smoothing. ``timestamp``: seconds from stream start; default = wall-clock since the
        first call."""
        tracked = self._track(frame, timestamp)
        return self._judge(tracked, self.recognizer.classify_crops(tracked.crops))

    def process_many(self, frames: Sequence[tuple[np.ndarray, float | None]]) -> list[FrameResult]:
        """:meth:`process` for several consecutive frames, with the faces of all of them
        classified in **one** network call. Detection and tracking never depend on the
        emotions, so each frame is detected and tracked first and smoothed after, in order:
        the results are those of calling :meth:`process` frame by frame (to the backend's
        float rounding for another batch size). On a GPU one large batch instead of one small
        batch per frame is what keeps it busy (``ferlab batch --batch-frames``)."""
        tracked = [self._track(frame, t) for frame, t in frames]
        crops = [t.crops for t in tracked]
        probs = self.recognizer.classify_crops(np.concatenate(crops)) if crops else np.zeros((0, 0))
        out, start = [], 0
        for t in tracked:
            out.append(self._judge(t, probs[start:start + len(t.crops)]))
            start += len(t.crops)
        return out

    def _track(self, frame: np.ndarray, timestamp: float | None) -> _Tracked:
        """Scene cut, detection (or the held boxes) and the tracker's update for one frame."""
        rec = self.recognizer
        if timestamp is None:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
            timestamp = now - self._t0
        bgr = to_bgr(frame)
        gray = to_gray(bgr)
        forget: list[int] = []  # applied by _judge, in frame order, before this frame's faces
        if self.cuts(gray):
            forget += self.tracker.end_all()
            self.memory.reset()
            self._since_detect = 0
        detect_now = self._since_detect % self.detect_every == 0
        self._since_detect += 1
        if detect_now:
            self.memory.next_round(np.array([t.box for t in self.tracker.visible], np.float64), float(timestamp))
            boxes = rec.detect(bgr, gray, self.memory)
            crops = crop_faces(gray, boxes)
            descriptors = [face_descriptor(c) for c in crops] if self.tracker.appearance_threshold > 0 else None
            ids, expired = self.tracker.update(boxes, descriptors)
            forget += expired
            tracks = list(self.tracker.last_tracks)
        else:
            tracks, kept = [], []
            for track in self.tracker.visible:  # held boxes; a client may change frame size
                clipped = clip_boxes(np.round(track.box), gray.shape[1], gray.shape[0])
                if len(clipped):
                    tracks.append(track)
                    kept.append(clipped[0])
            boxes = np.array(kept, np.int32).reshape(-1, 4)
            crops = crop_faces(gray, boxes)
        index = self.frame_index
        self.frame_index += 1
        # a track's id as of this frame (None = tentative): a later frame may confirm it
        return _Tracked(index, float(timestamp), detect_now, boxes, tracks, [t.id for t in tracks], crops, forget)

    def _judge(self, tracked: _Tracked, probs: np.ndarray) -> FrameResult:
        """The frame's shown faces: per-track smoothing of ``probs`` (one row per crop)."""
        rec = self.recognizer
        for tid in tracked.forget:
            self.smoother.forget(tid)
        faces: list[Face] = []
        for box, track, tid, p in zip(tracked.boxes, tracked.tracks, tracked.ids, probs):
            if tid is None:  # tentative: remembered, not shown
                track.pending.append((tracked.index, p))
                continue
            for f, q in track.pending:  # confirmed now: its earlier frames enter the window
                self.smoother.update(tid, q, frame=f)
            track.pending.clear()
            smoothed = self.smoother.update(tid, p, frame=tracked.index)
            faces.append(rec._judged(Face(tuple(int(v) for v in box), p, rec.class_names,  # type: ignore[arg-type]
                                          track_id=int(tid), smoothed=smoothed)))
        return FrameResult(tracked.index, tracked.timestamp, faces, detected=tracked.detected)
