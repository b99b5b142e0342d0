"""Video files, cameras and streams: read frame by frame, write results as they come.

Nothing is accumulated per frame (records go straight to disk, the plot keeps a bounded,
decimated history), so memory stays flat for a 10-hour recording. Every output is written to
a temporary file and renamed into place at the end; if the input ends early (truncated file,
dropped stream) or the user presses Ctrl-C, the frames processed so far are still written as
complete, valid files, and a crash never leaves a half-written file under the target name.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from ..errors import FerlabError
from ..fileio import atomic_path, write_with
from .results import FrameResult

# FFmpeg's own log lines ("moov atom not found") would be printed next to our one-line
# error; users who need them can set the variable themselves.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

DEFAULT_FPS = 30.0


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
    return cap, info


def iter_frames(cap: cv2.VideoCapture, info: SourceInfo, *, max_frames: int | None = None,
                retries: int = 5) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, seconds, BGR frame). Files use index / fps (exact, reproducible); live sources
    use wall-clock time since the first frame. A live source may drop a few reads."""
    index = 0
    t0 = time.monotonic()
    fails = 0
    while max_frames is None or index < max_frames:
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


def gui_available() -> bool:
    """opencv-python-headless (our dependency) has no windows; opencv-python does."""
    try:
        cv2.namedWindow("ferlab-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("ferlab-probe")
        return True
    except cv2.error:
        return False


# -- outputs --------------------------------------------------------------------------------

def csv_header(class_names: list[str]) -> list[str]:
    return (["frame", "time", "track_id", "x", "y", "w", "h", "label", "confidence"]
            + [f"p_{c}" for c in class_names] + [f"s_{c}" for c in class_names])


def csv_rows(result: FrameResult) -> list[list[Any]]:
    rows = []
    for f in result.faces:
        d = f.to_dict()
        sm = d["smoothed"] or {}
        rows.append([result.frame, round(result.time, 6), "" if d["track_id"] is None else d["track_id"],
                     *d["box"], d["label"], d["confidence"], *d["probs"].values(),
                     *[sm.get(c, "") for c in d["probs"]]])
    return rows


class TrackHistory:
    """Per-track probabilities over time for the plot, bounded: when a track has
    ``max_points`` samples, every second one is dropped and the sampling stride doubles."""

    def __init__(self, max_points: int = 2000, max_tracks: int = 64) -> None:
        self.max_points = max_points
        self.max_tracks = max_tracks
        self.series: dict[int, dict[str, Any]] = {}

    def add(self, result: FrameResult) -> None:
        for f in result.faces:
            if f.track_id is None:
                continue
            s = self.series.get(f.track_id)
            if s is None:
                if len(self.series) >= self.max_tracks:  # keep the longest tracks
                    shortest = min(self.series, key=lambda k: self.series[k]["count"])
                    if self.series[shortest]["count"] > 1:
                        continue
                    del self.series[shortest]
                s = self.series[f.track_id] = {"t": [], "f": [], "p": [], "stride": 1, "count": 0}
            s["count"] += 1
            if (s["count"] - 1) % s["stride"]:
                continue
            s["t"].append(result.time)
            s["f"].append(result.frame)
            s["p"].append(np.asarray(f.display_probs, np.float32))
            if len(s["t"]) >= self.max_points:
                s["t"], s["f"], s["p"], s["stride"] = s["t"][::2], s["f"][::2], s["p"][::2], s["stride"] * 2


def plot_tracks(history: TrackHistory, path: str | os.PathLike[str], class_names: list[str],
                title: str = "", max_panels: int = 8) -> Path:
    """One panel per track (longest first): each emotion's (smoothed) probability over time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .overlay import color_of

    tracks = sorted(history.series.items(), key=lambda kv: -kv[1]["count"])[:max_panels]
    n = max(1, len(tracks))
    fig = Figure(figsize=(10, 2.2 * n + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    if not tracks:
        axes[0].text(0.5, 0.5, "no faces detected", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, (tid, s) in zip(axes, tracks):
        t = np.asarray(s["t"], np.float64)
        p = np.stack(s["p"]).astype(np.float64) if s["p"] else np.zeros((0, len(class_names)))
        if len(t) > 1:  # break the lines where the face was not seen, instead of bridging
            gaps = np.flatnonzero(np.diff(s["f"]) > 2 * s["stride"]) + 1
            t = np.insert(t, gaps, np.nan)
            p = np.insert(p, gaps, np.nan, axis=0)
        for i, name in enumerate(class_names):
            b, g, r = color_of(name, i)
            ax.plot(t, p[:, i] if len(p) else [], color=(r / 255, g / 255, b / 255), lw=1.4, label=name)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {tid}\np")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    if tracks:
        axes[0].legend(ncol=len(class_names), loc="lower left", bbox_to_anchor=(0, 1.02), fontsize=8, frameon=False)
    extra = f" (longest {max_panels} of {len(history.series)} tracks)" if len(history.series) > max_panels else ""
    fig.suptitle((title or "emotion over time") + extra, fontsize=10)
    write_with(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    return Path(path)


class _VideoOut:
    """cv2.VideoWriter picks the container from the extension, so it writes to a sibling
    temp name that keeps the extension, moved into atomic_path's temp file when done."""

    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, target: Path, tmp: Path, fps: float, size: tuple[int, int]) -> None:
        ext = target.suffix.lower()
        if ext not in self.FOURCC:
            raise FerlabError(f"cannot write video {target}: use a .mp4 or .avi file name")
        self.tmp, self.path = tmp, tmp.with_name(tmp.name + ext)
        self.size = size
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.FOURCC[ext]), fps, size)
        if not self.writer.isOpened():
            raise FerlabError(f"cannot write video {target}: this OpenCV build has no encoder for {ext}")

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:  # streams may change resolution
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.release()
        if self.path.exists():
            os.replace(self.path, self.tmp)

    def discard(self) -> None:
        self.writer.release()
        self.path.unlink(missing_ok=True)


