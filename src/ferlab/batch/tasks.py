"""The work of one input, on a worker: a video streamed frame by frame, or a photo.

:class:`Worker` is what ``ferlab batch`` runs as a Ray actor (one per worker): it loads the
model once, with ONNX Runtime and OpenCV limited to ``threads`` threads, and then processes
one input per call with :func:`process_input`. The function needs no Ray, so the benchmark
and tests can call it directly.

Every call returns a row (a plain dict) and never raises: an input that cannot be read, ends
early or trips a bug is ``status = "failed"`` with a one-line ``error``. Outputs go to
``<out>/results/<key>.jsonl`` / ``.csv`` (and ``.mp4`` or an annotated image with ``video``),
written by the inference sinks, which rename a temporary file into place when done, so a
killed worker leaves no half-written result under its real name.
"""
from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FerlabError
from .inputs import BatchInput

RESULTS = "results"  # the per-input outputs, under the output folder


def output_names(item: BatchInput, video: bool) -> list[str]:
    """The files an input produces, relative to the output folder."""
    names = [f"{RESULTS}/{item.key}.jsonl", f"{RESULTS}/{item.key}.csv"]
    if video:
        if item.kind == "video":
            names.append(f"{RESULTS}/{item.key}.mp4")
        else:
            ext = Path(item.source.split("?", 1)[0]).suffix.lower()
            names.append(f"{RESULTS}/{item.key}{ext if ext in ('.jpg', '.jpeg', '.png') else '.jpg'}")
    return names


class SummarySink:
    """Per input and per track: frames, faces, first/last time and the mean of the raw
    distributions. Holds one vector per track, so memory does not grow with the length."""

    def __init__(self, class_names: list[str]) -> None:
        self.class_names = list(class_names)
        self.frames = 0
        self.faces = 0
        self.total = np.zeros(len(class_names))
        self.end = 0.0
        self.tracks: dict[int, list[Any]] = {}  # id -> [frames, sum, start, end]

    def open(self, ctx: Any) -> None:
        pass

    def write(self, frame: Any, result: Any) -> None:
        self.frames += 1
        self.end = float(result.time)
        for f in result.faces:
            p = np.asarray(f.probs, dtype=np.float64)
            self.faces += 1
            self.total += p
            if f.track_id is not None:
                t = self.tracks.get(f.track_id)
                if t is None:
                    self.tracks[f.track_id] = [1, p.copy(), float(result.time), float(result.time)]
                else:
                    t[0] += 1
                    t[1] += p
                    t[3] = float(result.time)

    def close(self) -> None:
        pass

    def _row(self, track: str, frames: int, faces: int, total: np.ndarray, start: float, end: float) -> dict[str, Any]:
        mean = total / faces if faces else None
        return {"track": track, "frames": frames, "faces": faces, "start": round(start, 3), "end": round(end, 3),
                "mean": None if mean is None else [round(float(v), 6) for v in mean],
                "dominant": "" if mean is None else self.class_names[int(np.argmax(mean))]}

    def rows(self) -> list[dict[str, Any]]:
        out = [self._row("", self.frames, self.faces, self.total, 0.0, self.end)]
        for tid in sorted(self.tracks):
            n, s, a, b = self.tracks[tid]
            out.append(self._row(str(tid), n, n, s, a, b))
        return out


class ProgressReport:
    """Tells the driver's progress actor how many frames were done, twice a second at most."""

    def __init__(self, actor: Any, every: float = 0.5) -> None:
        self.actor, self.every = actor, every
        self.n, self.frames, self.expected = 0, 0, 0
        self.last = time.monotonic()

    def open(self, ctx: Any) -> None:
        self.expected = int(ctx.expected_frames or 0)
        self.actor.start.remote(self.expected)

    def write(self, frame: Any, result: Any) -> None:
        self.n += 1
        self.frames += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            self.actor.add.remote(self.n)
            self.n, self.last = 0, now

    def close(self) -> None:
        self.actor.add.remote(self.n)
        self.actor.finish.remote(self.expected, self.frames)
        self.n = 0

    abort = close


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[-1] if text else ""
    return msg if isinstance(exc, FerlabError) else f"{type(exc).__name__}: {msg}".rstrip(": ")


