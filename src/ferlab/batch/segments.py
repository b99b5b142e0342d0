"""Long videos split into time segments, so that one long recording does not keep one worker
busy while the others idle.

**When** (:func:`segment_counts`): with ``segment_seconds=None`` (the default, automatic) the
aim is at least two tasks per worker of similar length. The target length is ``max(60 s,
total duration of the videos / (2 x workers))`` and a video is cut into ``floor(duration /
target)`` equal segments, so every segment lasts at least a minute and a video is split only
when it is long against the whole batch: one long video on many workers, few videos on many
workers, or one video that dominates an archive. One worker never splits. With
``segment_seconds=S > 0`` every video longer than S is cut into ``ceil(duration / S)`` equal
segments of at most S seconds; ``0`` never splits. A video is never split when its length or
frame rate is unknown (OpenCV's ``CAP_PROP_FRAME_COUNT`` / ``CAP_PROP_FPS``, read on the
driver), when it is a URL, or when annotated videos are asked for (``--video``: the parts of
an .mp4 are not concatenated).

**How**: each segment is one task. It seeks to its first frame
(:func:`ferlab.inference.capture.seek`, frame-accurate) and reports frames [start, end) with
the video's own frame indices and timestamps; the last segment reads to the end of the file,
whatever the header promised. Before ``start`` it decodes and processes a **warm-up** of
:func:`warmup_frames` frames without writing them, so tracks are confirmed, lost faces
re-acquired and smoothing windows filled as in one unsplit run: apart from track ids (and
rare tracker decisions that look further back than the warm-up), a split video's outputs equal
the unsplit ones.

**Track ids restart at every border**: segment k (from 0) numbers its tracks
``k * TRACK_ID_STRIDE + n`` (n = 1, 2, ...), so ids stay unique in the whole video and say
which segment they belong to; a person seen across a border gets a new id there (and so a
row of its own per segment in summary.csv and in the manifest's track count). Segment 0 keeps
the ids of an unsplit run.

**Outputs**: segments write their JSONL/CSV under ``.ferlab-batch/parts/<key>/``; when all
are done the driver concatenates them, in order, into ``results/<key>.jsonl`` / ``.csv``
(atomically) and records one manifest row (frames, faces, tracks and worker seconds
summed). A failed segment fails its input with that segment's error and no outputs; a rerun
redoes all of a failed input's segments (parts are never kept across runs).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .inputs import BatchInput

MIN_SEGMENT_S = 60.0  # automatic splitting never makes shorter segments
TRACK_ID_STRIDE = 1_000_000  # segment k's track ids are k * stride + 1, 2, ...
PROBE_THREADS = 8  # videos probed at once on the driver (OpenCV releases the GIL)


@dataclass(frozen=True)
class Segment:
    """Frames [start, end) of a video, part ``index`` of ``count``; ``end`` None = to the end
    of the file. ``warmup``: frames before ``start`` processed without output."""

    index: int
    count: int
    start: int
    end: int | None
    warmup: int = 0

    @property
    def read_from(self) -> int:
        return max(0, self.start - self.warmup)

    @property
    def read_count(self) -> int | None:
        """Frames to read from :attr:`read_from` (None: to the end)."""
        return None if self.end is None else self.end - self.read_from

    @property
    def id_offset(self) -> int:
        return self.index * TRACK_ID_STRIDE

    def describe(self) -> str:
        last = "end" if self.end is None else str(self.end - 1)
        return f"segment {self.index + 1} of {self.count} (frames {self.start}-{last})"


def segment_counts(durations: Sequence[float | None], workers: int, segment_seconds: float | None = None,
                   ) -> list[int]:
    """How many segments each video is cut into (1 = not split), by the rule of the module
    docstring; ``durations`` in seconds, None where unknown (never split)."""
    if segment_seconds is not None:
        if segment_seconds <= 0:
            return [1] * len(durations)
        return [1 if d is None else max(1, math.ceil(d / segment_seconds - 1e-9)) for d in durations]
    if workers < 2:
        return [1] * len(durations)
    target = max(MIN_SEGMENT_S, sum(d for d in durations if d is not None) / (2 * workers))
    return [1 if d is None else max(1, math.floor(d / target)) for d in durations]


def frame_bounds(frames: int, count: int, align: int = 1) -> list[int]:
    """``count + 1`` borders cutting ``frames`` into near-equal parts, inner ones on a multiple
    of ``align`` (``detect_every``, so detection rounds fall on the frames they would unsplit)."""
    inner = sorted({round(i * frames / count) // align * align for i in range(1, count)} - {0})
    return [0, *[b for b in inner if b < frames], frames]


def warmup_frames(options: Any) -> int:
    """Frames a segment processes before its start: enough for a face seen all along to be
    confirmed (``confirm`` detection rounds), for a face lost up to ``max_missed`` frames ago
    to be re-acquired, and for a smoothing window to fill; a multiple of ``detect_every``."""
    every = int(options.detect_every)
    need = max(int(options.window), int(options.max_missed) + int(options.confirm) * every)
    return math.ceil(need / every) * every


def probe(item: BatchInput) -> tuple[int, float] | None:
    """(frames, fps) of a local video from its header (cheap: nothing is decoded), or None
    when unknown, unreadable or a URL."""
    if item.kind != "video" or item.is_url:
        return None
    from ..errors import FerlabError
    from ..inference.capture import open_capture

    try:
        cap, info = open_capture(item.source)
    except FerlabError:
        return None  # fails with its own message on a worker
    cap.release()
    return (info.frame_count, info.fps) if info.frame_count and info.fps else None


def plan_segments(items: Sequence[BatchInput], workers: int, segment_seconds: float | None, *,
                  max_frames: int | None = None, options: Any) -> dict[str, list[Segment]]:
    """The segments of each video that is split (keyed by input key); inputs not split are absent."""
    if segment_seconds is not None and segment_seconds <= 0:
        return {}
    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        lengths = list(pool.map(probe, items))
    frames = [None if ln is None else min(ln[0], max_frames or ln[0]) for ln in lengths]
    durations = [None if n is None or ln is None else n / ln[1] for n, ln in zip(frames, lengths)]
    warmup = warmup_frames(options)
    plan: dict[str, list[Segment]] = {}
    for item, n, count in zip(items, frames, segment_counts(durations, workers, segment_seconds)):
        if n is None or count < 2:
            continue
        bounds = frame_bounds(n, min(count, n), int(options.detect_every))
        if len(bounds) < 3:
            continue
        k = len(bounds) - 1
        plan[item.key] = [Segment(i, k, a, b if i < k - 1 else max_frames, warmup)
                          for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    return plan
