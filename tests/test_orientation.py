"""Photos in any orientation (issue 25): a photo that arrives sideways or upside down without an
EXIF tag is turned the right way before its faces are read, and its boxes stay in its own
pixels. The full measurement is ``maintainers/benchmarks/bench_orientation.py``."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ferlab.inference.preprocess import turn_image, unturn_boxes
from ferlab.inference.tracker import iou_matrix

# how the photo arrives (cv2.rotate code) -> the clockwise turn that makes it upright
ARRIVALS = {"clockwise": (cv2.ROTATE_90_CLOCKWISE, 270), "anticlockwise": (cv2.ROTATE_90_COUNTERCLOCKWISE, 90),
            "upside down": (cv2.ROTATE_180, 180)}


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_unturn_boxes_inverts_turn_image(degrees: int) -> None:
    """A box found in the turned image is mapped back onto the pixels it covers in the original."""
    image = np.zeros((120, 200), np.uint8)
    image[30:70, 110:190] = 255  # box (110, 30, 80, 40), off-centre and not square
    turned = turn_image(image, degrees)
    ys, xs = np.nonzero(turned)
    found = np.array([[xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]])
    assert unturn_boxes(found, degrees, 200, 120).tolist() == [[110, 30, 80, 40]]


def test_unturn_boxes_refuses_other_angles() -> None:
    with pytest.raises(ValueError, match="0, 90, 180 or 270"):
        unturn_boxes(np.zeros((1, 4)), 45, 10, 10)


@pytest.fixture(scope="module")
def recognizer():  # type: ignore[no-untyped-def]
    from ferlab.inference import Recognizer

    return Recognizer.from_pretrained()


@pytest.fixture(scope="module")
def two_people(samples_dir: Path) -> np.ndarray:
    return cv2.imread(str(samples_dir / "photos" / "two_people.jpg"))


@pytest.mark.parametrize("arrival", list(ARRIVALS))
def test_turned_photo_is_read_upright(recognizer, two_people: np.ndarray, arrival: str) -> None:  # type: ignore[no-untyped-def]
    """Both faces are found in the turned photo, where the upright photo has them, each read as
    the upright photo reads it, with the turn that made it upright."""
    code, undo = ARRIVALS[arrival]
    upright = recognizer.predict(two_people)
    assert len(upright) == 2 and all(f.rotation == 0 for f in upright)
    image = cv2.rotate(two_people, code)
    faces = recognizer.predict(image)
    assert len(faces) == 2
    assert {f.rotation for f in faces} == {undo}
    # the upright photo's boxes, in the arriving photo's pixels (it is upright turned back)
    expected = unturn_boxes(np.array([f.box for f in upright]), undo, image.shape[1], image.shape[0])
    iou = iou_matrix(np.array([f.box for f in faces], np.float64), expected.astype(np.float64))
    match = iou.argmax(axis=1)
    assert sorted(match.tolist()) == [0, 1] and iou.max(axis=1).min() > 0.8
    assert [faces[i].label for i in np.argsort(match)] == [f.label for f in upright]
    record = faces[0].to_dict()
    assert record["rotation"] == undo and "rotation" not in upright[0].to_dict()


def test_rotate_none_reads_upright_only(two_people: np.ndarray) -> None:
    from ferlab.inference import Recognizer

    sideways = cv2.rotate(two_people, cv2.ROTATE_90_CLOCKWISE)
    faces = Recognizer.from_pretrained(rotate="none").predict(sideways)
    assert all(f.rotation == 0 for f in faces)
    assert len(faces) < 2  # YuNet does not see these two faces sideways


def test_analyze_reports_the_turn(two_people: np.ndarray) -> None:
    import ferlab

    records = ferlab.analyze(cv2.rotate(two_people, cv2.ROTATE_90_COUNTERCLOCKWISE))
    assert [r["rotation"] for r in records] == [90, 90]
    assert all("rotation" not in r for r in ferlab.analyze(two_people))


@pytest.mark.parametrize("size", [(640, 480), (4000, 3000)])
def test_background_gives_no_face_in_any_turn(recognizer, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """A real face-free photo is looked at in all four turns (no face upright) and still gives none."""
    from sklearn.datasets import load_sample_image

    for name in ("china.jpg", "flower.jpg"):
        img = cv2.resize(cv2.cvtColor(load_sample_image(name), cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_CUBIC)
        assert recognizer.predict(img) == [], name


def test_cascade_reads_upright_only(two_people: np.ndarray) -> None:
    """The thesis's cascade gives no scores, so no turn can be judged: photos are read upright."""
    from ferlab.inference import Recognizer

    sideways = cv2.rotate(two_people, cv2.ROTATE_90_CLOCKWISE)
    assert all(f.rotation == 0 for f in Recognizer.from_pretrained(detector="haar").predict(sideways))