def _read_photo(source: str) -> np.ndarray:
    from ..inference.preprocess import load_image

    if "://" not in source:
        return load_image(source)
    import urllib.request

    import cv2

    try:
        with urllib.request.urlopen(source, timeout=60) as resp:  # noqa: S310 - the user's own URL
            data = np.frombuffer(resp.read(), np.uint8)
    except OSError as exc:
        raise FerlabError(f"cannot download {source}: {exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FerlabError(f"{source} is not a readable image")
    return image


def _photo(rec: Any, item: BatchInput, paths: list[Path], summary: SummarySink) -> int:
    import cv2

    from ..fileio import write_bytes
    from ..inference.capture import SourceInfo
    from ..inference.results import FrameResult
    from ..inference.sinks import CsvSink, JsonlSink
    from ..inference.stream import StreamContext

    image = _read_photo(item.source)
    result = FrameResult(0, 0.0, rec.predict(image))
    info = SourceInfo(item.source, False, None, 1, int(image.shape[1]), int(image.shape[0]))
    ctx = StreamContext(info, rec.class_names, 30.0, 1)
    sinks: list[Any] = [JsonlSink(paths[0]), CsvSink(paths[1]), summary]
    opened: list[Any] = []
    try:
        for s in sinks:
            opened.append(s)
            s.open(ctx)
            s.write(image, result)
        if len(paths) > 2:
            from ..inference.overlay import annotate

            ok, buf = cv2.imencode(paths[2].suffix, annotate(image, result))
            if not ok:
                raise FerlabError(f"could not encode the annotated copy of {item.source}")
            write_bytes(paths[2], buf.tobytes())
    except BaseException:
        for s in opened:
            getattr(s, "abort", s.close)()
        raise
    for s in opened:
        s.close()
    return 1


def process_input(rec: Any, item: BatchInput, out: str | os.PathLike[str], *, video: bool = False,
                  max_frames: int | None = None, progress: Any = None) -> dict[str, Any]:
    """Run ``rec`` (a :class:`~ferlab.inference.Recognizer`) on one input; write its outputs
    under ``out``; return its manifest row (``status`` done or failed, never an exception)."""
    from ..inference.sinks import CsvSink, JsonlSink, VideoSink

    out = Path(out)
    names = output_names(item, video)
    paths = [out / n for n in names]
    summary = SummarySink(rec.class_names)
    row: dict[str, Any] = {"key": item.key, "input": item.source, "kind": item.kind, "status": "failed", "error": "",
                           "frames": 0, "faces": 0, "tracks": 0, "seconds": 0.0, "outputs": [], "summary": []}
    t0 = time.perf_counter()
    keep_outputs = False
    try:
        if item.kind == "image":
            _photo(rec, item, paths, summary)
            row.update(status="done", frames=1, faces=summary.faces)
        else:
            sinks: list[Any] = [JsonlSink(paths[0]), CsvSink(paths[1])]
            if video:
                sinks.append(VideoSink(paths[2]))
            sinks.append(summary)
            if progress is not None:
                sinks.append(ProgressReport(progress))
            run = rec.stream(item.source, sinks=sinks, max_frames=max_frames, allow_empty=False).run(
                handle_sigint=False)
            row.update(frames=run.frames, faces=run.faces, tracks=run.tracks)
            if run.interrupted:
                row["error"] = f"interrupted after {run.frames} frames"
            elif run.truncated:
                keep_outputs = True
                row["error"] = (f"truncated or damaged: ended after {run.frames_read} of {run.expected_frames} "
                                "frames (the outputs hold the frames read)")
            else:
                row["status"] = "done"
    except BaseException as exc:  # noqa: BLE001 - one bad input must never stop the batch
        row["error"] = _one_line(exc) or type(exc).__name__
        if isinstance(exc, (SystemExit,)):
            raise
    row["seconds"] = round(time.perf_counter() - t0, 3)
    if row["status"] == "done" or keep_outputs:
        row["outputs"] = [n for n, p in zip(names, paths) if p.exists()]
        row["summary"] = summary.rows() if row["status"] == "done" else []
    else:  # no stale result of an earlier run may stand beside a failure
        for p in paths:
            p.unlink(missing_ok=True)
    row["tracks"] = max(row["tracks"], len(summary.tracks))
    row["peak_rss_mb"] = _peak_rss_mb()
    row["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return row


def limit_threads(threads: int) -> None:
    """One worker, ``threads`` cores: OpenCV (YuNet, resizing), FFmpeg decoding and any OpenMP
    code stay within it, so N workers on N cores do not fight over them."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("OPENCV_FFMPEG_THREADS", str(threads))
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", f"threads;{threads}")
    import cv2

    cv2.setNumThreads(threads)


class Worker:
    """One batch worker (a Ray actor in ``ferlab batch``): the model is loaded once, here."""

    def __init__(self, options: dict[str, Any], threads: int = 1, progress: Any = None) -> None:
        self.progress = progress
        self.error: str | None = None
        self.rec: Any = None
        limit_threads(threads)
        try:
            from ..inference.options import InferenceOptions
            from ..inference.recognizer import Recognizer

            self.rec = Recognizer.from_pretrained(options=InferenceOptions(**{**options, "threads": threads}))
        except BaseException as exc:  # noqa: BLE001 - reported by ready(), as one line
            self.error = _one_line(exc)
        try:
            import ray

            self.node = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - not in Ray
            self.node = socket.gethostname()

    def ready(self) -> dict[str, Any]:
        return {"error": self.error, "node": self.node, "pid": os.getpid(), "host": socket.gethostname()}

    def process(self, item: BatchInput, out: str, video: bool = False, max_frames: int | None = None
                ) -> dict[str, Any]:
        if self.rec is None:
            return {"key": item.key, "input": item.source, "kind": item.kind, "status": "failed",
                    "error": f"the model could not be loaded: {self.error}", "frames": 0, "faces": 0,
                    "tracks": 0, "seconds": 0.0, "outputs": [], "summary": []}
        row = process_input(self.rec, item, out, video=video, max_frames=max_frames, progress=self.progress)
        row["classes"] = list(self.rec.class_names)
        row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        row["node"] = self.node
        return row
