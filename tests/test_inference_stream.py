"""The one frame loop (``Stream``) and its sinks, without a model: a stand-in session returns
one face per frame, so these tests need no checkpoint, detector or sample media."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferlab.constants import CLASS_NAMES
from ferlab.errors import FerlabError
from ferlab.inference.capture import Capture, gui_available
from ferlab.inference.results import Face, FrameResult
from ferlab.inference.sinks import (CsvSink, JsonlSink, PlotSink, ProgressSink, RecordsSink, VideoSink, WindowSink,
                                    csv_header)
from ferlab.inference.stream import RunSummary, StopStream, Stream

N = 12


class FakeSession:
    """One face per frame, its box drifting right; ``fail_at`` raises a bug-like error."""

    class recognizer:  # noqa: N801 - what Stream reads from a session
        class_names = list(CLASS_NAMES)

    def __init__(self, fail_at: int | None = None, interrupt_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at, self.interrupt_at = fail_at, interrupt_at

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        if self.calls == self.fail_at:
            raise ValueError("a bug")
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        p = np.full(len(CLASS_NAMES), 0.1)
        p[self.calls % len(CLASS_NAMES)] = 0.4
        face = Face((2 + self.calls, 4, 20, 20), p / p.sum(), CLASS_NAMES, track_id=1, smoothed=p / p.sum())
        self.calls += 1
        return FrameResult(self.calls - 1, float(timestamp or 0.0), [face])


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for t in range(N):
        w.write(np.full((48, 64, 3), 20 * t % 255, np.uint8))
    w.release()
    return path


def _sinks(tmp: Path) -> list:
    return [VideoSink(tmp / "o.avi"), JsonlSink(tmp / "o.jsonl"), CsvSink(tmp / "o.csv"), PlotSink(tmp / "o.png")]


def test_iterating_yields_every_frame_and_closes_sinks(video: Path, tmp_path: Path) -> None:
    stream = Stream(FakeSession(), video, sinks=_sinks(tmp_path))
    results = list(stream)
    assert [r.frame for r in results] == list(range(N))
    assert results[3].time == pytest.approx(0.3)
    summary = stream.summary
    assert isinstance(summary, RunSummary)
    assert (summary.frames, summary.frames_read, summary.faces, summary.tracks) == (N, N, N, 1)
    assert summary.outputs == [str(tmp_path / f"o.{e}") for e in ("avi", "jsonl", "csv", "png")]
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == N
    rows = list(csv.reader((tmp_path / "o.csv").open()))
    assert rows[0] == csv_header(list(CLASS_NAMES)) and len(rows) == N + 1
    assert int(cv2.VideoCapture(str(tmp_path / "o.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == N
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_a_capture_opened_mid_file_keeps_the_files_indices(video: Path) -> None:
    """A batch segment's view: frames from ``start`` carry their own index and time, and the
    count the header promises is counted from there (so a segment is not 'truncated')."""
    records = RecordsSink()
    summary = Stream(FakeSession(), Capture.open(video, start=5), sinks=[records]).run(handle_sigint=False)
    assert [r["frame"] for r in records.records] == list(range(5, N))
    assert records.records[0]["time"] == pytest.approx(0.5)
    assert (summary.expected_frames, summary.frames_read, summary.truncated) == (N - 5, N - 5, False)
    part = Stream(FakeSession(), Capture.open(video, start=5), max_frames=3).run(handle_sigint=False)
    assert (part.expected_frames, part.frames, part.truncated) == (3, 3, False)


def test_breaking_out_early_still_writes_complete_files(video: Path, tmp_path: Path) -> None:
    stream = Stream(FakeSession(), video, sinks=_sinks(tmp_path))
    for result in stream:
        if result.frame == 4:
            break
    stream.close()
    lines = (tmp_path / "o.jsonl").read_text().splitlines()
    assert [json.loads(ln)["frame"] for ln in lines] == [0, 1, 2, 3, 4]
    assert int(cv2.VideoCapture(str(tmp_path / "o.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert not list(tmp_path.glob(".*"))


def test_a_crash_leaves_no_file_under_the_target_name(video: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a bug"):
        Stream(FakeSession(fail_at=5), video, sinks=_sinks(tmp_path)).run()
    assert list(tmp_path.iterdir()) == []  # neither targets nor temporary files


def test_ctrl_c_inside_the_loop_is_a_clean_stop(video: Path, tmp_path: Path) -> None:
    summary = Stream(FakeSession(interrupt_at=7), video, sinks=_sinks(tmp_path)).run()
    assert summary.interrupted and summary.frames == 7
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 7


def test_frame_filter_samples_and_stops(video: Path) -> None:
    """The server's use: skip frames before any work, stop with a reason; records keep the
    source frame index."""
    taken: list[int] = []

    def every_third(index: int, t: float) -> bool:
        if len(taken) == 3:
            raise StopStream("enough")
        if index % 3:
            return False
        taken.append(index)
        return True

    records = RecordsSink()
    session = FakeSession()
    summary = Stream(session, video, sinks=[records], frame_filter=every_third).run(handle_sigint=False)
    assert [r["frame"] for r in records.records] == [0, 3, 6]
    assert session.calls == 3  # skipped frames were never processed
    assert summary.stopped and summary.stop_reason == "enough" and not summary.truncated
    assert (summary.frames, summary.frames_read) == (3, 8)  # frame 7 was read, then the filter stopped


def test_a_sink_can_stop_the_stream_and_the_others_get_that_frame(video: Path, tmp_path: Path) -> None:
    class StopAfter:
        def open(self, ctx: object) -> None:
            pass

        def write(self, frame: np.ndarray, result: FrameResult) -> None:
            if result.frame == 2:
                raise StopStream("window")

        def close(self) -> None:
            pass

    jl = tmp_path / "s.jsonl"
    summary = Stream(FakeSession(), video, sinks=[StopAfter(), JsonlSink(jl)]).run()
    assert summary.stopped and summary.stop_reason == "window" and summary.frames == 3
    assert len(jl.read_text().splitlines()) == 3


def test_jsonl_to_an_open_stream(video: Path) -> None:
    buf = io.StringIO()
    summary = Stream(FakeSession(), video, sinks=[JsonlSink(buf), ProgressSink(enabled=False)], max_frames=4).run()
    assert [json.loads(ln)["frame"] for ln in buf.getvalue().splitlines()] == [0, 1, 2, 3]
    assert summary.outputs == [] and summary.expected_frames == 4


def test_empty_source_and_bad_outputs(tmp_path: Path) -> None:
    with pytest.raises(FerlabError, match="use a .mp4 or .avi"):
        VideoSink(tmp_path / "out.gif")
    with pytest.raises(FerlabError, match="not found"):
        Stream(FakeSession(), tmp_path / "missing.mp4").run()
    if not gui_available():  # headless OpenCV: a window is refused with the way out
        with pytest.raises(FerlabError, match="--no-window"):
            WindowSink()


def test_an_opened_capture_is_accepted_and_released(video: Path) -> None:
    capture = Capture.open(video)
    assert (capture.info.width, capture.info.height, capture.info.frame_count) == (64, 48, N)
    assert len(list(Stream(FakeSession(), capture, max_frames=2))) == 2
    assert not capture.cap.isOpened()
