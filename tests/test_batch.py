"""``ferlab batch`` on a local two-worker Ray: a few 20-frame clips cut from the bundled clip,
a corrupt, an empty and a truncated video, a folder of photos with an unreadable one; the
manifest and summary; a rerun that skips; the one-line message without Ray.

Ray is a hard requirement here (the ``dev`` extra includes ``cluster``): without it this
module fails at import instead of skipping. Ray starts once for the module (2 CPUs).
"""
from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import ray  # noqa: F401 - a missing Ray must fail this module, not skip it

from ferlab.batch import expand_inputs, run_batch
from ferlab.batch.manifest import MANIFEST_COLUMNS, read_csv, settings_hash
from ferlab.constants import CLASS_NAMES
from ferlab.errors import FerlabError

CLIP = Path(__file__).resolve().parents[1] / "src" / "ferlab" / "assets" / "sample_clip.mp4"
N = 20  # frames per clip


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


def _frames(start: int, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(CLIP))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    out = []
    while len(out) < n:
        ok, f = cap.read()
        assert ok, "the bundled clip is shorter than expected"
        out.append(f)
    cap.release()
    return out


def _write(path: Path, frames: list[np.ndarray], fourcc: str) -> Path:
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30, (w, h))
    for f in frames:
        wr.write(f)
    wr.release()
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    _write(root / "close.mp4", _frames(90, N), "mp4v")  # one performer, frontal close-up
    _write(root / "far.mp4", _frames(0, N), "mp4v")  # several small faces
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (root / "empty.mp4").write_bytes(b"")
    trunc = _write(root / "cut.avi", _frames(90, 24), "MJPG")
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    photos = root / "photos"
    photos.mkdir()
    for i, f in enumerate(_frames(150, 1) + _frames(180, 1)):
        cv2.imwrite(str(photos / f"still{i}.jpg"), f)
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


@pytest.fixture(scope="module")
def first(local_ray, media: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out")
    return run_batch([media], out, workers=2, video=True)


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in rows}


def test_every_input_has_a_row_and_bad_ones_fail_clearly(first) -> None:
    rows = _by_name(first.rows)
    assert set(rows) == {"close.mp4", "far.mp4", "corrupt.mp4", "empty.mp4", "cut.avi", "still0.jpg", "still1.jpg",
                         "broken.jpg"}
    assert first.workers == 2 and not first.ok and not first.interrupted and first.pending == 0
    for name in ("close.mp4", "far.mp4"):
        assert rows[name]["status"] == "done" and rows[name]["frames"] == N and rows[name]["faces"] > 0
    for name in ("still0.jpg", "still1.jpg"):
        assert rows[name]["status"] == "done" and rows[name]["frames"] == 1
    assert "could not be opened" in rows["corrupt.mp4"]["error"]
    assert "empty (0 bytes)" in rows["empty.mp4"]["error"]
    assert "truncated" in rows["cut.avi"]["error"] and rows["cut.avi"]["frames"] == 12
    assert "not a readable image" in rows["broken.jpg"]["error"]
    assert {r["status"] for r in first.failed} == {"failed"} and len(first.failed) == 4
    assert all("\n" not in r["error"] for r in first.rows)
    assert len({r["worker"] for r in first.rows}) == 2  # both workers took inputs


