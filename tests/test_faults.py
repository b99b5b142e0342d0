"""The fault suite: what users and attackers hand ferlab, and the crashes it must survive.

* Mutated real JPEG/PNG/WebP/BMP/TIFF and MP4 bytes (Hypothesis) through decoding, the
  recognizer, the Python API and the HTTP API: ferlab's own errors (one line) or a result,
  never another exception, never a 5xx.
* Decompression bombs (a 875 KB PNG declaring 30000 x 30000 pixels) refused from the header by
  every entry point (CLI, batch, server, Python API), in one line naming the file and size.
* Outputs that cannot be written (a path through a file, a read-only folder, a full disk)
  refused before any work, or failing in one line with no partial file left.
* Training killed with SIGKILL, also while a checkpoint is written: the run folder always
  resumes or restarts, to the very weights of an uninterrupted run.
* Batch bookkeeping: journal lines whole, a torn tail dropped.

Fast parts run by default (about a minute on two cores); ``-m slow`` runs the long ones
(many more fuzz examples, 50 random kills of training, peak memory of a 49 Mpx photo). The
figures over all of it come from ``maintainers/benchmarks/bench_faults.py``.
"""
from __future__ import annotations

import copy
import errno
import os
import random
import shutil
import struct
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from faultkit import (OPS, apply_ops, kill_at, recover, run_cli, same_weights, seed_images,  # noqa: E402
                      seed_video, stale_temporaries, train_child, write_cfg, zero_png)
from ferlab.errors import FerlabError  # noqa: E402
from ferlab.inference.preprocess import (DEFAULT_MAX_PIXELS, ImageTooLarge, decode_image_bytes,  # noqa: E402
                                         load_image)

