"""`ferlab predict | video | live`: outputs, and one-line errors with exit code 2 on bad input."""
from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferlab.cli import main
from ferlab.inference import Recognizer
from ferlab.inference.preprocess import load_image
from ferlab.inference.recognizer import Session
from ferlab.inference.sinks import CsvSink, JsonlSink, PlotSink, VideoSink

N_FRAMES = 24


@pytest.fixture(autouse=True)
def _private_onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """backend auto caches its ONNX export; keep that out of the user's ~/.cache."""
    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path_factory.getbasetemp() / "ferlab-cache"))


@pytest.fixture(scope="module")
def clip(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short 400x240 MJPG clip with two faces moving slowly (small, so tests stay fast)."""
    face = cv2.resize(load_image(samples_dir / "photos" / "obama_small.jpg"), (160, 120), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("clip") / "two_faces.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (400, 240))
    for t in range(N_FRAMES):
        f = np.full((240, 400, 3), 70, np.uint8)
        f[30:150, 10 + t:170 + t] = face
        f[100 + t // 2:220 + t // 2, 220:380] = face
        w.write(f)
    w.release()
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_clean_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert line, err
    for n in needles:
        assert n in err, err


def test_video_outputs_match_frames(clip: Path, tiny_checkpoint: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, jl, cs, plot = tmp_path / "o.mp4", tmp_path / "o.jsonl", tmp_path / "o.csv", tmp_path / "o.png"
    rc, _, err = _run(["video", str(clip), "-o", str(out), "--jsonl", str(jl), "--csv", str(cs), "--plot", str(plot),
                       "--no-window", "--quiet", "--model", str(tiny_checkpoint), "--backend", "torch"], capsys)
    assert rc == 0, err
    records = [json.loads(line) for line in jl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(N_FRAMES))  # one JSON object per frame
    assert records[1]["time"] == pytest.approx(1 / 25)
    rows = list(csv.DictReader(cs.open()))
    assert len(rows) == sum(len(r["faces"]) for r in records)  # one row per face
    # each face is shown from its third detection (a confirmed track): two frames less per face
    assert sum(len(r["faces"]) for r in records) >= 2 * N_FRAMES - 6
    ids = {f["track_id"] for r in records for f in r["faces"]}
    assert ids == {1, 2}  # two people, two stable ids
    face = records[5]["faces"][0]
    assert set(face) == {"box", "track_id", "label", "confidence", "probs", "smoothed", "uncertain", "uncertainty"}
    assert {"frame", "time", "track_id", "x", "y", "w", "h", "label", "p_happy", "s_happy"} <= set(rows[0])
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES and cap.read()[0]
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*.tmp*"))  # no temp files left behind


def test_video_bad_inputs(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = ["--model", str(tiny_checkpoint), "--no-window", "--quiet", "--jsonl", str(tmp_path / "x.jsonl")]
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    for path, needle in ((empty, "empty"), (junk, "could not be opened"), (tmp_path / "missing.mp4", "not found")):
        rc, _, err = _run(["video", str(path), *model], capsys)
        _assert_clean_error(rc, err, path.name, needle)
    assert not (tmp_path / "x.jsonl").exists()  # nothing written for a failed input


def test_truncated_video_keeps_what_was_read(clip: Path, tiny_checkpoint: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])  # AVI header promises N_FRAMES, half the data is gone
    jl, out = tmp_path / "cut.jsonl", tmp_path / "cut.mp4"
    rc, _, err = _run(["video", str(cut), "-o", str(out), "--jsonl", str(jl), "--no-window", "--quiet",
                       "--model", str(tiny_checkpoint), "--backend", "torch"], capsys)
    assert rc == 0 and "ended after" in err and "truncated" in err
    lines = jl.read_text().splitlines()
    assert 0 < len(lines) < N_FRAMES and all(json.loads(ln) for ln in lines)
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == len(lines)


@pytest.mark.parametrize("how", ["exception", "signal"])
def test_interrupt_flushes_valid_outputs(how: str, clip: Path, tiny_checkpoint: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C mid-video: the frames done so far are written as complete files."""
    rec = Recognizer.from_pretrained(tiny_checkpoint, backend="torch")
    original = Session.process

    def process(self: Session, frame: np.ndarray, timestamp: float | None = None):  # noqa: ANN202
        if self.frame_index == 10:
            if how == "exception":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)  # handled: finish this frame, then stop
        return original(self, frame, timestamp)

    monkeypatch.setattr(Session, "process", process)
    jl, cs, out = tmp_path / "i.jsonl", tmp_path / "i.csv", tmp_path / "i.mp4"
    summary = rec.stream(clip, sinks=[VideoSink(out), JsonlSink(jl), CsvSink(cs)]).run()
    done = 10 if how == "exception" else 11
    assert summary.interrupted and summary.frames == done
    records = [json.loads(ln) for ln in jl.read_text().splitlines()]
    assert len(records) == done
    assert len(list(csv.DictReader(cs.open()))) == sum(len(r["faces"]) for r in records)
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == done
    assert not list(tmp_path.glob(".*.tmp*"))


