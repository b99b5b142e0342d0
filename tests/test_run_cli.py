"""``ferlab run SOURCE``: one command and one set of flags for cameras, videos, photos and folders."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.inference.run_cli import KIND_CAMERA, KIND_PHOTOS, KIND_VIDEO, source_kind


def test_the_source_decides_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "a.JPG").write_bytes(b"")
    assert source_kind(["0"]) == KIND_CAMERA
    assert source_kind([str(tmp_path), str(tmp_path / "a.JPG")]) == KIND_PHOTOS
    assert source_kind(["clip.mp4"]) == KIND_VIDEO
    assert source_kind(["rtsp://camera.local/stream"]) == KIND_VIDEO
    for mixed in (["0", "a.jpg"], ["a.mp4", "b.mp4"], ["0", "1"]):
        with pytest.raises(FerlabError, match="not a mix"):
            source_kind(mixed)


def test_photos_and_folders_with_every_output(samples_dir: Path, tmp_path: Path, capsys) -> None:
    photos = samples_dir / "photos"
    rc = main(["run", str(photos / "two_people.jpg"), str(photos), "-o", str(tmp_path / "ann"),
               "--jsonl", str(tmp_path / "r.jsonl"), "--csv", str(tmp_path / "r.csv")])
    assert rc == 0
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    n_files = 1 + len([p for p in photos.iterdir() if p.is_file()])
    assert len(records) == n_files and records[0]["file"].endswith("two_people.jpg")
    assert len(records[0]["faces"]) == 2
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == sum(len(r["faces"]) for r in records)
    assert rows[0]["label"] in json.dumps(records[0]) and "p_happy" in rows[0]
    assert (tmp_path / "ann" / "two_people.jpg").is_file()
    assert capsys.readouterr().out == ""  # results went to the files, not the terminal
    assert main(["run", str(photos / "obama.jpg"), "--jsonl", "-", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["faces"]


def test_a_video_takes_the_same_flags(samples_dir: Path, tmp_path: Path) -> None:
    clip = samples_dir / "short_hamilton_clip.mp4"
    rc = main(["run", str(clip), "--max-frames", "8", "--no-window", "--quiet",
               "--jsonl", str(tmp_path / "v.jsonl"), "--csv", str(tmp_path / "v.csv")])
    assert rc == 0
    frames = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [f["frame"] for f in frames] == list(range(8))
    assert next(csv.reader((tmp_path / "v.csv").open()))[:3] == ["frame", "time", "track_id"]


def test_bad_sources_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["run", str(tmp_path / "missing.jpg")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jpg" in err[0]
    (tmp_path / "x.jpg").write_text("not a photo")
    assert main(["run", str(tmp_path / "x.jpg"), "--plot", "p.png"]) != 0
    assert "needs a camera or a video" in capsys.readouterr().err


def test_sideways_photo_rows_carry_the_turn(samples_dir: Path, tmp_path: Path) -> None:
    """A photo stored sideways without an EXIF tag: its JSONL faces and CSV rows say it was turned."""
    import cv2

    sideways = tmp_path / "sideways.png"
    cv2.imwrite(str(sideways), cv2.rotate(cv2.imread(str(samples_dir / "photos" / "two_people.jpg")),
                                          cv2.ROTATE_90_CLOCKWISE))
    assert main(["run", str(sideways), "--jsonl", str(tmp_path / "r.jsonl"), "--csv", str(tmp_path / "r.csv"),
                 "--quiet"]) == 0
    faces = json.loads((tmp_path / "r.jsonl").read_text())["faces"]
    assert [f["rotation"] for f in faces] == [270, 270]
    assert [r["rotation"] for r in csv.DictReader((tmp_path / "r.csv").open())] == ["270", "270"]
