"""Every bound the server enforces, in one frozen object.

The server is meant for a laptop on loopback, but a page on the LAN (``--host 0.0.0.0``) or a
buggy client must still not be able to exhaust memory, disk or CPU: each resource that a
request can make the server spend has a number here, and ``ferlab serve`` flags set them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import FerlabError

MB = 1024 * 1024


def _default_max_pixels() -> int:
    from ..inference.preprocess import max_image_pixels

    return max_image_pixels()


@dataclass(frozen=True)
class Limits:
    max_upload_mb: float = 20.0
    """Largest accepted upload (photo or video). Bodies are read at most to this + 1 byte."""
    max_clients: int = 8
    """Live websocket connections at once; more are closed with code 1013 and a reason."""
    max_fps: float = 30.0
    """Per live connection: results are never produced faster than this, extra frames are dropped."""
    max_frame_mb: float = 4.0
    """Largest single live frame (one websocket message)."""
    max_image_pixels: int = field(default_factory=lambda: _default_max_pixels())
    """Decoded size cap: a 100 KB PNG can declare 100k x 100k pixels (a decompression bomb).
    The one limit of every entry point (``$FERLAB_MAX_PIXELS``, default 50 Mpx), checked on
    the header before decoding."""
    max_video_seconds: float = 120.0
    """Only this much of an uploaded video (in video time) is analysed; the rest is reported as cut."""
    max_video_frames: int = 600
    """At most this many analysed frames per video (after sampling)."""
    video_fps: float = 10.0
    """Default analysis rate for videos; a client may ask for less or up to the native rate."""
    max_video_work_seconds: float = 300.0
    """Wall-clock budget for one video request; analysis stops there and says so."""
    max_video_jobs: int = 1
    """Videos analysed at once; more get 503 so one user cannot queue minutes of work."""
    max_pending: int = 16
    """Photo predictions waiting for or in the thread pool; more get 503 instead of piling up.
    An upload counts once its body is in: clients still sending take no place here."""
    upload_idle_s: float = 10.0
    """Longest wait for the next bytes of an upload body; a client that stalls gets 408."""
    upload_min_kbps: float = 32.0
    """After the first ``upload_idle_s`` seconds, a body arriving slower than this (KiB/s,
    averaged) is cut with 408: a 20 MB photo over a 1 Mbit/s link still passes."""
    max_uploads: int = 64
    """Upload bodies being read at once, server-wide; more get 503."""
    max_uploads_per_client: int = 32
    """Upload bodies being read at once from one client address; more get 429, so one client
    cannot take every upload slot (loopback users all share one address, hence not fewer)."""
    workers: int = 2
    """Threads that decode and run inference (the model itself is serialised by a lock)."""

    def __post_init__(self) -> None:
        checks = {
            "max_upload_mb": self.max_upload_mb > 0,
            "max_clients": self.max_clients >= 1,
            "max_fps": self.max_fps > 0,
            "max_frame_mb": self.max_frame_mb > 0,
            "max_image_pixels": self.max_image_pixels > 0,
            "max_video_seconds": self.max_video_seconds > 0,
            "max_video_frames": self.max_video_frames >= 1,
            "video_fps": self.video_fps > 0,
            "max_video_work_seconds": self.max_video_work_seconds > 0,
            "max_video_jobs": self.max_video_jobs >= 1,
            "max_pending": self.max_pending >= 1,
            "workers": self.workers >= 1,
            "upload_idle_s": self.upload_idle_s > 0,
            "upload_min_kbps": self.upload_min_kbps >= 0,
            "max_uploads": self.max_uploads >= 1,
            "max_uploads_per_client": self.max_uploads_per_client >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise FerlabError(f"invalid server limits: {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)} "
                              "(sizes, counts and rates must be positive)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def upload_min_rate(self) -> float:
        """``upload_min_kbps`` in bytes per second."""
        return self.upload_min_kbps * 1024

    @property
    def max_frame_bytes(self) -> int:
        return int(self.max_frame_mb * MB)