def test_live_without_camera(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(["live", "--camera", "99", "--no-window", "--model", str(tiny_checkpoint)], capsys)
    _assert_clean_error(rc, err, "camera 99 could not be opened")


def test_live_needs_gui_or_no_window(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ferlab.inference.capture import gui_available

    if gui_available():
        pytest.skip("this OpenCV build has windows")
    rc, _, err = _run(["live", "--model", str(tiny_checkpoint)], capsys)
    _assert_clean_error(rc, err, "--no-window")


def test_predict_outputs(samples_dir: Path, tiny_checkpoint: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    photos = samples_dir / "photos"
    out, ann = tmp_path / "faces.json", tmp_path / "ann"
    rc, stdout, err = _run(["predict", str(photos / "obama.jpg"), str(photos / "two_people.jpg"),
                            "--out", str(out), "--annotate", str(ann), "--model", str(tiny_checkpoint)], capsys)
    assert rc == 0, err
    data = json.loads(out.read_text())
    assert [len(d["faces"]) for d in data] == [1, 2]
    assert data[0]["faces"][0]["track_id"] is None
    assert sorted(p.name for p in ann.iterdir()) == ["obama.jpg", "two_people.jpg"]
    rc, stdout, err = _run(["predict", str(photos / "obama_small.jpg"), "--model", str(tiny_checkpoint)], capsys)
    assert rc == 0 and len(json.loads(stdout.splitlines()[0])["faces"]) == 1  # JSON lines on stdout


def test_predict_bad_inputs(samples_dir: Path, tiny_checkpoint: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("definitely not a PNG")
    model = ["--model", str(tiny_checkpoint)]
    rc, _, err = _run(["predict", str(bad), *model], capsys)
    _assert_clean_error(rc, err, "bad.png", "not a readable image")
    rc, _, err = _run(["predict", str(tmp_path / "nope.jpg"), *model], capsys)
    _assert_clean_error(rc, err, "nope.jpg")
    # a folder with one good and one bad image: the good one is still reported, exit 2
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a_bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cv2.imwrite(str(folder / "b_good.png"), cv2.imread(str(samples_dir / "photos" / "obama_small.jpg")))
    out = tmp_path / "mixed.json"
    rc, _, err = _run(["predict", str(folder), "--out", str(out), *model], capsys)
    assert rc == 2 and "a_bad.jpg" in err and "Traceback" not in err
    data = json.loads(out.read_text())
    assert "error" in data[0] and len(data[1]["faces"]) == 1
    rc, _, err = _run(["predict", str(samples_dir / "photos" / "obama.jpg"), "--model", str(tmp_path / "no.safetensors")],
                      capsys)
    _assert_clean_error(rc, err, "no.safetensors")


@pytest.mark.slow
def test_memory_flat_on_long_video(tiny_checkpoint: Path, samples_dir: Path, tmp_path: Path) -> None:
    """Peak Python/NumPy allocations do not grow with the number of frames processed."""
    import tracemalloc

    face = cv2.resize(load_image(samples_dir / "photos" / "obama_small.jpg"), (120, 90))
    path = tmp_path / "long.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (240, 160))
    for t in range(1500):
        f = np.full((160, 240, 3), 70, np.uint8)
        x = 10 + abs(t % 200 - 100)  # back and forth: one person, one track, however long
        f[30:120, x:x + 120] = face
        w.write(f)
    w.release()
    rec = Recognizer.from_pretrained(tiny_checkpoint, backend="torch")

    def peak(frames: int) -> int:
        tracemalloc.start()
        o = tmp_path / f"o{frames}"
        sinks = [VideoSink(f"{o}.mp4"), JsonlSink(f"{o}.jsonl"), CsvSink(f"{o}.csv"), PlotSink(f"{o}.png")]
        rec.stream(path, sinks=sinks, max_frames=frames).run()
        _, p = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return p

    peak(30)  # warm-up: one-time allocations (imports, matplotlib, codec) are not growth
    short, long = peak(150), peak(1500)
    assert long < short * 1.2 + 1_000_000, (short, long)  # 10x the frames, ~same peak


def test_stream_api_yields_frames(clip: Path, tiny_checkpoint: Path) -> None:
    rec = Recognizer.from_pretrained(tiny_checkpoint, backend="torch")
    results = list(rec.stream(clip, max_frames=5, smoothing="ema"))
    assert [r.frame for r in results] == list(range(5))
    assert results[4].time == pytest.approx(4 / 25)
    assert all(f.smoothed is not None for r in results for f in r.faces)


def test_stream_with_file_sinks_writes_jsonl_and_csv(clip: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The one loop with the file sinks: per-frame JSONL and per-face CSV that agree."""
    from ferlab.inference.sinks import file_sinks

    rec = Recognizer.from_pretrained(tiny_checkpoint, backend="torch")
    jl, cs = tmp_path / "w.jsonl", tmp_path / "w.csv"
    summary = rec.stream(clip, sinks=file_sinks(jsonl=jl, csv_path=cs), max_frames=6, window=3).run()
    assert summary.frames == 6 and summary.outputs == [str(jl), str(cs)]
    records = [json.loads(line) for line in jl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(6))
    assert len(list(csv.DictReader(cs.open()))) == sum(len(r["faces"]) for r in records)


def test_demo_on_a_video(clip: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ferlab demo` is registered by the inference CLI and runs the same loop."""
    out = tmp_path / "demo"
    rc, stdout, err = _run(["demo", "--source", str(clip), "--out", str(out), "--no-window",
                            "--model", str(tiny_checkpoint), "--backend", "torch"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["demo.csv", "demo.jsonl", "demo.mp4", "emotions.png"]
    assert len(out.joinpath("demo.jsonl").read_text().splitlines()) == N_FRAMES
    assert f"processed {N_FRAMES} frames" in stdout and "face #1" in stdout
