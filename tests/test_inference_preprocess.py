"""Eq. (27) preprocessing, image normalisation of odd inputs, and the face detectors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ferlab.errors import FerlabError
from ferlab.inference.detector import HaarDetector, ScaledDetector, make_detector
from ferlab.inference.preprocess import (clip_boxes, crop_face, list_images, load_image, make_batch, to_bgr,
                                         to_gray)

from conftest import YUNET, read_video


def test_batch_is_eq27_with_checkpoint_stats() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    boxes = np.array([[10, 20, 96, 96], [150, 50, 30, 30]])
    mean, std = 0.4, 0.3  # deliberately not the constants: must come from the checkpoint
    x = make_batch(gray, boxes, mean, std)
    assert x.shape == (2, 1, 48, 48) and x.dtype == np.float32
    # shrinking uses INTER_AREA: a 96 px crop -> exact 2x2 block means
    crop = gray[20:116, 10:106].astype(np.float64)
    area = crop.reshape(48, 2, 48, 2).mean((1, 3))
    expected = (np.round(area) / 255 - mean) / std
    np.testing.assert_allclose(x[0, 0], expected, atol=1 / 255 / std + 1e-6)
    ref = (cv2.resize(gray[50:80, 150:180], (48, 48), interpolation=cv2.INTER_LINEAR) / 255.0 - mean) / std
    np.testing.assert_allclose(x[1, 0], ref, atol=1e-5)  # enlarging: linear
    assert make_batch(gray, np.zeros((0, 4)), mean, std).shape == (0, 1, 48, 48)


def test_odd_images_become_8bit_bgr_and_gray() -> None:
    base = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    gray = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)
    bgra = np.dstack([base, np.full((40, 50), 128, np.uint8)])
    u16 = base.astype(np.uint16) * 257  # the same picture at 16 bits
    f01 = base.astype(np.float32) / 255
    for img in (base, bgra, u16, f01):
        assert to_bgr(img).dtype == np.uint8 and to_bgr(img).shape == (40, 50, 3)
        np.testing.assert_allclose(to_gray(img).astype(int), gray.astype(int), atol=1)
    assert to_bgr(gray).shape == (40, 50, 3)
    assert to_gray(gray[:, :, None]).shape == (40, 50)
    with pytest.raises(FerlabError, match="shape"):
        to_gray(np.zeros((4, 4, 2), np.uint8))


def test_clip_boxes_at_border() -> None:
    boxes = np.array([[-20, -10, 60, 60], [90, 90, 50, 50], [200, 200, 10, 10], [99, 0, 40, 40]])
    out = clip_boxes(boxes, 100, 100)
    assert out.tolist() == [[0, 0, 40, 50], [90, 90, 10, 10]]  # outside / 1-px slivers dropped
    assert crop_face(np.zeros((100, 100), np.uint8), out[0]).shape == (48, 48)


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    txt = tmp_path / "notes.jpg"
    txt.write_text("this is not a jpeg")
    with pytest.raises(FerlabError, match="notes.jpg.*not a readable image"):
        load_image(txt)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(FerlabError, match="empty.png"):
        load_image(empty)
    with pytest.raises(FerlabError, match="image not found: .*missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(FerlabError, match="no images"):
        list_images([tmp_path / "sub"] if (tmp_path / "sub").mkdir() is None else [])


def test_load_image_rgba_and_16bit_files(tmp_path: Path) -> None:
    base = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([base, np.full((30, 40), 255, np.uint8)]))
    cv2.imwrite(str(tmp_path / "b.png"), base.astype(np.uint16) * 257)
    for name in ("a.png", "b.png"):
        img = load_image(tmp_path / name)
        assert img.shape == (30, 40, 3) and img.dtype == np.uint8
        np.testing.assert_allclose(img.astype(int), base.astype(int), atol=1)


# -- detectors -----------------------------------------------------------------------------

def _largest(boxes: np.ndarray, k: int) -> np.ndarray:
    return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3])[:k]]


def test_haar_thesis_settings_on_photos(samples_dir: Path) -> None:
    det = make_detector("haar")
    inner = det.inner
    assert isinstance(inner, HaarDetector)
    assert (inner.scale_factor, inner.min_neighbors, inner.min_size) == (1.1, 5, (30, 30))
    img = load_image(samples_dir / "photos" / "obama.jpg")
    boxes = det.detect(img, to_gray(img))
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 300 < x + w / 2 < 700 and w > 150  # the face, not a background blob
    img = load_image(samples_dir / "photos" / "two_people.jpg")
    boxes = det.detect(img, to_gray(img))
    assert len(boxes) == 2
    centres = sorted(int(b[0] + b[2] / 2) for b in boxes)
    assert centres[0] < img.shape[1] / 2 < centres[1]  # one on each side


def test_detect_scale_maps_boxes_back(samples_dir: Path) -> None:
    img = load_image(samples_dir / "photos" / "two_people.jpg")
    gray = to_gray(img)
    full = make_detector("haar").detect(img, gray)
    half = make_detector("haar", scale=0.5).detect(img, gray)
    assert len(full) == 2 and len(half) == 2
    for b in half:  # each face found at half scale, in full-resolution coordinates
        assert max(_iou(b, f) for f in full) > 0.6


def test_haar_finds_both_main_faces(samples_dir: Path) -> None:
    """obama_and_biden.jpg: Haar (thesis settings) finds both men, plus a few false positives
    in the background, which is why the detector can be swapped."""
    img = load_image(samples_dir / "photos" / "obama_and_biden.jpg")
    boxes = make_detector("haar").detect(img, to_gray(img))
    for expected in ([740, 400, 200, 200], [1130, 360, 220, 220]):  # Biden, Obama
        assert max(_iou(np.array(expected), b) for b in boxes) > 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    from ferlab.inference.tracker import iou_matrix

    return float(iou_matrix(a[None], b[None])[0, 0])


def test_no_face_and_plugin_detector() -> None:
    frame = np.full((240, 320, 3), 127, np.uint8)
    det = make_detector("haar")
    assert det.detect(frame, to_gray(frame)).shape == (0, 4)

    class Fixed:
        name = "fixed"

        def detect(self, bgr: np.ndarray, gray: np.ndarray) -> np.ndarray:
            return np.array([[10, 10, 40, 40]])

    plugged = make_detector(Fixed(), scale=0.5)
    assert isinstance(plugged, ScaledDetector)
    assert plugged.detect(frame, to_gray(frame)).tolist() == [[20, 20, 80, 80]]
    with pytest.raises(FerlabError, match="--detector haar"):
        make_detector("yunet", "/nonexistent/yunet.onnx")
    with pytest.raises(FerlabError, match="unknown detector"):
        make_detector("mtcnn")


def test_huge_photo_is_downscaled_for_detection(samples_dir: Path) -> None:
    face = load_image(samples_dir / "photos" / "obama_small.jpg")  # 320x240, one face
    big = np.full((1500, 10000, 3), 90, np.uint8)
    big[300:300 + 960, 4000:4000 + 1280] = cv2.resize(face, (1280, 960))
    det = make_detector("haar", max_side=1920)  # --max-detect-side 1920 -> detection on a 1920x288 copy
    boxes = det.detect(big, to_gray(big))
    assert len(boxes) >= 1
    x, y, w, h = _largest(boxes, 1)[0]
    assert 4000 < x + w / 2 < 5280 and 300 < y + h / 2 < 1260


def test_yunet_is_the_bundled_default() -> None:
    from ferlab.inference.detector import BUNDLED_YUNET, YuNetDetector
    from ferlab.inference.options import DEFAULTS

    assert DEFAULTS.detector == "yunet" and DEFAULTS.detector_model is None
    assert BUNDLED_YUNET.is_file() and BUNDLED_YUNET.stat().st_size > 100_000
    assert "MIT" in (BUNDLED_YUNET.parent / "ATTRIBUTION.md").read_text()
    det = make_detector()
    assert isinstance(det.inner, YuNetDetector)


def test_missing_bundled_yunet_names_the_ways_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ferlab.inference import detector as det_mod

    monkeypatch.setattr(det_mod, "BUNDLED_YUNET", tmp_path / "gone.onnx")
    with pytest.raises(FerlabError, match="--detector haar") as err:
        make_detector()
    assert "--detector-model" in str(err.value)
    with pytest.raises(FerlabError, match="cannot be used with --detector haar"):
        make_detector("haar", tmp_path / "x.onnx")


def test_yunet_follows_frame_size_changes(samples_dir: Path) -> None:
    """Browser clients change resolution mid-stream; the detector's input size follows."""
    det = make_detector()
    img = load_image(samples_dir / "photos" / "two_people.jpg")
    for w in (640, 320, 1280, 640):
        frame = cv2.resize(img, (w, int(img.shape[0] * w / img.shape[1])))
        boxes = det.detect(frame, to_gray(frame))
        assert len(boxes) == 2, w
        assert boxes[:, 0].max() + boxes[:, 2].max() <= w * 1.1


