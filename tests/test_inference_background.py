"""Read-ahead and background encoding: order kept, errors surface in the loop, nothing leaks."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import read_video
from ferlab.inference.background import BackgroundWriter, ReadAhead


def test_read_ahead_keeps_order_and_ends() -> None:
    assert list(ReadAhead(iter(range(100)), depth=3)) == list(range(100))


def test_read_ahead_raises_the_sources_error_in_the_consumer() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for x in ReadAhead(source()):
            got.append(x)
    assert got == [1]


def test_read_ahead_close_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    reader = ReadAhead(source(), depth=2)
    it = iter(reader)
    assert [next(it), next(it)] == [0, 1]
    it.close()  # what a consumer that stops early does
    assert not reader._thread.is_alive() and closed.is_set()


def test_background_writer_writes_all_in_order_and_reports_errors() -> None:
    out: list[int] = []
    w = BackgroundWriter(out.append, depth=2)
    for i in range(50):
        w.put(i)
    w.close()
    assert out == list(range(50))

    def fail(x: int) -> None:
        if x == 3:
            raise OSError("no space left")

    w = BackgroundWriter(fail, depth=1)
    with pytest.raises(OSError, match="no space left"):
        for i in range(100):
            w.put(i)
        w.close()
    w.abort()
    assert not w._thread.is_alive()


def test_video_output_equals_the_frames_drawn(tmp_path: Path, samples_dir: Path) -> None:
    """With decoding ahead and encoding behind, ``ferlab video -o`` still writes every frame,
    in order: the output decodes to as many frames as were read, each matching the drawn one."""
    from ferlab.inference import Recognizer
    from ferlab.inference.sinks import VideoSink

    src = samples_dir / "short_hamilton_clip.mp4"
    rec = Recognizer.from_pretrained("fernet")
    drawn: list[np.ndarray] = []

    class Keep:
        def open(self, ctx):  # noqa: ANN001
            self.ctx = ctx

        def write(self, frame, result):  # noqa: ANN001
            drawn.append(self.ctx.annotated(frame, result))

        def close(self) -> None:
            pass

    out = tmp_path / "out.avi"  # MJPG: near-lossless enough to match frames one by one
    summary = rec.stream(src, max_frames=40, sinks=[VideoSink(out), Keep()]).run(handle_sigint=False)
    back = read_video(out)
    assert summary.frames == len(drawn) == len(back) == 40
    errs = [float(np.abs(a.astype(np.int16) - b).mean()) for a, b in zip(drawn, back)]
    assert max(errs) < 3.0  # each decoded frame is its own drawn frame (a neighbour differs more)
