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

A long video may come as :class:`~ferlab.batch.segments.Segment` tasks (see that module):
each writes its part under ``.ferlab-batch/parts/`` through :class:`SegmentView` sinks (no
warm-up frames, track ids offset per segment), and :func:`merge_segments` joins the parts
into the input's outputs once all are done.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FerlabError
from ..fileio import atomic_path
from .inputs import BatchInput
from .segments import Segment

RESULTS = "results"  # the per-input outputs, under the output folder
PARTS = ".ferlab-batch/parts"  # segments' outputs until they are merged (manifest.STATE_DIR)


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


def part_dir(out: Path, item: BatchInput) -> Path:
    return out / PARTS / item.key


def part_paths(out: Path, item: BatchInput, index: int) -> list[Path]:
    """The JSONL and CSV segment ``index`` writes, merged later by :func:`merge_segments`."""
    return [part_dir(out, item) / f"{index:05d}{ext}" for ext in (".jsonl", ".csv")]


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

    def absorb(self, other: SummarySink) -> None:
        """Add another segment's counts (its track ids are its own: see segments.TRACK_ID_STRIDE)."""
        self.frames += other.frames
        self.faces += other.faces
        self.total = self.total + other.total  # not in place: what Ray returns is read-only
        self.end = max(self.end, other.end)
        self.tracks.update(other.tracks)

    def rows(self) -> list[dict[str, Any]]:
        out = [self._row("", self.frames, self.faces, self.total, 0.0, self.end)]
        for tid in sorted(self.tracks):
            n, s, a, b = self.tracks[tid]
            out.append(self._row(str(tid), n, n, s, a, b))
        return out


def offset_tracks(result: Any, offset: int) -> Any:
    """A copy of a FrameResult with every track id moved by ``offset`` (the result itself at 0)."""
    if not offset:
        return result
    faces = [f if f.track_id is None else dataclasses.replace(f, track_id=f.track_id + offset)
             for f in result.faces]
    return dataclasses.replace(result, faces=faces)