def test_yunet_on_huge_photo_detects_on_a_working_copy_and_a_finer_one(samples_dir: Path) -> None:
    """A 14 MP photo: the working pass sees a 640 px copy, a finer pass (tiled, faces < 480 px)
    the scale at which a 40 px face is 28 px; --max-detect-side still caps every pass."""
    face = load_image(samples_dir / "photos" / "obama_small.jpg")
    big = np.full((3000, 4800, 3), 90, np.uint8)  # 14 MP
    big[1000:1000 + 960, 2000:2000 + 1280] = cv2.resize(face, (1280, 960))
    det = make_detector()
    plan = det.plan(big.shape)
    assert [p.size(big.shape) for p in plan] == [(640, 400), (3360, 2100)]
    assert plan[0].largest is None and plan[1].largest == 480 and len(plan[1].tiles(big.shape)) == 2
    boxes = det.detect(big, to_gray(big))
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 2000 < x + w / 2 < 3280 and 1000 < y + h / 2 < 1960
    capped = make_detector(max_side=1920)
    assert max(max(p.size(big.shape)) for p in capped.plan(big.shape)) <= 1920
    assert len(capped.detect(big, to_gray(big))) == 1


def test_yunet_detector(samples_dir: Path) -> None:
    det = make_detector("yunet", YUNET if YUNET.is_file() else None)
    img = load_image(samples_dir / "photos" / "two_people.jpg")
    boxes = det.detect(img, to_gray(img))
    assert len(boxes) == 2
    assert all(b[2] == b[3] for b in boxes)  # squared for the 48x48 crop
    img = load_image(samples_dir / "photos" / "obama_partial_face.jpg")  # face cut by the border
    boxes = clip_boxes(det.detect(img, to_gray(img)), img.shape[1], img.shape[0])
    assert len(boxes) == 1 and boxes[0][0] == 0  # clipped at the left edge, still classified


