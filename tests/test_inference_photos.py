"""``predict_images``: the library function behind ``ferlab predict``."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from ferlab.errors import FerlabError
from ferlab.inference import Recognizer, predict_images


@pytest.fixture(scope="module")
def rec(tiny_checkpoint: Path) -> Recognizer:
    return Recognizer.from_pretrained(tiny_checkpoint, backend="torch")


def test_records_outputs_and_errors(rec: Recognizer, samples_dir: Path, tmp_path: Path) -> None:
    photos = samples_dir / "photos"
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    cv2.imwrite(str(folder / "a" / "face.png"), cv2.imread(str(photos / "obama_small.jpg")))
    cv2.imwrite(str(folder / "b" / "face.png"), cv2.imread(str(photos / "obama_small.jpg")))
    (folder / "b" / "junk.jpg").write_bytes(b"\xff\xd8\xff not really")
    seen: list[str] = []
    out, ann = tmp_path / "all.json", tmp_path / "ann"
    records = predict_images(folder, rec, out=out, annotate=ann, on_record=lambda r: seen.append(r["file"]))
    assert [Path(r["file"]).relative_to(folder).as_posix() for r in records] == ["a/face.png", "b/face.png",
                                                                               "b/junk.jpg"]
    assert seen == [r["file"] for r in records]  # reported one by one, in order
    assert [len(r["faces"]) for r in records[:2]] == [1, 1] and records[0]["width"] == 320
    assert "not a readable image" in records[2]["error"]
    assert json.loads(out.read_text()) == records
    assert sorted(p.name for p in ann.iterdir()) == ["face.png", "face_1.png"]  # same name, two folders
    assert records[0]["faces"] == [f.to_dict() for f in rec.predict(folder / "a" / "face.png")]


def test_builds_a_recognizer_from_options(tiny_checkpoint: Path, samples_dir: Path) -> None:
    photo = samples_dir / "photos" / "two_people.jpg"
    records = predict_images([photo], model=str(tiny_checkpoint), backend="torch", detect_scale=0.5)
    assert len(records) == 1 and len(records[0]["faces"]) == 2
    with pytest.raises(FerlabError, match="image not found"):
        predict_images(samples_dir / "photos" / "nope.jpg", model=str(tiny_checkpoint))
    with pytest.raises(FerlabError, match="one was given"):
        predict_images([photo], Recognizer.from_pretrained(tiny_checkpoint, backend="torch"), window=3)
