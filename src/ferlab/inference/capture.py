"""Opening cameras, video files and network streams, and reading them frame by frame.

Each kind of source fails with its own one-line message (camera busy, file missing/empty/
corrupt, stream unreachable) instead of OpenCV's silent ``isOpened() == False``.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import FerlabError

# FFmpeg's own log lines ("moov atom not found") would be printed next to our one-line
# error; users who need them can set the variable themselves.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

DEFAULT_FPS = 30.0  # assumed when a file does not say


@dataclass
class SourceInfo:
    name: str
    live: bool  # camera or network stream: wall-clock timestamps, no known length
    fps: float | None
    frame_count: int | None
    width: int
    height: int


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV prints WARN lines when a camera index or file fails to open; we raise a clear
    FerlabError instead, so hide them for the duration of the open only."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    old = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(old)


def parse_source(source: str | int | os.PathLike[str]) -> str | int:
    """A camera index (``0``, ``"0"``), a URL or a file path."""
    if isinstance(source, int):
        return source
    s = str(source)
    return int(s) if s.isdigit() else s


def open_capture(source: str | int | os.PathLike[str]) -> tuple[cv2.VideoCapture, SourceInfo]:
    """Open a camera index, file or URL, or raise a one-line error naming it."""
    src = parse_source(source)
    if isinstance(src, int):
        with _quiet_opencv():
            cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            raise FerlabError(f"camera {src} could not be opened (is one connected and not in use by another program?)")
        live = True
        name = f"camera {src}"
    elif "://" in src:
        with _quiet_opencv():
            cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            raise FerlabError(f"stream {src} could not be opened (check the URL and that the server is reachable)")
        live = True
        name = src
    else:
        p = Path(src)
        if not p.exists():
            raise FerlabError(f"video not found: {p}")
        if p.is_dir():
            raise FerlabError(f"{p} is a folder, not a video")
        if p.stat().st_size == 0:
            raise FerlabError(f"video {p} is empty (0 bytes)")
        with _quiet_opencv():
            cap = cv2.VideoCapture(str(p))
        if not cap.isOpened():
            raise FerlabError(f"video {p} could not be opened (corrupt, truncated or not a video format)")
        live = False
        name = str(p)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if math.isfinite(fps) and 0 < fps < 1000 else None
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
    info = SourceInfo(name, live, fps, count if count > 0 else None,
                      int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    _check_frame_size(cap, info)
    return cap, info


def _check_frame_size(cap: cv2.VideoCapture, info: SourceInfo) -> None:
    """Frames are images too: the one pixel limit (:func:`~.preprocess.max_image_pixels`)
    holds for them, checked on the container's declared size before any frame is decoded."""
    from .preprocess import MAX_PIXELS_ENV, ImageTooLarge, max_image_pixels

    limit = max_image_pixels()
    if info.width * info.height > limit:
        cap.release()
        raise ImageTooLarge(f"{info.name} has {info.width}x{info.height} frames, over the {limit / 1e6:g} Mpx limit: "
                            f"refused before decoding (set {MAX_PIXELS_ENV} to allow more)")


def iter_frames(cap: cv2.VideoCapture, info: SourceInfo, *, max_frames: int | None = None,
                retries: int = 5, start: int = 0) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, seconds, BGR frame). Files use index / fps (exact, reproducible); live sources
    use wall-clock time since the first frame. A live source may drop a few reads. ``start``:
    the index of the next frame ``cap`` reads (it was seeked there, :func:`seek`), so indices
    and times stay the file's own; ``max_frames`` counts from there."""
    index = start
    t0 = time.monotonic()
    fails = 0
    while max_frames is None or index - start < max_frames:
        try:
            ok, frame = cap.read()
        except cv2.error:
            ok, frame = False, None
        if not ok or frame is None or frame.size == 0:
            fails += 1
            if info.live and fails <= retries:
                time.sleep(0.01)
                continue
            return
        fails = 0
        t = (time.monotonic() - t0) if info.live else index / (info.fps or DEFAULT_FPS)
        yield index, t, frame
        index += 1


def seek(cap: cv2.VideoCapture, info: SourceInfo, start: int) -> cv2.VideoCapture:
    """``cap`` positioned so that its next read is frame ``start`` of a file.

    OpenCV's FFmpeg backend seeks to the key frame before ``start`` and decodes forward to it,
    which is frame-accurate for H.264, MPEG-4 and MJPG files (the bundled clip and the clips
    the tests write are checked frame by frame). A backend that refuses the seek gets the
    file reopened and ``start`` frames grabbed (decoded, not converted): slower, still exact.
    """
    if start <= 0:
        return cap
    if info.live:
        raise FerlabError(f"{info.name} is a live source: it cannot start at frame {start}")
    if cap.set(cv2.CAP_PROP_POS_FRAMES, start) and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == start:
        return cap
    cap.release()
    cap, _ = open_capture(info.name)
    for _ in range(start):
        if not cap.grab():
            break  # past the end: the first read fails, as it would after a seek
    return cap


class Capture:
    """An opened source: ``info`` and :meth:`frames`; a context manager that releases it.
    ``start``: the file frame reading begins at (:meth:`open` seeks there)."""

    def __init__(self, cap: cv2.VideoCapture, info: SourceInfo, start: int = 0) -> None:
        self.cap = cap
        self.info = info
        self.start = int(start)
        self._readers: list[Any] = []

    @classmethod
    def open(cls, source: str | int | os.PathLike[str], start: int = 0) -> Capture:
        cap, info = open_capture(source)
        try:
            cap = seek(cap, info, start)
        except BaseException:
            cap.release()
            raise
        return cls(cap, info, start)

    @property
    def remaining(self) -> int | None:
        """Frames from ``start`` to the end, as the header tells (None when it does not)."""
        if self.info.frame_count is None:
            return None
        return max(0, self.info.frame_count - self.start)

    def frames(self, max_frames: int | None = None, *,
               read_ahead: int = 4) -> Iterator[tuple[int, float, np.ndarray]]:
        """The frames from ``start`` (at most ``max_frames``); a file is decoded ``read_ahead``
        frames ahead on a thread (0 = inline), a live source never is (see :mod:`.background`)."""
        frames = iter_frames(self.cap, self.info, max_frames=max_frames, start=self.start)
        if self.info.live or read_ahead <= 0:
            return frames
        from .background import ReadAhead

        reader = ReadAhead(frames, depth=read_ahead)
        self._readers.append(reader)
        return iter(reader)

    def release(self) -> None:
        for reader in self._readers:  # no thread may still be reading what is released
            reader.close()
        self._readers.clear()
        self.cap.release()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def gui_available() -> bool:
    """opencv-python-headless (our dependency) has no windows; opencv-python does."""
    try:
        cv2.namedWindow("ferlab-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("ferlab-probe")
        return True
    except cv2.error:
        return False