def _real_frames(samples_dir: Path) -> list[np.ndarray]:
    from ferlab.inference.detector import BUNDLED_YUNET

    frames = read_video(BUNDLED_YUNET.parent / "sample_clip.mp4")
    photos = [cv2.imread(str(p)) for p in sorted((samples_dir / "photos").iterdir()) if p.suffix.lower() in (".jpg", ".png")]
    return frames[::10] + [p for p in photos if p is not None]


def test_yunet_onnxruntime_engine_finds_what_opencv_finds(samples_dir: Path) -> None:
    """The ONNX Runtime engine (the default) re-implements FaceDetectorYN's pre- and
    post-processing; on the bundled clip and every sample photo it must return OpenCV's
    faces: same count, boxes, landmarks and scores to a thousandth of a pixel."""
    from ferlab.inference.detector import YuNetDetector

    ort_det, cv_det = YuNetDetector(engine="onnxruntime"), YuNetDetector(engine="opencv")
    assert ort_det.engine == "onnxruntime" and cv_det.engine == "opencv"
    assert YuNetDetector().engine == "onnxruntime"
    frames = _real_frames(samples_dir)
    assert len(frames) > 30
    total = 0
    for frame in frames:
        a, b = ort_det.detect_faces(frame), cv_det.detect_faces(frame)
        assert len(a) == len(b), frame.shape
        a, b = a[np.lexsort(a[:, :2].T)], b[np.lexsort(b[:, :2].T)]
        np.testing.assert_allclose(a, b, atol=1e-3)
        np.testing.assert_array_equal(ort_det.detect(frame, None), cv_det.detect(frame, None))  # type: ignore[arg-type]
        total += len(a)
    assert total > 30  # the comparison saw faces, not only empty frames


def test_yunet_onnxruntime_engine_refuses_other_onnx_models(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from ferlab.inference.detector import YuNetDetector

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "not-yunet",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, None, None])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(FerlabError, match="not a YuNet model"):
        YuNetDetector(path, engine="onnxruntime")
    with pytest.raises(FerlabError, match="unknown YuNet engine"):
        YuNetDetector(engine="tensorrt")