class SegmentView:
    """A sink as one segment feeds it: the warm-up frames before ``start`` are not passed
    on, and track ids are moved by ``offset`` so they stay unique in the whole video."""

    def __init__(self, sink: Any, segment: Segment) -> None:
        self.sink, self.start, self.offset = sink, segment.start, segment.id_offset

    def open(self, ctx: Any) -> None:
        self.sink.open(ctx)

    def write(self, frame: Any, result: Any) -> None:
        if result.frame >= self.start:
            self.sink.write(frame, offset_tracks(result, self.offset))

    def close(self) -> None:
        self.sink.close()

    def abort(self) -> None:
        getattr(self.sink, "abort", self.sink.close)()


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
    """A local photo or a URL's, through the same checked decode as every entry point
    (the header's pixel count against the limit first: an over-size photo fails its item)."""
    from ..inference.preprocess import decode_image_bytes, load_image

    if "://" not in source:
        return load_image(source)
    from ..api import fetch_url

    return decode_image_bytes(fetch_url(source, timeout=60), source)


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
                  max_frames: int | None = None, progress: Any = None, segment: Segment | None = None,
                  batch_frames: int = 1) -> dict[str, Any]:
    """Run ``rec`` (a :class:`~ferlab.inference.Recognizer`) on one input, or one ``segment``
    of a video; write its outputs (a segment: its parts) under ``out``; return its manifest
    row (``status`` done or failed, never an exception). A segment's row has ``segment``
    (its index) and, when done, ``partial`` (its :class:`SummarySink`) for :func:`merge_segments`.
    ``batch_frames``: frames whose faces go through the network in one call (GPU workers)."""
    from ..inference.capture import Capture
    from ..inference.sinks import CsvSink, JsonlSink, VideoSink

    out = Path(out)
    names = output_names(item, video) if segment is None else []
    paths = [out / n for n in names] if segment is None else part_paths(out, item, segment.index)
    summary = SummarySink(rec.class_names)
    row: dict[str, Any] = {"key": item.key, "input": item.source, "kind": item.kind, "status": "failed", "error": "",
                           "frames": 0, "faces": 0, "tracks": 0, "seconds": 0.0, "outputs": [], "summary": [],
                           "segments": 1}
    t0 = time.perf_counter()
    keep_outputs = False
    try:
        if item.kind == "image":
            _photo(rec, item, paths, summary)
            row.update(status="done", frames=1, faces=summary.faces)
        else:
            sinks: list[Any] = [JsonlSink(paths[0]), CsvSink(paths[1])]
            if video and segment is None:  # segments write no video (plan_segments never splits then)
                sinks.append(VideoSink(paths[2]))
            sinks.append(summary)
            source: Any = item.source
            if segment is not None:
                sinks = [SegmentView(s, segment) for s in sinks]
                source, max_frames = Capture.open(item.source, start=segment.read_from), segment.read_count
            if progress is not None:
                sinks.append(ProgressReport(progress))
            run = rec.stream(source, sinks=sinks, max_frames=max_frames, allow_empty=False,
                             batch_frames=batch_frames).run(handle_sigint=False)
            row.update(frames=summary.frames, faces=summary.faces)  # a segment: its own frames, no warm-up
            if run.interrupted:
                row["error"] = f"interrupted after {run.frames} frames"
            elif run.truncated:
                keep_outputs = segment is None  # a part alone is no output
                row["error"] = (f"truncated or damaged: ended after {run.frames_read} of {run.expected_frames} "
                                "frames" + (" (the outputs hold the frames read)" if keep_outputs else ""))
            else:
                row["status"] = "done"
    except BaseException as exc:  # noqa: BLE001 - one bad input must never stop the batch
        row["error"] = _one_line(exc) or type(exc).__name__
        if isinstance(exc, (SystemExit,)):
            raise
    row["seconds"] = round(time.perf_counter() - t0, 3)
    if segment is not None:
        row["segment"] = segment.index
        if row["status"] == "done":
            row["partial"] = summary
        else:
            for p in paths:
                p.unlink(missing_ok=True)
    elif row["status"] == "done" or keep_outputs:
        row["outputs"] = [n for n, p in zip(names, paths) if p.exists()]
        row["summary"] = summary.rows() if row["status"] == "done" else []
    else:  # no stale result of an earlier run may stand beside a failure
        for p in paths:
            p.unlink(missing_ok=True)
    row["tracks"] = max(row["tracks"], len(summary.tracks))
    row["peak_rss_mb"] = _peak_rss_mb()
    row["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return row


def _concatenate(target: Path, parts: list[Path], *, header: bool) -> None:
    """``parts`` one after the other into ``target``, atomically, in blocks (flat memory);
    ``header``: each part starts with the same header line, kept from the first only."""
    with atomic_path(target) as tmp, open(tmp, "wb") as dst:
        for i, part in enumerate(parts):
            with open(part, "rb") as src:
                if header and i:
                    src.readline()
                shutil.copyfileobj(src, dst)


def merge_segments(out: str | os.PathLike[str], item: BatchInput, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The input's row from the rows of all its segments (every one done): their parts joined,
    in order, into the input's JSONL and CSV; frames, faces, tracks and seconds summed; the
    summary merged (restarted tracks stay separate tracks). The parts are deleted."""
    out = Path(out)
    rows = sorted(rows, key=lambda r: r["segment"])
    parts = [part_paths(out, item, r["segment"]) for r in rows]
    names = output_names(item, False)
    for k, name in enumerate(names):
        _concatenate(out / name, [p[k] for p in parts], header=name.endswith(".csv"))
    summary: SummarySink = rows[0]["partial"]
    for r in rows[1:]:
        summary.absorb(r["partial"])
    shutil.rmtree(part_dir(out, item), ignore_errors=True)

    def joined(key: str) -> str:
        return ";".join(dict.fromkeys(str(r[key]) for r in rows if r.get(key)))

    return {**{k: v for k, v in rows[-1].items() if k not in ("partial", "segment")},
            "frames": sum(r["frames"] for r in rows), "faces": sum(r["faces"] for r in rows),
            "tracks": sum(r["tracks"] for r in rows), "seconds": round(sum(r["seconds"] for r in rows), 3),
            "outputs": names, "summary": summary.rows(), "segments": len(rows), "worker": joined("worker"),
            "node": joined("node"), "peak_rss_mb": max((r.get("peak_rss_mb") or 0) for r in rows) or None}


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

    def __init__(self, options: dict[str, Any], threads: int = 1, progress: Any = None,
                 batch_frames: int = 1, max_pixels: int | None = None) -> None:
        self.progress = progress
        self.batch_frames = int(batch_frames)
        self.error: str | None = None
        self.rec: Any = None
        limit_threads(threads)
        if max_pixels is not None:  # the driver's image-size limit, also on nodes that lack its environment
            from ..inference.preprocess import MAX_PIXELS_ENV

            os.environ[MAX_PIXELS_ENV] = str(int(max_pixels))
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

    def process(self, item: BatchInput, out: str, video: bool = False, max_frames: int | None = None,
                segment: Segment | None = None) -> dict[str, Any]:
        if self.rec is None:
            return {"key": item.key, "input": item.source, "kind": item.kind, "status": "failed",
                    "error": f"the model could not be loaded: {self.error}", "frames": 0, "faces": 0,
                    "tracks": 0, "seconds": 0.0, "outputs": [], "summary": []}
        row = process_input(self.rec, item, out, video=video, max_frames=max_frames, progress=self.progress,
                            segment=segment, batch_frames=self.batch_frames)
        row["classes"] = list(self.rec.class_names)
        row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        row["node"] = self.node
        return row
