"""The bridge between the async web server and the blocking recognizer.

Inference (OpenCV + ONNX Runtime/PyTorch) blocks for tens of milliseconds, so it never runs
on the event loop: it goes to a small thread pool, and videos to a pool of their own so one
long video cannot take the threads live clients need. The face detector is locked by the
detector itself, but the recognizer as a whole is not documented as thread-safe (PyTorch
modules and the per-session trackers were not written for concurrent calls), so every call
into it holds one lock. Serialising the model costs little on a CPU, where concurrent calls
would compete for the same cores anyway; decoding JPEGs, the other big cost, still runs in
parallel outside the lock.

Video analysis is the inference package's one frame loop (:class:`~ferlab.inference.stream.Stream`)
with a frame filter that samples and enforces the limits, and a sink that collects the records.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import FerlabError
from .limits import Limits
from .uploads import Upload, UploadError, decode_image

T = TypeVar("T")


class PixelBudget:
    """Decoded pixels held at once by the pool threads, at most ``capacity``: a thread that
    would go over waits for the others to finish. Two workers decoding 50 Mpx images each
    hold ~2 x 150 MB plus detection copies; with the budget set to the one-image limit, big
    images are decoded one at a time while ordinary photos (a few Mpx) still run side by side."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(int(pixels), self.capacity)
        with self._cond:
            self._cond.wait_for(lambda: self.used + pixels <= self.capacity)
            self.used += pixels
        try:
            yield
        finally:
            with self._cond:
                self.used -= pixels
                self._cond.notify_all()


