"""Faces at every size (issue 25): the default detection policy finds a face that fills a frame
and a face in a 4000 px photo, finds nothing on a background, and is what every entry point gets.

Real pixels: the sample photos of the shared folder (skipped with a reason when absent) and
scikit-learn's bundled sample photo of a temple (a real, face-free image). The full measurement
is ``maintainers/benchmarks/bench_scale.py``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ferlab.inference.detector import (TILE_OVERLAP, DetectionPass, HaarDetector, ScaledDetector, YuNetDetector,
                                       make_detector)
from ferlab.inference.options import DEFAULTS, InferenceOptions
from ferlab.inference.preprocess import load_image, to_gray


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    from ferlab.inference.tracker import iou_matrix

    return float(iou_matrix(np.asarray(a, np.float64)[None], np.asarray(b, np.float64)[None])[0, 0])


def _face_box(image: np.ndarray) -> np.ndarray:
    """The face of a one-face photo, found where YuNet is at ease (a 640 px copy)."""
    s = 640 / max(image.shape[:2])
    small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    boxes = make_detector().detect(small, to_gray(small))
    assert len(boxes) == 1
    return boxes[0] / s


def _temple() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return cv2.cvtColor(load_sample_image("china.jpg"), cv2.COLOR_RGB2BGR)


def test_sample_photo_upscaled_to_4000_px_is_found(samples_dir: Path) -> None:
    """obama.jpg at 4000 px on its longer side: a 1140 px face."""
    img = load_image(samples_dir / "photos" / "obama.jpg")
    truth = _face_box(img)
    s = 4000 / max(img.shape[:2])
    big = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    boxes = make_detector().detect(big, to_gray(big))
    assert len(boxes) == 1
    assert _iou(boxes[0], truth * s) > 0.6


def test_two_faces_in_a_4000_px_photo(samples_dir: Path) -> None:
    img = load_image(samples_dir / "photos" / "two_people.jpg")
    s = 4000 / max(img.shape[:2])
    big = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    boxes = make_detector().detect(big, to_gray(big))
    assert len(boxes) == 2
    centres = sorted(b[0] + b[2] / 2 for b in boxes)
    assert centres[0] < big.shape[1] / 2 < centres[1]


@pytest.mark.parametrize("frame", [(640, 480), (1920, 1080), (1080, 1920)])
def test_face_filling_90_percent_of_the_frame(samples_dir: Path, frame: tuple[int, int]) -> None:
    """A frame cut from obama.jpg around his face, so that the face's box spans 90% of the
    frame's shorter side: a webcam at arm's length, a phone held close, a film close-up."""
    img = load_image(samples_dir / "photos" / "obama.jpg")
    x, y, w, _ = _face_box(img)
    w_out, h_out = frame
    s = 0.9 * min(frame) / w
    cx, cy = (x + w / 2) * s, (y + w / 2) * s
    m = np.float32([[s, 0, w_out / 2 - cx], [0, s, h_out / 2 - cy]])
    out = cv2.warpAffine(img, m, frame, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    boxes = make_detector().detect(out, to_gray(out))
    side = 0.9 * min(frame)
    assert len(boxes) == 1
    assert _iou(boxes[0], [w_out / 2 - side / 2, h_out / 2 - side / 2, side, side]) > 0.5
    if frame == (1920, 1080):  # the bug this policy fixes: one full pass saw a 972 px face, not a face to YuNet
        previous = make_detector(work_side=0, min_face=0, max_side=1920)
        assert len(previous.detect(out, to_gray(out))) == 0


@pytest.mark.parametrize("photo,size", [("obama.jpg", 48), ("biden.jpg", 96)])
def test_face_cut_by_the_frame_edge(samples_dir: Path, photo: str, size: int) -> None:
    """A face with 35% of it beyond the left edge of a 1920x1080 frame (someone walking into
    the picture): small faces there are candidates that the second look must confirm."""
    img = load_image(samples_dir / "photos" / photo)
    s = size / _face_box(img)[2]
    box = _face_box(img) * s
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame = cv2.resize(_temple(), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    x0, y0 = int(round(-box[0] - 0.35 * size)), int(round(540 - box[1] - size / 2))
    sx, sy = -x0, max(0, -y0)
    h, w = min(small.shape[0] - sy, 1080 - max(0, y0)), min(small.shape[1] - sx, 1920)
    frame[max(0, y0):max(0, y0) + h, :w] = small[sy:sy + h, sx:sx + w]
    boxes = make_detector().detect(frame, to_gray(frame)).astype(np.float64)
    assert len(boxes) == 1
    right = boxes[0, 0] + boxes[0, 2]
    clipped = [0.0, boxes[0, 1], right, boxes[0, 3]]
    assert _iou(clipped, [0.0, 540 - size / 2, 0.65 * size, size]) > 0.5


@pytest.mark.parametrize("size", [(640, 480), (4000, 3000)])
def test_background_gives_no_face(size: tuple[int, int]) -> None:
    """A real face-free photo (the temple) at a webcam's and a phone's size, and a flat grey frame."""
    img = cv2.resize(_temple(), size, interpolation=cv2.INTER_CUBIC)
    det = make_detector()
    assert det.detect(img, to_gray(img)).shape == (0, 4)
    grey = np.full((size[1], size[0], 3), 127, np.uint8)
    assert det.detect(grey, to_gray(grey)).shape == (0, 4)


def test_plan_per_frame_size() -> None:
    """640x480 keeps its one full-resolution pass (the live/video cost does not change); larger
    frames get the 640 px working pass plus finer passes only down to --min-face."""
    det = make_detector()
    assert [p.size((480, 640)) for p in det.plan((480, 640))] == [(640, 480)]
    assert [p.size((240, 320)) for p in det.plan((240, 320))] == [(320, 240)]  # never enlarged
    hd = det.plan((1080, 1920))
    assert hd[0].size((1080, 1920)) == (640, 360) and hd[0].largest is None
    assert all(p.largest is not None for p in hd[1:]) and hd[-1].scale <= 1
    uhd = det.plan((4320, 7680))
    assert uhd[0].size((4320, 7680))[0] == 640 and len(uhd) >= 2
    assert all(b.scale / a.scale <= 8.0 + 1e-9 for a, b in zip(uhd, uhd[1:]))
    # --min-face: larger = fewer/cheaper finer passes; 0 = the working pass only
    assert make_detector(min_face=0).plan((1080, 1920)) == [hd[0]]
    assert make_detector(min_face=200).plan((1080, 1920))[-1].scale < hd[-1].scale
    # --detect-side 0: one pass, capped by --max-detect-side (the policy before)
    previous = make_detector(work_side=0, max_side=1920)
    assert [p.size((3000, 4000)) for p in previous.plan((3000, 4000))] == [(1920, 1440)]
    # --detect-scale shrinks every pass
    half = make_detector(scale=0.5)
    assert all(p.scale <= 0.5 for p in half.plan((1080, 1920))) and half.plan((480, 640))[0].scale == 0.5


def test_tiles_cover_the_copy_and_overlap_more_than_a_face() -> None:
    p = DetectionPass(0.8, largest=480)
    shape = (4320, 7680)
    w, h = p.size(shape)
    tiles = p.tiles(shape)
    assert len(tiles) > 1
    covered = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({(x0, x1) for x0, _, x1, _ in tiles})
    assert all(a[1] - b[0] >= TILE_OVERLAP for a, b in zip(xs, xs[1:]))
    assert DetectionPass(0.1).tiles(shape) == [(0, 0, 768, 432)]  # the working pass is never tiled


def test_haar_stays_the_thesis_cascade() -> None:
    """Haar scans every size itself: one pass at full resolution, thesis settings."""
    det = make_detector("haar")
    assert isinstance(det.inner, HaarDetector)
    assert (det.inner.scale_factor, det.inner.min_neighbors, det.inner.min_size) == (1.1, 5, (30, 30))
    assert [p.scale for p in det.plan((4000, 6000))] == [1.0]


def test_every_entry_point_gets_the_policy(tiny_checkpoint: Path) -> None:
    """live, video, predict, serve, demo and batch build their recognizer from InferenceOptions
    through Recognizer.from_pretrained -> make_detector: the options arrive in the policy."""
    from ferlab.inference import Recognizer

    assert (DEFAULTS.detect_side, DEFAULTS.min_face, DEFAULTS.max_detect_side) == (640, 40, None)
    rec = Recognizer.from_pretrained(tiny_checkpoint, backend="torch")
    det = rec.detector
    assert isinstance(det, ScaledDetector) and isinstance(det.inner, YuNetDetector)
    assert (det.work_side, det.min_face, det.max_side) == (640, 40, None)
    rec = Recognizer.from_pretrained(tiny_checkpoint, backend="torch",
                                     options=InferenceOptions(detect_side=320, min_face=0, max_detect_side=0))
    assert (rec.detector.work_side, rec.detector.min_face, rec.detector.max_side) == (320, None, None)


def test_detection_flags_parse(capsys: pytest.CaptureFixture[str]) -> None:
    from ferlab.cli import build_parser
    from ferlab.inference.options import from_args

    args = build_parser().parse_args(["predict", "x.jpg", "--detect-side", "960", "--min-face", "24"])
    opts = from_args(args)
    assert (opts.detect_side, opts.min_face) == (960, 24)
    args = build_parser().parse_args(["video", "x.mp4", "--detect-side", "0", "--min-face", "0"])
    assert (from_args(args).detect_side, from_args(args).min_face) == (None, None)


def _scripted_policy(monkeypatch: pytest.MonkeyPatch, rows: np.ndarray, confirms: bool) -> tuple[ScaledDetector, list[int]]:
    """The default policy with YuNet's passes replaced by fixed rows and the second look by a
    counter that confirms (or rejects) every candidate: what the stream memory changes."""
    det = make_detector()
    looks: list[int] = []
    monkeypatch.setattr(det, "_rows", lambda bgr, p: rows.copy())
    monkeypatch.setattr(det, "plan", lambda shape: [DetectionPass(1.0)])

    def look(bgr: np.ndarray, row: np.ndarray) -> np.ndarray | None:
        looks.append(1)
        return row.copy() if confirms else None

    monkeypatch.setattr(det, "_second_look", look)
    return det, looks


def _row(x: float, y: float, side: float, score: float) -> np.ndarray:
    r = np.zeros(15, np.float32)
    r[:4], r[14] = (x, y, side, side), score
    return r


def test_stream_memory_skips_a_rejected_candidate_then_rechecks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from ferlab.inference.detector import RECHECK_SECONDS, StreamMemory

    frame = np.zeros((480, 640, 3), np.uint8)
    det, looks = _scripted_policy(monkeypatch, np.stack([_row(100, 100, 40, 0.5), _row(300, 100, 60, 0.95)]),
                                  confirms=False)
    memory = StreamMemory()
    times = [RECHECK_SECONDS * (k / 10) for k in range(1, 10)] + [RECHECK_SECONDS * 1.05]
    for t in times:  # nine frames inside the first period, one in the second
        memory.next_round(np.zeros((0, 4)), t)
        boxes = det.detect(frame, frame[..., 0], memory)
        assert len(boxes) == 1  # the sure face only
    assert len(looks) == 2  # looked at in the first frame and again in the next period
    assert len(det.detect(frame, frame[..., 0])) == 1 and len(looks) == 3  # no memory: a look every frame


def test_stream_memory_keeps_a_followed_face_without_a_look(monkeypatch: pytest.MonkeyPatch) -> None:
    """A face the tracker follows whose score dips below YuNet's threshold stays a face."""
    from ferlab.inference.detector import StreamMemory

    frame = np.zeros((480, 640, 3), np.uint8)
    det, looks = _scripted_policy(monkeypatch, _row(100, 100, 40, 0.5)[None], confirms=False)
    memory = StreamMemory()
    memory.next_round(np.array([[102, 98, 40, 40]], np.float64), 0.0)
    assert len(det.detect(frame, frame[..., 0], memory)) == 1 and not looks
    memory.reset()  # a scene cut: nothing is followed any more
    memory.next_round(np.zeros((0, 4)), 0.0)
    assert len(det.detect(frame, frame[..., 0], memory)) == 0 and len(looks) == 1