FAST = int(os.environ.get("FERLAB_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=FAST, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
BASE = "http://127.0.0.1:8000"
OK_STATUSES = {200, 400, 413, 415, 422}

ops_strategy = st.lists(st.tuples(st.sampled_from(OPS), st.floats(0, 1), st.integers(0, 1 << 16)),
                        min_size=1, max_size=6)


@pytest.fixture(scope="module")
def corpus(samples_dir: Path) -> dict[str, bytes]:
    seeds = seed_images(samples_dir / "photos" / "obama_small.jpg")
    seeds["png-original"] = (samples_dir / "photos" / "alex-lacamoire.png").read_bytes()
    return seeds


@pytest.fixture(scope="module")
def recognizer(tiny_checkpoint: Path) -> Any:
    from ferlab.inference import Recognizer

    return Recognizer.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def client(recognizer: Any) -> Any:
    from fastapi.testclient import TestClient

    from ferlab.serving import Limits, create_app

    with TestClient(create_app(recognizer, Limits(max_video_frames=3)), base_url=BASE) as c:
        yield c


# -- fuzz: mutated real media ----------------------------------------------------------------------

@FUZZ
@given(seed=st.sampled_from(["jpeg-original", "jpg", "png", "webp", "bmp", "tiff", "png-original"]),
       ops=ops_strategy)
def test_mutated_images_decode_or_fail_in_one_line(corpus: dict[str, bytes], recognizer: Any, seed: str,
                                                   ops: list[tuple[str, float, int]]) -> None:
    """Decode, then the recognizer on what decoded, then the Python API: a result or a
    FerlabError with a one-line message; a decoded image is 8-bit BGR within the limit."""
    import ferlab

    data = apply_ops(corpus[seed], ops)
    try:
        image = decode_image_bytes(data, "fuzz.img")
    except FerlabError as exc:
        assert "\n" not in str(exc) and "fuzz.img" in str(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= DEFAULT_MAX_PIXELS
    faces = recognizer.predict(image)
    assert isinstance(faces, list)
    assert isinstance(ferlab.analyze(data, model=recognizer.source), list)


@FUZZ
@given(seed=st.sampled_from(["jpeg-original", "png", "webp", "bmp", "tiff"]), ops=ops_strategy,
       multipart=st.booleans())
def test_mutated_images_through_the_api_never_5xx(client: Any, corpus: dict[str, bytes], seed: str,
                                                  ops: list[tuple[str, float, int]], multipart: bool) -> None:
    data = apply_ops(corpus[seed], ops)
    if multipart:
        r = client.post("/api/predict", files={"file": ("f.img", data, "application/octet-stream")})
    else:
        r = client.post("/api/predict", content=data, headers={"content-type": "application/octet-stream"})
    assert r.status_code in OK_STATUSES, r.text
    if r.status_code != 200:
        assert r.headers["content-type"] == "application/json" and r.json()["detail"]


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return seed_video(tmp_path_factory.mktemp("clip") / "seed.mp4")


@settings(max_examples=max(8, FAST // 6), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy)
def test_mutated_videos_through_the_api_never_5xx(client: Any, clip_bytes: bytes,
                                                  ops: list[tuple[str, float, int]]) -> None:
    data = apply_ops(clip_bytes, ops)
    r = client.post("/api/video", files={"file": ("clip.mp4", data, "video/mp4")})
    assert r.status_code in OK_STATUSES, r.text


def test_a_folder_of_mutated_photos_through_predict_is_one_line_each(corpus: dict[str, bytes], tmp_path: Path,
                                                                    tiny_checkpoint: Path,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """``ferlab predict`` over 40 mutated files: every bad one is one line, the rest are read,
    and nothing else reaches stderr (libpng's and libjpeg's own complaints are hidden; capfd
    sees what they write to file descriptor 2)."""
    from ferlab.cli import main

    rng = random.Random(7)
    names = sorted(corpus)
    for i in range(40):
        (tmp_path / f"m{i:02d}.png").write_bytes(apply_ops(corpus[names[i % len(names)]],
                                                           [(rng.choice(OPS), rng.random(), rng.randrange(65536))]))
    rc = main(["predict", str(tmp_path), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "out" / "r.json")])
    err = capfd.readouterr().err
    assert rc in (0, 2) and "Traceback" not in err
    bad = [line for line in err.splitlines() if line.startswith("ferlab predict: error:")]
    assert bad and all(line.count(str(tmp_path)) == 1 for line in bad)
    other = [line for line in err.splitlines() if not line.startswith(("ferlab predict: ", "model "))
             and " image(s), " not in line]
    assert not other, other
    assert (tmp_path / "out" / "r.json").is_file()


# -- decompression bombs ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's bomb: 875 KB of PNG declaring 30000 x 30000 pixels."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(zero_png(30000, 30000))
    return path


def test_bomb_is_refused_from_its_header_by_every_library_entry_point(bomb: Path, recognizer: Any,
                                                                      tmp_path: Path) -> None:
    import ferlab
    from ferlab.batch.inputs import BatchInput
    from ferlab.batch.tasks import process_input

    data = bomb.read_bytes()
    assert 800_000 < len(data) < 1_000_000
    for call in (lambda: load_image(bomb), lambda: decode_image_bytes(data, str(bomb)),
                 lambda: recognizer.predict(bomb), lambda: ferlab.analyze(data, model=recognizer.source)):
        with pytest.raises(ImageTooLarge, match=r"30000x30000 pixels \(900 Mpx\), over the limit of 50 Mpx"):
            call()
    # batch: the item fails with that line, no output is written for it
    row = process_input(recognizer, BatchInput(str(bomb), "image", "bomb"), tmp_path)
    assert row["status"] == "failed" and "30000x30000" in row["error"] and not list(tmp_path.rglob("*.jsonl"))
    # the limit is configurable: over it, refused; a larger one lets a 120x100 photo through a 10 kpx limit
    small = zero_png(120, 100, 3)
    with pytest.raises(ImageTooLarge, match="120x100"):
        decode_image_bytes(small, "small.png", max_pixels=10_000)
    assert decode_image_bytes(small, "small.png", max_pixels=12_000).shape == (100, 120, 3)


def test_bomb_through_the_api_is_413(client: Any, bomb: Path) -> None:
    r = client.post("/api/predict", content=bomb.read_bytes(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "30000x30000" in r.json()["detail"]
    r = client.post("/api/predict", content=_png_claiming(100_000, 100_000), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "100000x100000 pixels (10,000 Mpx)" in r.json()["detail"]  # past Pillow's guard


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR (valid CRC) declares width x height: all header, no pixels."""
    data = bytearray(zero_png(1, 1))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_predict_on_a_bomb_exits_at_once_in_one_line_with_little_memory(bomb: Path) -> None:
    rc, out, err, peak_mb, seconds = run_cli(["predict", str(bomb)])
    assert rc == 2, err
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [f"ferlab predict: error: {bomb} is 30000x30000 pixels (900 Mpx), over the limit of 50 Mpx: "
                      "refused before decoding (set FERLAB_MAX_PIXELS to allow more)"], err
    assert "Traceback" not in err and peak_mb < 1024, (peak_mb, err)
    rc, _, err, _, _ = run_cli(["predict", str(bomb)], env={"FERLAB_MAX_PIXELS": "lots"})
    assert rc == 2 and err.strip() == "ferlab predict: error: FERLAB_MAX_PIXELS='lots' is not a positive pixel count " \
                                      "(e.g. 50000000)"


@pytest.mark.slow
def test_a_49_mpx_photo_peaks_under_1_gb(tmp_path: Path) -> None:
    """Within the limit, the largest photo a user can hand ``predict`` (7000 x 7000 RGB)."""
    path = tmp_path / "big.png"
    path.write_bytes(zero_png(7000, 7000, 3))
    rc, out, err, peak_mb, _ = run_cli(["predict", str(path), "--annotate", str(tmp_path / "ann")])
    assert rc == 0, err
    assert peak_mb < 1024, peak_mb


# -- outputs that cannot be written -----------------------------------------------------------------

def _one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith(f"ferlab {command}: error: "), err
    return lines[0]


@pytest.mark.parametrize("argv, flag", [
    (["predict", "{photo}", "--out", "{blocked}/r.json"], "--out"),
    (["predict", "{photo}", "--annotate", "{blocked}/ann"], "--annotate"),
    (["video", "{clip}", "-o", "{blocked}/a.mp4"], "-o"),
    (["video", "{clip}", "--jsonl", "{blocked}/a.jsonl"], "--jsonl"),
    (["video", "{clip}", "--csv", "{blocked}/a.csv"], "--csv"),
    (["video", "{clip}", "--plot", "{blocked}/a.png"], "--plot"),
    (["run", "{photo}", "--jsonl", "{blocked}/a.jsonl"], "--jsonl"),
    (["batch", "{photo}", "-o", "{blocked}/out"], "-o"),
    (["train", "--out", "{blocked}/run"], "--out"),
])
def test_an_output_under_a_file_fails_before_any_work(argv: list[str], flag: str, tmp_path: Path, samples_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ferlab.cli import main

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    values = {"photo": str(samples_dir / "photos" / "obama_small.jpg"),
              "clip": str(samples_dir / "short_hamilton_clip.mp4"), "blocked": str(blocked)}
    t0 = time.perf_counter()
    rc = main([a.format(**values) for a in argv])
    line = _one_error_line(capsys.readouterr().err, argv[0])
    assert rc == 1 and f"cannot write {flag} {blocked}/" in line and f"{blocked} is a file, not a folder" in line
    assert time.perf_counter() - t0 < 5  # refused before the model loads or an input is read
    assert blocked.read_text() == "not a folder"


def test_a_read_only_folder_fails_before_any_work(tmp_path: Path, samples_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """/sys refuses new files even to root; a chmod-ed folder does too for anyone else."""
    from ferlab.cli import main

    targets = []
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        targets.append(Path("/sys/ferlab-test/r.json"))  # Linux: nobody may create files here
    else:  # pragma: no cover - a writable /sys
        os.close(fd)
        os.unlink(probe)
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        targets.append(ro / "r.json")
    if not targets:
        pytest.skip("no read-only folder to try here")
    for target in targets:
        rc = main(["predict", str(samples_dir / "photos" / "obama_small.jpg"), "--out", str(target)])
        line = _one_error_line(capsys.readouterr().err, "predict")
        assert rc == 1 and line.startswith(f"ferlab predict: error: cannot write --out {target}: "), line
        assert "denied" in line.lower() or "read-only" in line.lower(), line


def test_a_full_disk_ends_in_one_line_and_leaves_no_output(tmp_path: Path, samples_dir: Path) -> None:
    """RLIMIT_FSIZE: writes past a few bytes fail (EFBIG), as on a full disk (the shipped
    ONNX model: no PyTorch to import in the child)."""
    photos = samples_dir / "photos"
    out = tmp_path / "r.json"
    rc, _, err, _, _ = run_cli(["predict", str(photos / "obama_small.jpg"), str(photos / "biden.jpg"),
                                "--out", str(out)], fsize=200)
    assert rc == 1 and "Traceback" not in err, err
    assert err.splitlines()[-1] == f"ferlab predict: error: cannot write {out}: File too large"
    assert not out.exists() and not stale_temporaries(tmp_path)
    jsonl, csv = tmp_path / "v.jsonl", tmp_path / "v.csv"
    rc, _, err, _, _ = run_cli(["video", str(samples_dir / "short_hamilton_clip.mp4"),
                                "--jsonl", str(jsonl), "--csv", str(csv), "--no-window",
                                "--max-frames", "30", "--quiet"], fsize=4000)
    assert rc == 1 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("ferlab video: error: cannot write ") and "File too large" in err
    assert not jsonl.exists() and not csv.exists() and not stale_temporaries(tmp_path)


def test_an_unfinished_video_is_not_left_under_its_name(tmp_path: Path, samples_dir: Path) -> None:
    """OpenCV's writer never reports a failed write: the file is checked before it is renamed."""
    mp4 = tmp_path / "a.mp4"
    rc, _, err, _, _ = run_cli(["video", str(samples_dir / "short_hamilton_clip.mp4"),
                                "-o", str(mp4), "--no-window", "--max-frames", "20", "--quiet"], fsize=20_000)
    assert rc == 1 and "Traceback" not in err, err
    assert err.splitlines()[-1] == (f"ferlab video: error: cannot write {mp4}: the video encoder could not finish "
                                    "the file (disk full?)")
    assert not mp4.exists() and not list(tmp_path.glob(".a.mp4*"))


# -- batch journal ------------------------------------------------------------------------------------

def test_journal_lines_are_whole_and_a_torn_tail_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ferlab.batch import manifest
    from ferlab.batch.manifest import Journal
    from ferlab.fileio import OutputError

    j = Journal(tmp_path)
    j.append({"key": "a", "status": "done"})
    j.close()
    path = tmp_path / ".ferlab-batch" / "journal.jsonl"
    with open(path, "ab") as fh:
        fh.write(b'{"key": "b", "sta')  # a crash (or a full disk, before this fix) mid-line
    j = Journal(tmp_path)
    j.open()
    assert path.read_bytes().endswith(b'"done"}\n')  # the torn tail is gone, not just ended
    # a full disk in the middle of a line: the part written is taken back
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(manifest.os, "write", half_then_full)
    with pytest.raises(OutputError, match=r"cannot write .*journal\.jsonl: No space left on device"):
        j.append({"key": "c", "status": "done"})
    monkeypatch.setattr(manifest.os, "write", real_write)
    j.append({"key": "d", "status": "done"})
    j.close()
    lines = path.read_bytes().splitlines(keepends=True)
    assert [line.endswith(b"\n") for line in lines] == [True, True]
    assert list(Journal(tmp_path).rows) == ["a", "d"]
    # a last line that is whole but lacks its newline is kept
    with open(path, "ab") as fh:
        fh.write(b'{"key":"e"}')
    j = Journal(tmp_path)
    j.open()
    j.close()
    assert list(Journal(tmp_path).rows) == ["a", "d", "e"] and path.read_bytes().endswith(b'{"key":"e"}\n')


# -- training killed ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    """(config, its JSON file, the folder of its uninterrupted run): 2 epochs on a synthetic CSV."""
    from test_training import _tiny_cfg, _write_fer_csv

    from ferlab.research.training.trainer import train

    root = tmp_path_factory.mktemp("killruns")
    os.environ.setdefault("FERLAB_CACHE", str(root / "cache"))
    csv_path = _write_fer_csv(root / "fer2013.csv", {"Training": 12, "PublicTest": 4, "PrivateTest": 2})
    cfg = _tiny_cfg(csv_path, epochs=2, early_stopping=5)
    reference = root / "reference"
    train(copy.deepcopy(cfg), out=reference, device="cpu", progress=False)
    return cfg, write_cfg(cfg, root / "cfg.json"), reference


def test_a_run_stopped_in_its_first_epoch_resumes_and_restarts(tiny_run: tuple[Any, Path, Path],
                                                               tmp_path: Path) -> None:
    """The issue's stuck folder: epoch 1's checkpoints written, ``last_state.pt`` not (its
    temporary file left behind). ``--resume`` and a plain rerun both finish the run, to the
    weights of the uninterrupted run, and the temporary files are gone."""
    from ferlab.research.training.callbacks import StopAfter
    from ferlab.research.training.trainer import train

    cfg, _, reference = tiny_run
    stuck = tmp_path / "stuck"
    train(copy.deepcopy(cfg), out=stuck, device="cpu", progress=False, callbacks=[StopAfter(1)])
    (stuck / "last_state.pt").unlink()
    (stuck / ".last_state.pt.k1ll3d.tmp").write_bytes(b"\x80half a pickle")
    (stuck / ".metrics.jsonl.x.tmp").write_text("{")
    other = tmp_path / "copy"
    shutil.copytree(stuck, other)
    for folder, resume in ((stuck, True), (other, False)):
        summary = train(copy.deepcopy(cfg), out=folder, device="cpu", progress=False, resume=resume)
        assert summary["epochs_run"] == 2
        assert same_weights(folder / "last.safetensors", reference / "last.safetensors")
        assert same_weights(folder / "best.safetensors", reference / "best.safetensors")
        assert stale_temporaries(folder) == []
    with pytest.raises(FerlabError, match="already holds a run; pass --resume"):
        train(copy.deepcopy(cfg), out=stuck, device="cpu", progress=False)
    with pytest.raises(FerlabError, match="nothing to resume in"):
        train(copy.deepcopy(cfg), out=tmp_path / "never-started", device="cpu", progress=False, resume=True)


def test_sigkill_while_the_state_file_is_written_leaves_a_run_that_resumes(tiny_run: tuple[Any, Path, Path],
                                                                           tmp_path: Path) -> None:
    cfg, cfg_json, reference = tiny_run
    out = tmp_path / "run"
    proc = train_child(cfg_json, out, resume=False, env={"FERLAB_TEST_HOLD": "last_state.pt:1"})
    assert kill_at(proc, marker="HOLD"), proc.stderr.read()  # type: ignore[union-attr]
    assert (out / "last.safetensors").exists() and not (out / "last_state.pt").exists()
    assert stale_temporaries(out)  # the state file's temporary, written but never renamed
    from ferlab.research.training.trainer import train

    train(copy.deepcopy(cfg), out=out, device="cpu", progress=False, resume=True)
    assert same_weights(out / "last.safetensors", reference / "last.safetensors")
    assert stale_temporaries(out) == []


@pytest.mark.slow
def test_fifty_random_kills_leave_no_stuck_run(tiny_run: tuple[Any, Path, Path], tmp_path: Path) -> None:
    """SIGKILL at 50 random instants of a run (start-up, epochs, checkpoint writes, the end),
    then what a user would do: every run finishes with the uninterrupted run's weights."""
    _, cfg_json, reference = tiny_run
    t0 = time.monotonic()
    proc = train_child(cfg_json, tmp_path / "timing", resume=False)
    proc.communicate(timeout=600)
    duration = time.monotonic() - t0
    rng = random.Random(29)
    stuck, different = [], []
    for i in range(int(os.environ.get("FERLAB_TRAIN_KILLS", "50"))):
        out = tmp_path / f"k{i:02d}"
        kill_at(train_child(cfg_json, out, resume=False), seconds=rng.uniform(0.2, duration))
        outcome = recover(cfg_json, out)
        if not outcome[-1].startswith("ok"):
            stuck.append((i, outcome))
        elif not same_weights(out / "last.safetensors", reference / "last.safetensors"):
            different.append(i)
        shutil.rmtree(out, ignore_errors=True)
    assert not stuck and not different, (stuck, different)
