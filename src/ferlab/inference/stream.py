"""The one frame loop: read a source, run each frame through a session, hand the result on.

Every way of processing a video goes through :class:`Stream`: ``Recognizer.stream`` (the
Python API), ``ferlab video | live | demo`` and the web server's video analysis. What differs
between them hangs off the loop instead of being a loop of its own:

* **sinks** (:mod:`ferlab.inference.sinks`) receive every processed frame: annotated video,
  JSONL, CSV, the per-track plot, a window, a progress bar, a list of records;
* a **frame filter** decides per frame, before any work, whether to process it (sampling)
  or to stop (limits, cancellation), by raising :class:`StopStream`.

Nothing is accumulated per frame by the loop itself, so memory stays flat for a 10-hour
recording. When the input ends early (truncated file, dropped stream), a sink or filter
stops the loop, the consumer stops iterating, or the user presses Ctrl-C, every sink is
closed normally: the frames processed so far are written as complete files. When anything
else goes wrong the sinks are aborted and no file appears under its target name.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Protocol

import numpy as np

from ..errors import FerlabError
from .capture import DEFAULT_FPS, Capture, SourceInfo
from .results import FrameResult

FrameFilter = Callable[[int, float], bool]
"""``(source frame index, seconds) -> process it?``; raise :class:`StopStream` to end the loop."""


class StopStream(Exception):
    """Raised by a sink's ``write`` or by a frame filter to end the loop early; the outputs
    are written as for a normal end. ``reason`` is kept in :attr:`RunSummary.stop_reason`."""

    def __init__(self, reason: str = "stopped") -> None:
        super().__init__(reason)
        self.reason = reason


class Sink(Protocol):
    """What the loop calls: ``open`` before the first frame, ``write`` per processed frame
    (may raise :class:`StopStream`), ``close`` at the end (also after Ctrl-C or a stop).
    Optional: ``abort()`` instead of ``close`` when the run failed, and ``outputs``
    (the files written, listed in the summary)."""

    def open(self, ctx: StreamContext) -> None: ...

    def write(self, frame: np.ndarray, result: FrameResult) -> None: ...

    def close(self) -> None: ...


@dataclass
class StreamContext:
    """What sinks may need besides the frame: the source, the classes, the output frame
    rate, the measured processing rate, and the annotated frame (drawn once per frame,
    however many sinks show it)."""

    source: SourceInfo
    class_names: list[str]
    fps: float  # of the source (DEFAULT_FPS when it does not say): the rate to write videos at
    expected_frames: int | None = None
    live_fps: float | None = None  # frames processed per second, smoothed
    _drawn: tuple[FrameResult, np.ndarray] | None = field(default=None, repr=False)

    def annotated(self, frame: np.ndarray, result: FrameResult) -> np.ndarray:
        if self._drawn is None or self._drawn[0] is not result:
            from .overlay import annotate

            self._drawn = (result, annotate(frame, result, fps=self.live_fps))
        return self._drawn[1]


@dataclass
class RunSummary:
    source: str
    frames: int = 0  # processed
    faces: int = 0
    tracks: int = 0
    seconds: float = 0.0
    expected_frames: int | None = None
    frames_read: int = 0  # read from the source, including those a frame filter skipped
    interrupted: bool = False  # Ctrl-C
    stopped: bool = False  # a sink or filter ended the run ('q' in the window, a limit)
    stop_reason: str | None = None  # "window", "cancelled", "max_video_frames", ...
    outputs: list[str] = field(default_factory=list)
    _track_ids: set[int] = field(default_factory=set, repr=False)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def truncated(self) -> bool:
        """Fewer frames than the header promised (tolerates off-by-a-few container counts)."""
        return (self.expected_frames is not None and not self.interrupted and not self.stopped
                and self.frames_read < self.expected_frames - max(2, self.expected_frames // 100))

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.faces += len(result.faces)
        self._track_ids.update(f.track_id for f in result.faces if f.track_id is not None)
        self.tracks = len(self._track_ids)


class StopFlag:
    """First Ctrl-C: finish the current frame, then stop and write the outputs. Second
    Ctrl-C: raise KeyboardInterrupt at once (a blocked stream read). Only in the main thread."""

    def __init__(self) -> None:
        self.set = False
        self._old: Any = None

    def __enter__(self) -> StopFlag:
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


class Stream:
    """Per-frame results of ``session`` on ``source``, with ``sinks`` attached.

    Iterate it for the :class:`~ferlab.inference.FrameResult` of each processed frame, or
    call :meth:`run` to process the whole source (Ctrl-C stops cleanly) and get a
    :class:`RunSummary`. ``source`` is anything :func:`~ferlab.inference.capture.open_capture`
    opens, or an opened :class:`~ferlab.inference.capture.Capture` (released at the end).
    ``FrameResult.frame`` is the index of the frame in the source (which differs from the
    count of processed frames only when a frame filter skips frames).

    ``allow_empty=False``: a source that yields no frame at all is an error (before any sink
    is opened, so no output file appears). ``read_ahead``: frames of a file decoded ahead on a
    thread (0 = in the loop; live sources never are: :mod:`.background`). ``batch_frames``:
    frames whose faces are classified in one network call (:meth:`Session.process_many
    <ferlab.inference.Session.process_many>`; same results, fuller GPU batches; a live source
    is always processed frame by frame).
    """

    def __init__(self, session: Any, source: str | int | os.PathLike[str] | Capture, *,
                 sinks: Iterable[Sink] = (), frame_filter: FrameFilter | None = None,
                 max_frames: int | None = None, class_names: Sequence[str] | None = None,
                 allow_empty: bool = True, read_ahead: int = 4, batch_frames: int = 1) -> None:
        if batch_frames < 1:
            raise FerlabError(f"batch_frames must be >= 1, got {batch_frames}")
        self.session = session
        self.source = source
        self.sinks = list(sinks)
        self.frame_filter = frame_filter
        self.max_frames = max_frames
        self.class_names = list(class_names if class_names is not None else session.recognizer.class_names)
        self.allow_empty = allow_empty
        self.read_ahead = int(read_ahead)
        self.batch_frames = int(batch_frames)
        self.summary: RunSummary | None = None
        self._gen: Iterator[FrameResult] | None = None

    def __iter__(self) -> Iterator[FrameResult]:
        if self._gen is None:
            self._gen = self._loop()
        return self._gen

    def __next__(self) -> FrameResult:
        return next(iter(self))

    def close(self) -> None:
        """Stop early; the sinks are closed (their files hold the frames so far)."""
        if self._gen is not None:
            self._gen.close()

    def run(self, *, handle_sigint: bool = True) -> RunSummary:
        """Process the whole source. Ctrl-C (with ``handle_sigint``, in the main thread)
        finishes the current frame and stops; the summary says ``interrupted``."""
        interrupted = False
        with StopFlag() if handle_sigint else contextlib.nullcontext() as flag:
            try:
                for _ in self:
                    if flag is not None and flag.set:
                        interrupted = True
                        break
            except KeyboardInterrupt:
                if self.summary is None:  # before the source was even open: nothing to report
                    raise
                interrupted = True
            finally:
                self.close()
        assert self.summary is not None  # set by the loop before its first frame
        self.summary.interrupted |= interrupted
        return self.summary

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> Iterator[FrameResult]:
        capture = self.source if isinstance(self.source, Capture) else Capture.open(self.source)
        info = capture.info
        expected = capture.remaining  # from where it starts (a batch segment starts mid-file)
        if self.max_frames is not None:
            expected = min(self.max_frames, self.max_frames if expected is None else expected)
        summary = self.summary = RunSummary(info.name, expected_frames=expected)
        with capture:
            frames = capture.frames(max_frames=self.max_frames, read_ahead=self.read_ahead)
            t_start = time.perf_counter()
            try:
                first = next(frames, None)
            except KeyboardInterrupt:
                summary.interrupted = True
                raise
            if first is None:
                if self.allow_empty:
                    return
                raise FerlabError(f"{info.name}: no frame could be read (empty, corrupt or truncated video)")
            info.height, info.width = first[2].shape[:2]  # what the frames really are
            ctx = StreamContext(info, self.class_names, info.fps or DEFAULT_FPS, expected)
            opened: list[Sink] = []
            ok = False
            try:
                for sink in self.sinks:
                    opened.append(sink)  # first, so one that fails half-way is cleaned up too
                    sink.open(ctx)
                last = time.perf_counter()
                batch = 1 if info.live else self.batch_frames  # a camera's frame is shown at once
                waiting: list[tuple[int, float, np.ndarray]] = []

                def emit() -> Iterator[FrameResult]:
                    nonlocal last
                    if batch == 1:
                        results = [self.session.process(waiting[0][2], waiting[0][1])]
                    else:  # the faces of all waiting frames in one network call
                        results = self.session.process_many([(f, t) for _, t, f in waiting])
                    for (index, _, frame), result in zip(waiting, results):
                        result.frame = index
                        now = time.perf_counter()
                        dt, last = now - last, now
                        if dt > 0:
                            ctx.live_fps = 1 / dt if ctx.live_fps is None else 0.9 * ctx.live_fps + 0.1 / dt
                        summary.add(result)
                        stop: StopStream | None = None
                        for sink in opened:
                            try:
                                sink.write(frame, result)
                            except StopStream as exc:  # the other sinks still get this frame
                                stop = stop or exc
                        yield result
                        if stop is not None:
                            raise stop
                    waiting.clear()

                for index, t, frame in chain([first], frames):
                    summary.frames_read += 1
                    if self.frame_filter is not None and not self.frame_filter(index, t):
                        continue
                    waiting.append((index, t, frame))
                    if len(waiting) >= batch:
                        yield from emit()
                if waiting:
                    yield from emit()
                ok = True
            except StopStream as exc:
                summary.stopped, summary.stop_reason = True, exc.reason
                ok = True
            except GeneratorExit:  # the consumer stopped iterating
                ok = True
                raise
            except KeyboardInterrupt:
                summary.interrupted = True
                ok = True
                raise
            finally:
                summary.seconds = time.perf_counter() - t_start
                _finish(opened, summary, ok)


def _finish(sinks: list[Sink], summary: RunSummary, ok: bool) -> None:
    """Close (``ok``) or abort every opened sink; if closing one fails, abort the rest."""
    error: BaseException | None = None
    for sink in sinks:
        if ok and error is None:
            try:
                sink.close()
                summary.outputs.extend(getattr(sink, "outputs", ()))
                continue
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others are cleaned up
                error = exc
                continue
        abort = getattr(sink, "abort", None)
        try:
            abort() if abort is not None else sink.close()
        except Exception:  # noqa: BLE001 - already failing; cleaning up is best effort
            pass
    if error is not None:
        raise error