def test_outputs_are_complete_files(first) -> None:
    rows = _by_name(first.rows)
    close = rows["close.mp4"]
    files = {Path(o).suffix: first.out / o for o in close["outputs"]}
    assert set(files) == {".jsonl", ".csv", ".mp4"}
    lines = [json.loads(s) for s in files[".jsonl"].read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(N))
    with open(files[".csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == close["faces"] and table[0]["label"] in CLASS_NAMES
    assert cv2.VideoCapture(str(files[".mp4"])).get(cv2.CAP_PROP_FRAME_COUNT) == N
    photo = rows["still0.jpg"]
    assert any(o.endswith(".jpg") for o in photo["outputs"])  # the annotated copy
    assert rows["broken.jpg"]["outputs"] == [] and rows["corrupt.mp4"]["outputs"] == []
    assert not list((first.out / "results").glob(".*"))  # no temporary files left


def test_manifest_and_summary(first) -> None:
    manifest = read_csv(first.manifest)
    assert list(manifest[0]) == MANIFEST_COLUMNS
    assert {Path(r["input"]).name: r["status"] for r in manifest} == {
        Path(r["input"]).name: r["status"] for r in first.rows}
    close = next(r for r in manifest if r["input"].endswith("close.mp4"))
    assert int(close["frames"]) == N and float(close["seconds"]) > 0 and close["settings"] == first.settings
    summary = read_csv(first.summary)
    inputs = {r["input"] for r in summary}
    assert inputs == {r["input"] for r in first.done}  # failed inputs have no summary
    for r in summary:
        mean = np.array([float(r[f"p_{c}"]) for c in CLASS_NAMES])
        assert abs(mean.sum() - 1) < 1e-3 and r["dominant"] == CLASS_NAMES[int(mean.argmax())]
    per_input = [r for r in summary if r["input"].endswith("close.mp4") and r["track"] == ""]
    tracks = [r for r in summary if r["input"].endswith("close.mp4") and r["track"] != ""]
    assert len(per_input) == 1 and int(per_input[0]["frames"]) == N
    assert tracks and sum(int(t["faces"]) for t in tracks) <= int(per_input[0]["faces"])
    # the same table as Parquet, typed ([dev] includes [cluster], which brings pyarrow)
    import pyarrow.parquet as pq

    table = pq.read_table(first.out / "summary.parquet")
    assert table.column_names == list(summary[0]) and table.num_rows == len(summary)
    assert str(table.schema.field("frames").type) == "int64" and str(table.schema.field("p_happy").type) == "double"
    rows = table.to_pylist()
    assert [r["frames"] for r in rows] == [int(r["frames"]) for r in summary]
    assert [r["track"] for r in rows] == [r["track"] or None for r in summary]


def test_rerun_skips_done_and_retries_failed(first, media: Path) -> None:
    before = {o: (first.out / o).stat().st_mtime_ns for r in first.done for o in r["outputs"]}
    again = run_batch([media], first.out, workers=2)  # no video this time: the done ones still count
    rows = _by_name(again.rows)
    assert {n for n, r in rows.items() if r.get("skipped")} == {"close.mp4", "far.mp4", "still0.jpg", "still1.jpg"}
    assert {n for n, r in rows.items() if r["status"] == "failed"} == {"corrupt.mp4", "empty.mp4", "cut.avi",
                                                                      "broken.jpg"}
    assert not again.done and {o: (first.out / o).stat().st_mtime_ns for o in before} == before
    assert len(read_csv(again.manifest)) == 8
    # another setting is another result: done again
    changed = run_batch([media / "close.mp4"], first.out, workers=1, window=3)
    assert [r["status"] for r in changed.done] == ["done"] and not changed.skipped
    assert changed.settings != first.settings


def test_cli_exit_code_and_table(first, media: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ferlab.cli import main

    rc = main(["batch", str(media / "far.mp4"), str(media / "photos" / "still0.jpg"), "--out", str(first.out),
               "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "0 done, 2 skipped" in out and "manifest:" in out
    rc = main(["batch", str(media / "empty.mp4"), "--out", str(first.out), "--quiet", "--workers", "1"])
    captured = capsys.readouterr()
    assert rc == 1 and "empty (0 bytes)" in captured.out and "1 of 1 input(s) failed" in captured.err


def test_expand_inputs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.JPG", "a/notes.txt", "a/.hidden.mp4", "z.avi"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a" / "out").mkdir()
    (tmp_path / "a" / "out" / "old.mp4").write_bytes(b"")
    (tmp_path / "list.txt").write_text("# a comment\nz.avi\n\nmissing.mp4\nrtsp://cam/1\na\n")
    (tmp_path / "list.csv").write_text("id,path\n1,z.avi\n2,a/y.JPG\n")
    items = expand_inputs([tmp_path / "list.txt", tmp_path / "list.csv", tmp_path / "a"], out=tmp_path / "a" / "out")
    names = [(Path(i.source).name if not i.is_url else i.source, i.kind) for i in items]
    assert names == [("z.avi", "video"), ("missing.mp4", "video"), ("rtsp://cam/1", "video"), ("x.mp4", "video"),
                     ("y.JPG", "image")]
    assert len({i.key for i in items}) == len(items)
    assert expand_inputs([tmp_path / "z.avi"])[0].key == items[0].key  # stable across runs
    (tmp_path / "void").mkdir()
    with pytest.raises(FerlabError, match="no videos or photos"):
        expand_inputs([tmp_path / "void"])


def test_settings_hash() -> None:
    from ferlab.inference import InferenceOptions

    base = InferenceOptions().to_dict()
    assert settings_hash(base, None) == settings_hash({**base, "threads": 4}, None)
    assert settings_hash(base, None) != settings_hash({**base, "window": 3}, None)
    assert settings_hash(base, None) != settings_hash(base, 100)
    assert settings_hash({**base, "model": "fernet"}, None) != settings_hash({**base, "model": "resnet18"}, None)
    with pytest.raises(FerlabError, match="not found"):
        settings_hash({**base, "model": "no-such-model"}, None)


def test_without_ray_one_line_naming_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None\n"
            "from ferlab.cli import main\n"
            f"sys.exit(main(['batch', {str(tmp_path)!r}, '--out', {str(tmp_path / 'o')!r}]))")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "ferlab[cluster]"' in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_batch_that_cannot_start_leaves_no_tables(local_ray, media: Path, tmp_path: Path) -> None:
    """The model will not load on the workers: one line, and no header-only manifest or summary
    (a folder this run created is removed again; one that was there stays, without tables)."""
    missing = str(tmp_path / "missing.onnx")
    out = tmp_path / "new"
    with pytest.raises(FerlabError, match="model could not be loaded"):
        run_batch([media / "photos"], out, workers=1, model=missing)
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(FerlabError, match="model could not be loaded"):
        run_batch([media / "photos"], kept, workers=1, model=missing)
    assert not (kept / "manifest.csv").exists() and not (kept / "summary.csv").exists()


def test_journal_survives_a_torn_line_and_compacts(tmp_path: Path) -> None:
    from ferlab.batch.manifest import Journal

    j = Journal(tmp_path)
    for i in range(150):
        j.append({"key": "a", "n": i})
    j.close()  # 150 lines for one input: rewritten to the latest row
    assert (tmp_path / ".ferlab-batch" / "journal.jsonl").read_text().count("\n") == 1
    with open(tmp_path / ".ferlab-batch" / "journal.jsonl", "a") as fh:
        fh.write('{"key": "b", "n"')  # a crash mid-line
    j = Journal(tmp_path)
    assert j.rows == {"a": {"key": "a", "n": 149}}
    j.append({"key": "c"})
    j.close()
    assert Journal(tmp_path).rows == {"a": {"key": "a", "n": 149}, "c": {"key": "c"}}
    # the torn tail was dropped, not kept as a line of its own
    assert (tmp_path / ".ferlab-batch" / "journal.jsonl").read_text() == '{"key":"a","n":149}\n{"key":"c"}\n'


# -- long videos split into time segments (ferlab.batch.segments) ---------------------------

def test_segment_counts_balance_the_load() -> None:
    from ferlab.batch.segments import frame_bounds, segment_counts, warmup_frames
    from ferlab.inference import InferenceOptions

    assert segment_counts([600.0], 4) == [8]  # one long video, 4 workers: two 75 s segments each
    assert segment_counts([60.0] * 100, 4) == [1] * 100  # many inputs already balance
    assert segment_counts([3600.0] + [60.0] * 9, 4) == [6] + [1] * 9  # one video dominates: only it is cut
    assert segment_counts([100.0, 30.0], 8) == [1, 1]  # segments would be shorter than a minute
    assert segment_counts([600.0, None], 4) == [8, 1]  # an unknown length is never split
    assert segment_counts([600.0], 1) == [1]  # one worker: nothing to balance
    assert segment_counts([3.0, 2.5, 0.5, None], 4, segment_seconds=1) == [3, 3, 1, 1]  # forced: at most 1 s each
    assert segment_counts([600.0], 4, segment_seconds=0) == [1]  # 0 = never
    assert frame_bounds(90, 3) == [0, 30, 60, 90]
    assert frame_bounds(100, 3, align=4) == [0, 32, 64, 100]  # inner borders on detection rounds
    assert warmup_frames(InferenceOptions()) == 18  # max_missed 15 + confirm 3 (> window 10)
    assert warmup_frames(InferenceOptions(detect_every=4, window=40)) == 40


def test_seek_is_frame_accurate(media: Path) -> None:
    """What a segment reads after seeking is what a full decode gives at the same global index,
    for the bundled H.264 clip and the MPEG-4 clips the batch tests write."""
    from ferlab.inference.capture import Capture

    for path in (CLIP, media / "close.mp4"):
        with Capture.open(path) as cap:
            every = [f for _, _, f in cap.frames(read_ahead=0)]
        for start in (1, 7, 12, 13, len(every) - 3):
            with Capture.open(path, start=start) as cap:
                got = list(cap.frames(max_frames=2, read_ahead=0))
                assert cap.remaining == len(every) - start
            assert [i for i, _, _ in got] == [start, start + 1]
            assert got[0][1] == pytest.approx(start / cap.info.fps)
            assert all(np.array_equal(f, every[i]) for i, _, f in got), (path.name, start)


def _jsonl(out: Path, row: dict) -> list[dict]:
    name = next(o for o in row["outputs"] if o.endswith(".jsonl"))
    return [json.loads(s) for s in (out / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def split_runs(local_ray, tmp_path_factory: pytest.TempPathFactory):
    """A 3 s clip (several faces, two scene cuts) done whole and in 1 s segments."""
    root = tmp_path_factory.mktemp("long")
    clip = _write(root / "long.mp4", _frames(0, 90), "mp4v")
    whole = run_batch([clip], tmp_path_factory.mktemp("whole"), workers=2, segment_seconds=0)
    split = run_batch([clip], tmp_path_factory.mktemp("split"), workers=2, segment_seconds=1)
    return whole, split


def test_split_video_equals_the_unsplit_run_but_for_track_ids(split_runs) -> None:
    from ferlab.batch.segments import TRACK_ID_STRIDE

    whole, split = split_runs
    w, s = whole.rows[0], split.rows[0]
    assert w["status"] == s["status"] == "done" and (w["segments"], s["segments"]) == (1, 3)
    assert w["frames"] == s["frames"] == 90 and w["faces"] == s["faces"] > 0
    assert len(s["worker"].split(";")) == 2  # the segments ran on both workers
    a, b = _jsonl(whole.out, w), _jsonl(split.out, s)
    assert [r["frame"] for r in b] == [r["frame"] for r in a] == list(range(90))  # global indices
    assert [r["time"] for r in b] == [r["time"] for r in a]  # and timestamps
    for ra, rb in zip(a, b):
        assert sorted(f["box"] for f in rb["faces"]) == sorted(f["box"] for f in ra["faces"]), ra["frame"]
        by_box = {tuple(f["box"]): f for f in ra["faces"]}
        for f in rb["faces"]:
            twin = by_box[tuple(f["box"])]
            assert f["probs"] == twin["probs"]  # raw probabilities do not depend on the split
            assert f["smoothed"] == twin["smoothed"]  # the warm-up filled the window as unsplit
            segment = rb["frame"] // 30
            assert f["track_id"] // TRACK_ID_STRIDE == segment and f["track_id"] % TRACK_ID_STRIDE > 0
            if segment == 0:
                assert f["track_id"] == twin["track_id"]
    ids = [{f["track_id"] for r in b[k * 30:(k + 1) * 30] for f in r["faces"]} for k in range(3)]
    assert all(ids) and not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])  # restarted, never reused
    assert s["tracks"] == sum(len(x) for x in ids)

    def csv_without_ids(res, row) -> list[dict]:
        name = next(o for o in row["outputs"] if o.endswith(".csv"))
        return [{k: v for k, v in r.items() if k != "track_id"} for r in read_csv(res.out / name)]

    assert csv_without_ids(split, s) == csv_without_ids(whole, w)  # one header, rows in order


def test_split_video_manifest_and_summary(split_runs) -> None:
    whole, split = split_runs
    manifest = read_csv(split.manifest)
    assert len(manifest) == 1 and manifest[0]["status"] == "done" and manifest[0]["segments"] == "3"
    assert int(manifest[0]["frames"]) == 90 and int(manifest[0]["faces"]) == whole.rows[0]["faces"]
    summary, before = read_csv(split.summary), read_csv(whole.summary)
    assert [r for r in summary if r["track"] == ""] == [r for r in before if r["track"] == ""]  # per input
    counts: dict[str, int] = {}
    for r in _jsonl(split.out, split.rows[0]):
        for f in r["faces"]:
            counts[str(f["track_id"])] = counts.get(str(f["track_id"]), 0) + 1
    assert {r["track"]: int(r["frames"]) for r in summary if r["track"]} == counts  # a track per segment
    assert not (split.out / ".ferlab-batch" / "parts").exists()  # merged parts are gone
    assert not list((split.out / "results").glob(".*"))
    again = run_batch([Path(split.rows[0]["input"])], split.out, workers=2, segment_seconds=0)
    assert [r.get("skipped") for r in again.rows] == [True]  # how it was split is not a setting


def test_a_failed_segment_fails_its_input(local_ray, tmp_path: Path) -> None:
    cut = _write(tmp_path / "cut.avi", _frames(90, 48), "MJPG")  # the header promises 48 frames
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # about 24 are left
    res = run_batch([cut], tmp_path / "out", workers=2, segment_seconds=0.5)
    row = res.rows[0]
    assert row["status"] == "failed" and row["segments"] == 4 and row["outputs"] == []
    assert row["error"].startswith("segment ") and " of 4 (frames " in row["error"]
    assert not list((tmp_path / "out").glob("results/*"))  # no partial result of a failed input
    assert not (tmp_path / "out" / ".ferlab-batch" / "parts").exists()
    manifest = read_csv(res.manifest)
    assert [(m["status"], m["error"]) for m in manifest] == [("failed", row["error"])]
    again = run_batch([cut], tmp_path / "out", workers=2, segment_seconds=0.5)
    assert again.rows[0]["status"] == "failed" and not again.rows[0].get("skipped")  # retried, not skipped


def test_batched_frames_give_the_same_outputs(local_ray, media: Path, tmp_path: Path) -> None:
    """``--batch-frames`` (the default for GPU workers) classifies several frames' faces in one
    call; the per-frame JSONL must be what frame-by-frame processing wrote."""
    clips = [media / "far.mp4", media / "close.mp4"]
    first = run_batch(clips, tmp_path / "a", workers=2, batch_frames=1)
    out = run_batch(clips, tmp_path / "b", workers=2, batch_frames=8)
    assert [r["status"] for r in out.rows] == ["done", "done"]
    for row in out.rows:
        name = Path(row["input"]).name
        ref = next(r for r in first.rows if Path(r["input"]).name == name)
        got = [json.loads(s) for s in (out.out / next(o for o in row["outputs"] if o.endswith(".jsonl"))).read_text().splitlines()]
        want = [json.loads(s) for s in (first.out / next(o for o in ref["outputs"] if o.endswith(".jsonl"))).read_text().splitlines()]
        assert [r["frame"] for r in got] == [r["frame"] for r in want] == list(range(N))
        for g, w in zip(got, want):
            assert [(f["box"], f["track_id"], f["label"]) for f in g["faces"]] == \
                   [(f["box"], f["track_id"], f["label"]) for f in w["faces"]]
            for fg, fw in zip(g["faces"], w["faces"]):
                np.testing.assert_allclose(list(fg["probs"].values()), list(fw["probs"].values()), atol=1e-4)
    with pytest.raises(FerlabError, match="--batch-frames"):
        run_batch([media / "far.mp4"], tmp_path / "c", batch_frames=0)
