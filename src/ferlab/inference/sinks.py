"""Where the results of a :class:`~ferlab.inference.stream.Stream` go, one small class each.

Every sink has ``open(ctx)``, ``write(frame, result)`` and ``close()`` (and ``abort()``).
File sinks write to a temporary file next to the target and rename it into place on
``close``; ``abort`` (the run crashed) deletes it, so a target is either a complete file or
absent, never half-written. The stream closes (not aborts) its sinks after Ctrl-C, a stop or
an input that ended early, so those runs still leave complete files of the frames so far.

    from ferlab.inference import Recognizer
    from ferlab.inference.sinks import CsvSink, JsonlSink, VideoSink

    rec = Recognizer.from_pretrained()
    rec.stream("talk.mp4", sinks=[VideoSink("talk_annotated.mp4"), JsonlSink("talk.jsonl")]).run()
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from ..errors import FerlabError
from ..fileio import OutputError, atomic_path, output_error
from .background import BackgroundWriter
from .capture import gui_available
from .plot import TrackHistory, plot_tracks
from .results import FrameResult
from .stream import StopStream, StreamContext

PathLike = str | os.PathLike[str]


class FileSink:
    """Base of the sinks that write one file: ``_begin`` gives the temporary path, ``close``
    renames it over the target, ``abort`` deletes it."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._stack: contextlib.ExitStack | None = None

    @property
    def outputs(self) -> list[str]:
        return [str(self.path)]

    def _begin(self) -> Path:
        self._stack = contextlib.ExitStack()
        return self._stack.enter_context(atomic_path(self.path))

    def _enter(self, cm: Any) -> Any:
        assert self._stack is not None
        return self._stack.enter_context(cm)

    def open(self, ctx: StreamContext) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def write(self, frame: np.ndarray, result: FrameResult) -> None:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()  # file handles first, then the rename (LIFO)

    def abort(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            err = FerlabError(f"{self.path}: run failed, not written")
            stack.__exit__(type(err), err, None)  # atomic_path deletes its temporary file


class VideoSink(FileSink):
    """The annotated video (.mp4 / .m4v / .mov with mp4v, .avi / .mkv with MJPG), at the
    source's frame rate and the first frame's size."""

    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, path: PathLike, fps: float | None = None, *, background: bool = True) -> None:
        super().__init__(path)
        self.background = background  # encode on a thread behind the loop (ferlab.inference.background)
        self.ext = self.path.suffix.lower()
        if self.ext not in self.FOURCC:
            raise FerlabError(f"cannot write video {self.path}: use a .mp4 or .avi file name")
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._file: Path | None = None
        self._encoder: BackgroundWriter[np.ndarray] | None = None
        self._written = 0

    def open(self, ctx: StreamContext) -> None:
        tmp = self._begin()
        # VideoWriter picks the container from the extension: write a sibling that keeps it,
        # moved onto atomic_path's temporary file when done
        self._file = tmp.with_name(tmp.name + self.ext)
        self._ctx = ctx
        self.size = (ctx.source.width, ctx.source.height)
        self._writer = cv2.VideoWriter(str(self._file), cv2.VideoWriter_fourcc(*self.FOURCC[self.ext]),
                                       self.fps or ctx.fps, self.size)
        if not self._writer.isOpened():
            self.abort()
            if _free_bytes(self._file.parent) < MIN_FREE_BYTES:  # it could not even create the file
                raise OutputError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
            raise FerlabError(f"cannot write video {self.path}: this OpenCV build has no encoder for {self.ext}")
        self._encoder = BackgroundWriter(self._writer.write) if self.background else None

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        # OpenCV's writer never reports a failed write (it logs a warning per frame and leaves
        # a file without its index): a full disk is noticed here, before the next frame
        if self._file is not None and _free_bytes(self._file.parent) < MIN_FREE_BYTES:
            raise OutputError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        self._written += 1
        drawn = self._ctx.annotated(frame, result)
        if (drawn.shape[1], drawn.shape[0]) != self.size:  # streams may change resolution
            drawn = cv2.resize(drawn, self.size, interpolation=cv2.INTER_AREA)
        if self._encoder is not None:
            self._encoder.put(drawn)
        else:
            self._writer.write(drawn)  # type: ignore[union-attr]

    def _release(self, finish: bool = True) -> None:
        encoder, self._encoder = self._encoder, None
        try:
            if encoder is not None:
                encoder.close() if finish else encoder.abort()
        finally:
            if self._writer is not None:
                self._writer.release()
                self._writer = None

    def close(self) -> None:
        self._release()
        if self._file is not None and self._written and not self._complete():
            self.abort()  # a file the encoder could not finish must not take the output's name
            raise OutputError(errno.EIO, "the video encoder could not finish the file (disk full?)", str(self.path))
        if self._file is not None and self._file.exists() and self._stack is not None:
            os.replace(self._file, self._file.with_name(self._file.name[: -len(self.ext)]))
        super().close()

    def _complete(self) -> bool:
        """The written file opens and its index lists every frame written."""
        cap = cv2.VideoCapture(str(self._file))
        try:
            return cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= self._written
        finally:
            cap.release()

    def abort(self) -> None:
        self._release(finish=False)
        if self._file is not None:
            self._file.unlink(missing_ok=True)
        super().abort()


MIN_FREE_BYTES = 64 * 1024