@dataclass
class RunSummary:
    source: str
    frames: int = 0
    faces: int = 0
    tracks: int = 0
    seconds: float = 0.0
    expected_frames: int | None = None
    interrupted: bool = False  # Ctrl-C
    stopped: bool = False  # 'q' in the window
    outputs: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def truncated(self) -> bool:
        """Fewer frames than the header promised (tolerates off-by-a-few container counts)."""
        return (self.expected_frames is not None and not self.interrupted and not self.stopped
                and self.frames < self.expected_frames - max(2, self.expected_frames // 100))


class _StopFlag:
    """First Ctrl-C: finish the current frame, then stop and write the outputs. Second
    Ctrl-C: raise KeyboardInterrupt at once (a blocked stream read). Only in the main thread."""

    def __init__(self) -> None:
        self.set = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            def handler(signum: int, frame: Any) -> None:
                if self.set:
                    raise KeyboardInterrupt
                self.set = True
            try:
                self._old = signal.signal(signal.SIGINT, handler)
            except ValueError:
                self._old = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def run_stream(recognizer: Any, source: str | int | os.PathLike[str], *, output: str | os.PathLike[str] | None = None,
               jsonl: str | os.PathLike[str] | TextIO | None = None, csv_path: str | os.PathLike[str] | None = None,
               plot: str | os.PathLike[str] | None = None, show: bool = False, progress: bool = True,
               max_frames: int | None = None, window_title: str = "ferlab", **session_options: Any) -> RunSummary:
    """Process a video/camera/stream, writing the requested outputs. ``jsonl`` may be an open
    text stream (e.g. stdout) instead of a path."""
    from tqdm import tqdm

    from .overlay import annotate

    if show and not gui_available():
        raise FerlabError("this OpenCV build has no window support (opencv-python-headless): "
                          "run with --no-window, or pip install opencv-python")
    cap, info = open_capture(source)
    frames = iter_frames(cap, info, max_frames=max_frames)
    first = next(frames, None)
    if first is None:
        cap.release()
        raise FerlabError(f"{info.name}: no frame could be read (empty, corrupt or truncated video)")
    session = recognizer.session(**session_options)
    summary = RunSummary(info.name, expected_frames=info.frame_count if max_frames is None
                         else min(max_frames, info.frame_count or max_frames))
    history = TrackHistory() if plot else None
    track_ids: set[int] = set()
    fps_out = info.fps or DEFAULT_FPS
    h0, w0 = first[2].shape[:2]
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        video = jsonl_fh = csv_fh = None
        csv_writer = None
        if output is not None:
            tmp = stack.enter_context(atomic_path(output))
            video = _VideoOut(Path(output), tmp, fps_out, (w0, h0))
            stack.callback(video.discard)  # no-op after close(); cleans up on errors
        if jsonl is not None:
            if hasattr(jsonl, "write"):
                jsonl_fh = jsonl  # type: ignore[assignment]
            else:
                jsonl_fh = stack.enter_context(open(stack.enter_context(atomic_path(jsonl)), "w", encoding="utf-8"))  # type: ignore[arg-type]
        if csv_path is not None:
            csv_fh = stack.enter_context(open(stack.enter_context(atomic_path(csv_path)), "w", encoding="utf-8", newline=""))
            csv_writer = csv.writer(csv_fh)
            csv_writer.writerow(csv_header(recognizer.class_names))
        bar = tqdm(total=summary.expected_frames, unit="frame", desc=Path(info.name).name if not info.live else info.name,
                   disable=not progress, dynamic_ncols=True, file=sys.stderr, smoothing=0.1)
        stack.callback(bar.close)
        if show:
            stack.callback(cv2.destroyAllWindows)
        live_fps: float | None = None
        last = time.perf_counter()
        stop = stack.enter_context(_StopFlag())
        try:
            for index, t, frame in _chain(first, frames):
                result = session.process(frame, t)
                now = time.perf_counter()
                dt, last = now - last, now
                if dt > 0:
                    live_fps = 1 / dt if live_fps is None else 0.9 * live_fps + 0.1 / dt
                if video is not None or show:
                    drawn = annotate(frame, result, fps=live_fps)
                    if video is not None:
                        video.write(drawn)
                if jsonl_fh is not None:
                    jsonl_fh.write(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")
                if csv_writer is not None and result.faces:
                    buf = io.StringIO()  # one write per frame: a frame's rows land together
                    csv.writer(buf).writerows(csv_rows(result))
                    csv_fh.write(buf.getvalue())  # type: ignore[union-attr]
                if history is not None:
                    history.add(result)
                summary.frames += 1
                summary.faces += len(result.faces)
                track_ids.update(f.track_id for f in result.faces if f.track_id is not None)
                bar.update(1)
                if show:
                    cv2.imshow(window_title, drawn)
                    key = cv2.waitKey(1) & 0xFF
                    if key in (ord("q"), 27) or cv2.getWindowProperty(window_title, cv2.WND_PROP_VISIBLE) < 1:
                        summary.stopped = True
                        break
                if stop.set:
                    summary.interrupted = True
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            cap.release()
        summary.seconds = time.perf_counter() - t_start
        summary.tracks = len(track_ids)
        if video is not None:
            video.close()
        if jsonl_fh is not None:
            jsonl_fh.flush()
    for target in (output, None if jsonl is None or hasattr(jsonl, "write") else jsonl, csv_path):
        if target is not None:
            summary.outputs.append(str(target))
    if history is not None and plot is not None:
        plot_tracks(history, plot, recognizer.class_names, title=f"{Path(info.name).name}: emotion over time")
        summary.outputs.append(str(plot))
    return summary


def _chain(first: tuple[int, float, np.ndarray], rest: Iterator[tuple[int, float, np.ndarray]]
           ) -> Iterator[tuple[int, float, np.ndarray]]:
    yield first
    yield from rest
