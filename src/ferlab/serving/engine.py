"""The bridge between the async web server and the blocking recognizer.

Inference (OpenCV + ONNX Runtime/PyTorch) blocks for tens of milliseconds, so it never runs
on the event loop: it goes to a small thread pool, and videos to a pool of their own so one
long video cannot take the threads live clients need. The Haar cascade is locked by the
detector itself, but the recognizer as a whole is not documented as thread-safe (PyTorch
modules and the per-session trackers were not written for concurrent calls), so every call
into it holds one lock. On the 2-4 cores this runs on, serialising the model costs little:
decoding JPEGs, the other big cost, still runs in parallel outside the lock.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import FerlabError
from .limits import Limits
from .uploads import Upload, UploadError, decode_image

T = TypeVar("T")


class Engine:
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
        self.started = time.monotonic()

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
    def predict(self, upload: Upload) -> tuple[np.ndarray, list[Any]]:
        image = decode_image(upload, self.limits.max_image_pixels)
        with self._lock:
            faces = self.recognizer.predict(image)
        return image, faces

    def new_session(self) -> Any:
        with self._lock:
            return self.recognizer.session()

    def live_step(self, session: Any, data: bytes, timestamp: float) -> dict[str, Any]:
        """Decode one browser frame and run it through the client's session."""
        image = decode_image(Upload(data, "image/jpeg"), self.limits.max_image_pixels)
        t0 = time.perf_counter()
        with self._lock:
            result = session.process(image, timestamp)
        out = result.to_dict()
        out["width"], out["height"] = int(image.shape[1]), int(image.shape[0])
        out["server_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    def analyse_video(self, path: Path, sample_fps: float | None, cancel: threading.Event) -> dict[str, Any]:
        """Per-frame records for a video file, sampled at ``sample_fps`` and bounded by the
        limits; ``stopped`` names the limit that cut it short (None = whole video)."""
        from ..inference.video import DEFAULT_FPS, iter_frames, open_capture

        lim = self.limits
        try:
            cap, info = open_capture(path)
        except FerlabError:
            raise UploadError(422, "could not open the video (corrupt, truncated or a codec "
                                   "OpenCV cannot read)") from None
        try:
            if info.width * info.height > lim.max_image_pixels:
                raise UploadError(413, f"video of {info.width}x{info.height} pixels refused "
                                       f"(limit {lim.max_image_pixels:,} pixels per frame)")
            native = info.fps or DEFAULT_FPS
            rate = min(sample_fps or lim.video_fps, native)
            session = self.new_session()
            frames: list[dict[str, Any]] = []
            stopped: str | None = None
            started = time.monotonic()
            read = 0
            for index, t, frame in iter_frames(cap, info):
                read += 1
                if cancel.is_set():
                    stopped = "cancelled"
                    break
                if t > lim.max_video_seconds:
                    stopped = "max_video_seconds"
                    break
                if t + 1e-6 < len(frames) / rate:  # sampling: not yet time for the next one
                    continue
                if len(frames) >= lim.max_video_frames:
                    stopped = "max_video_frames"
                    break
                if time.monotonic() - started > lim.max_video_work_seconds:
                    stopped = "max_video_work_seconds"
                    break
                with self._lock:
                    result = session.process(frame, t)
                record = result.to_dict()
                record["frame"] = index  # the source frame, as in `ferlab video` output
                frames.append(record)
        finally:
            cap.release()
        if not frames:
            raise UploadError(422, "no frame could be decoded from the video (corrupt or unsupported codec)")
        return {"video": {"fps": info.fps, "width": info.width, "height": info.height,
                          "frame_count": info.frame_count,
                          "duration": round(info.frame_count / native, 3) if info.frame_count else None},
                "sample_fps": round(rate, 3), "frames_read": read, "stopped": stopped, "frames": frames}