def _free_bytes(folder: Path) -> int:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # Windows has no statvfs: the check at close still holds
        return MIN_FREE_BYTES
    return st.f_bavail * st.f_frsize


class JsonlSink(FileSink):
    """One JSON object per frame (``FrameResult.to_dict()``), to a file or an open text
    stream such as ``sys.stdout`` (a stream is flushed, not closed, and not listed as an output)."""

    def __init__(self, target: PathLike | TextIO) -> None:
        self.stream: TextIO | None = target if hasattr(target, "write") else None  # type: ignore[assignment]
        super().__init__("-" if self.stream is not None else target)  # type: ignore[arg-type]
        self._fh: TextIO | None = None

    @property
    def outputs(self) -> list[str]:
        return [] if self.stream is not None else [str(self.path)]

    def open(self, ctx: StreamContext) -> None:
        if self.stream is not None:
            self._fh = self.stream
        else:
            self._fh = self._enter(open(self._begin(), "w", encoding="utf-8"))

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        try:
            self._fh.write(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")  # type: ignore[union-attr]
        except OSError as exc:  # a full disk: name the output, not "[Errno 28]" alone
            raise output_error(exc, self.path) from None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
        super().close()


def csv_header(class_names: list[str]) -> list[str]:
    return (["frame", "time", "track_id", "x", "y", "w", "h", "label", "confidence"]
            + [f"p_{c}" for c in class_names] + [f"s_{c}" for c in class_names] + ["uncertain", "uncertainty"])


def csv_rows(result: FrameResult) -> list[list[Any]]:
    rows = []
    for f in result.faces:
        d = f.to_dict()
        sm = d["smoothed"] or {}
        rows.append([result.frame, round(result.time, 6), "" if d["track_id"] is None else d["track_id"],
                     *d["box"], d["label"], d["confidence"], *d["probs"].values(),
                     *[sm.get(c, "") for c in d["probs"]],
                     "" if d["uncertain"] is None else int(d["uncertain"]),
                     "" if d["uncertainty"] is None else d["uncertainty"]])
    return rows


class CsvSink(FileSink):
    """One row per face (:func:`csv_header`): box, label, raw and smoothed probabilities."""

    def open(self, ctx: StreamContext) -> None:
        self._fh = self._enter(open(self._begin(), "w", encoding="utf-8", newline=""))
        csv.writer(self._fh).writerow(csv_header(ctx.class_names))

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if result.faces:
            buf = io.StringIO()  # one write per frame: a frame's rows land together
            csv.writer(buf).writerows(csv_rows(result))
            try:
                self._fh.write(buf.getvalue())
            except OSError as exc:
                raise output_error(exc, self.path) from None


class PlotSink(FileSink):
    """The per-track emotion-over-time plot (PNG), drawn at the end from a bounded history."""

    def __init__(self, path: PathLike, title: str | None = None) -> None:
        super().__init__(path)
        self.title = title
        self.history = TrackHistory()

    def open(self, ctx: StreamContext) -> None:
        self._ctx = ctx
        self.history = TrackHistory()

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        self.history.add(result)

    def close(self) -> None:
        title = self.title or f"{Path(self._ctx.source.name).name}: emotion over time"
        plot_tracks(self.history, self.path, self._ctx.class_names, title=title)  # atomic itself

    def abort(self) -> None:
        pass  # nothing on disk until close


class WindowSink:
    """Shows the annotated frames; 'q', Esc or closing the window stops the stream."""

    def __init__(self, title: str = "ferlab") -> None:
        if not gui_available():
            raise FerlabError("this OpenCV build has no window support (opencv-python-headless): "
                              "run with --no-window, or pip install opencv-python")
        self.title = title

    def open(self, ctx: StreamContext) -> None:
        self._ctx = ctx

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        cv2.imshow(self.title, self._ctx.annotated(frame, result))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            raise StopStream("window")

    def close(self) -> None:
        cv2.destroyAllWindows()


class ProgressSink:
    """A tqdm bar on stderr (frames of the expected total, when the source knows it)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Any = None

    def open(self, ctx: StreamContext) -> None:
        from tqdm import tqdm

        name = ctx.source.name if ctx.source.live else Path(ctx.source.name).name
        self._bar = tqdm(total=ctx.expected_frames, unit="frame", desc=name, disable=not self.enabled,
                         dynamic_ncols=True, file=sys.stderr, smoothing=0.1)

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class RecordsSink:
    """Collects a record of every frame in ``records`` (the web server's video analysis; keep
    it to bounded runs): ``FrameResult.to_dict()``, or what ``record(frame, result)`` makes."""

    def __init__(self, record: Callable[[np.ndarray, FrameResult], dict[str, Any]] | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.record = record

    def open(self, ctx: StreamContext) -> None:
        pass

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        self.records.append(result.to_dict() if self.record is None else self.record(frame, result))

    def close(self) -> None:
        pass


def file_sinks(*, output: PathLike | None = None, jsonl: PathLike | TextIO | None = None,
               csv_path: PathLike | None = None, plot: PathLike | None = None) -> list[Any]:
    """The file outputs ``ferlab video`` offers, in the order the summary lists them."""
    sinks: list[Any] = []
    if output is not None:
        sinks.append(VideoSink(output))
    if jsonl is not None:
        sinks.append(JsonlSink(jsonl))
    if csv_path is not None:
        sinks.append(CsvSink(csv_path))
    if plot is not None:
        sinks.append(PlotSink(plot))
    return sinks