class InferencePool:
    """One recognizer, its lock, the pools and the live counters the limits are checked on."""

    def __init__(self, recognizer: Any, limits: Limits) -> None:
        self.recognizer = recognizer
        self.limits = limits
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="ferlab-infer")
        self.video_pool = ThreadPoolExecutor(limits.max_video_jobs, thread_name_prefix="ferlab-video")
        # Only touched from the event loop thread, so plain ints are race-free.
        self.clients = 0
        self.pending = 0
        self.video_jobs = 0
        self.uploads: dict[str, int] = {}  # client address -> bodies being read
        self.started = time.monotonic()
        self.pixels = PixelBudget(limits.max_image_pixels)

    @contextlib.contextmanager
    def upload_slot(self, client: str) -> Iterator[None]:
        """One body being read from ``client``; over the per-client cap 429, over the server's 503."""
        lim = self.limits
        if self.uploads.get(client, 0) >= lim.max_uploads_per_client:
            raise UploadError(429, f"too many uploads in progress from your address ({lim.max_uploads_per_client}); "
                                   "wait for one to finish")
        if sum(self.uploads.values()) >= lim.max_uploads:
            raise UploadError(503, "server busy: too many uploads in progress, retry in a moment")
        self.uploads[client] = self.uploads.get(client, 0) + 1
        try:
            yield
        finally:
            self.uploads[client] -= 1
            if not self.uploads[client]:
                del self.uploads[client]

    @property
    def class_names(self) -> list[str]:
        return list(self.recognizer.class_names)

    async def call(self, fn: Callable[..., T], *args: Any, video: bool = False) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.video_pool if video else self.pool, fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.video_pool.shutdown(wait=False, cancel_futures=True)

    # -- blocking work, run in the pools ---------------------------------------------------
    def predict(self, upload: Upload, annotate: bool = False) -> dict[str, Any] | bytes:
        """One uploaded photo: its record (``width``, ``height``, ``faces`` and the ``layout``
        the page draws them by), or with ``annotate`` the annotated JPEG. The decoded image
        lives only inside this call, which holds its pixels in the budget."""
        with self.pixels.hold(self._declared_pixels(upload)):
            image = decode_image(upload, self.limits.max_image_pixels)
            with self._lock:
                faces = self.recognizer.predict(image)
            if annotate:
                return annotated_jpeg(image, faces)
            from ..inference.overlay import layout_json

            return {"width": int(image.shape[1]), "height": int(image.shape[0]),
                    "faces": [f.to_dict() for f in faces], "layout": layout_json(image.shape, faces)}

    def _declared_pixels(self, upload: Upload) -> int:
        from ..errors import FerlabError
        from ..inference.preprocess import header_pixels

        try:
            return header_pixels(upload.data)[0]
        except (FerlabError, OSError):
            return 0  # decode_image refuses it, with its own message

    def new_session(self) -> Any:
        with self._lock:
            return self.recognizer.session()

    def live_step(self, session: Any, data: bytes, timestamp: float) -> dict[str, Any]:
        """Decode one browser frame and run it through the client's session."""
        upload = Upload(data, "image/jpeg")
        with self.pixels.hold(self._declared_pixels(upload)):
            image = decode_image(upload, self.limits.max_image_pixels)
            t0 = time.perf_counter()
            with self._lock:
                result = session.process(image, timestamp)
            out = page_record(image, result)
            out["width"], out["height"] = int(image.shape[1]), int(image.shape[0])
            del image
        out["server_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    def analyse_video(self, path: Path, sample_fps: float | None, cancel: threading.Event) -> dict[str, Any]:
        """Per-frame records for a video file, sampled at ``sample_fps`` and bounded by the
        limits; ``stopped`` names the limit that cut it short (None = whole video)."""
        from ..inference.capture import DEFAULT_FPS, Capture
        from ..inference.sinks import RecordsSink
        from ..inference.stream import Stream

        lim = self.limits
        try:
            capture = Capture.open(path)
        except FerlabError:
            raise UploadError(422, "could not open the video (corrupt, truncated or a codec "
                                   "OpenCV cannot read)") from None
        info = capture.info
        if info.width * info.height > lim.max_image_pixels:
            capture.release()
            raise UploadError(413, f"video of {info.width}x{info.height} pixels refused "
                                   f"(limit {lim.max_image_pixels:,} pixels per frame)")
        native = info.fps or DEFAULT_FPS
        rate = min(sample_fps or lim.video_fps, native)
        records = RecordsSink(page_record)
        stream = Stream(_Locked(self.new_session(), self._lock), capture, sinks=[records],
                        frame_filter=VideoBudget(lim, rate, cancel), class_names=self.class_names)
        summary = stream.run(handle_sigint=False)
        if not records.records:
            raise UploadError(422, "no frame could be decoded from the video (corrupt or unsupported codec)")
        return {"video": {"fps": info.fps, "width": info.width, "height": info.height,
                          "frame_count": info.frame_count,
                          "duration": round(info.frame_count / native, 3) if info.frame_count else None},
                "sample_fps": round(rate, 3), "frames_read": summary.frames_read, "stopped": summary.stop_reason,
                "frames": records.records}


def page_record(frame: np.ndarray, result: Any) -> dict[str, Any]:
    """A frame's JSON for the page (live and video): ``FrameResult.to_dict()`` and the
    ``layout`` the page draws its faces by, computed once, here, by
    :func:`ferlab.inference.overlay.layout_json` (as every annotated frame is)."""
    from ..inference.overlay import layout_json

    return {**result.to_dict(), "layout": layout_json(frame.shape, result.faces)}


def annotated_jpeg(image: np.ndarray, faces: list[Any]) -> bytes:
    import cv2

    from ..inference.overlay import annotate

    ok, buf = cv2.imencode(".jpg", annotate(image, faces), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - encoding a valid BGR image does not fail
        raise FerlabError("could not encode the annotated image")
    return buf.tobytes()


class VideoBudget:
    """Frame filter of :meth:`InferencePool.analyse_video`: takes frames at ``rate`` per second of
    video and stops the stream (:class:`~ferlab.inference.stream.StopStream`, whose reason the
    response reports) on cancellation or at the first limit reached."""

    def __init__(self, limits: Limits, rate: float, cancel: threading.Event) -> None:
        self.limits = limits
        self.rate = rate
        self.cancel = cancel
        self.taken = 0
        self.started = time.monotonic()

    def __call__(self, index: int, t: float) -> bool:
        from ..inference.stream import StopStream

        lim = self.limits
        if self.cancel.is_set():
            raise StopStream("cancelled")
        if t > lim.max_video_seconds:
            raise StopStream("max_video_seconds")
        if t + 1e-6 < self.taken / self.rate:  # sampling: not yet time for the next one
            return False
        if self.taken >= lim.max_video_frames:
            raise StopStream("max_video_frames")
        if time.monotonic() - self.started > lim.max_video_work_seconds:
            raise StopStream("max_video_work_seconds")
        self.taken += 1
        return True


class _Locked:
    """A session whose ``process`` holds the engine's lock (the stream calls it from a video thread)."""

    def __init__(self, session: Any, lock: threading.Lock) -> None:
        self.session = session
        self.recognizer = session.recognizer
        self._lock = lock

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> Any:
        with self._lock:
            return self.session.process(frame, timestamp)
