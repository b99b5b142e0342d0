"""Recognizer / Session API: the contract the CLI and the web server rely on."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ferlab.errors import FerlabError
from ferlab.inference import Face, FrameResult, Recognizer, annotate
from ferlab.inference.preprocess import load_image

FACE_KEYS = {"box", "track_id", "label", "confidence", "probs", "smoothed", "uncertain", "uncertainty"}


@pytest.fixture(scope="module")
def rec(tiny_checkpoint: Path) -> Recognizer:
    return Recognizer.from_pretrained(tiny_checkpoint, backend="torch")


@pytest.fixture(scope="module")
def face_img(samples_dir: Path) -> np.ndarray:
    """obama_small.jpg shrunk to 240x180: one ~100 px face, cheap to detect."""
    return cv2.resize(load_image(samples_dir / "photos" / "obama_small.jpg"), (240, 180), interpolation=cv2.INTER_AREA)


def two_face_frames(face: np.ndarray, n: int) -> list[np.ndarray]:
    """n frames of 560x240: one face drifting right on the left, one drifting down on the right."""
    frames = []
    for t in range(n):
        f = np.full((240, 560, 3), 60, np.uint8)
        f[20:200, 10 + 2 * t:250 + 2 * t] = face
        f[10 + t:190 + t, 300:540] = face
        frames.append(f)
    return frames


def test_predict_photo_contract(rec: Recognizer, samples_dir: Path) -> None:
    faces = rec.predict(samples_dir / "photos" / "obama.jpg")
    assert len(faces) == 1
    d = faces[0].to_dict()
    assert set(d) == FACE_KEYS
    assert d["track_id"] is None and d["smoothed"] is None
    assert list(d["probs"]) == rec.class_names and len(d["box"]) == 4
    assert all(isinstance(v, int) for v in d["box"])
    assert abs(sum(d["probs"].values()) - 1) < 1e-4
    assert d["label"] == max(d["probs"], key=d["probs"].get)
    assert d["confidence"] == pytest.approx(max(d["probs"].values()), abs=1e-6)
    two = rec.predict(str(samples_dir / "photos" / "two_people.jpg"))
    assert len(two) == 2 and two[0].box[0] < two[1].box[0]  # left to right


def test_same_result_for_every_input_format(rec: Recognizer, face_img: np.ndarray) -> None:
    gray = cv2.cvtColor(face_img, cv2.COLOR_BGR2GRAY)
    variants = {
        "bgr": face_img,
        "bgra": np.dstack([face_img, np.full(gray.shape, 200, np.uint8)]),
        "uint16": face_img.astype(np.uint16) * 257,
        # the default detector (YuNet) looks at colour: a gray photo is compared with itself
        "gray": gray,
        "gray HxWx1": gray[:, :, None],
        "gray float": gray.astype(np.float32) / 255,
    }
    refs = {"colour": rec.predict(face_img), "gray": rec.predict(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))}
    assert len(refs["colour"]) == 1 and len(refs["gray"]) == 1
    for name, img in variants.items():
        ref = refs["gray" if name.startswith("gray") else "colour"]
        got = rec.predict(img)
        assert [f.box for f in got] == [f.box for f in ref], name
        np.testing.assert_allclose(got[0].probs, ref[0].probs, atol=1e-6, err_msg=name)


def test_no_face_frame(rec: Recognizer) -> None:
    assert rec.predict(np.full((120, 160, 3), 30, np.uint8)) == []
    res = rec.session().process(np.zeros((120, 160, 3), np.uint8), timestamp=0.0)
    assert res.to_dict() == {"frame": 0, "time": 0.0, "faces": []}


def test_session_tracks_and_smooths_per_face(rec: Recognizer, face_img: np.ndarray) -> None:
    calls: list[int] = []
    backend = rec.backend

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return backend(batch)

    sess = rec.session(window=4, confirm=1)  # shown from the first frame
    sess.recognizer = _with_backend(rec, counting)
    raw: dict[int, list[np.ndarray]] = {}
    results = [sess.process(f, timestamp=i / 30) for i, f in enumerate(two_face_frames(face_img, 12))]
    assert calls == [2] * 12  # all faces of a frame in ONE batch
    left_ids = set()
    for r in results:
        assert isinstance(r, FrameResult) and len(r.faces) == 2
        d = r.to_dict()
        assert set(d) == {"frame", "time", "faces"}
        left = min(r.faces, key=lambda f: f.box[0])
        left_ids.add(left.track_id)
        for f in r.faces:
            raw.setdefault(f.track_id, []).append(f.probs)
            expected = np.mean(raw[f.track_id][-4:], axis=0)  # Eq. 26, N=4, per track
            np.testing.assert_allclose(f.smoothed, expected, atol=1e-9)
            assert set(f.to_dict()) == FACE_KEYS
    assert len(left_ids) == 1 and set(raw) == {1, 2}  # stable ids, one per person
    assert results[-1].frame == 11 and results[-1].time == pytest.approx(11 / 30)


def _with_backend(rec: Recognizer, backend: object) -> Recognizer:
    clone = Recognizer(backend, rec.detector, class_names=rec.class_names, mean=rec.mean, std=rec.std)  # type: ignore[arg-type]
    return clone


def test_detect_every_k_tracks_in_between(rec: Recognizer, face_img: np.ndarray) -> None:
    seen: list[int] = []
    inner = rec.detector

    class Counting:
        name = "counting"

        def detect(self, bgr: np.ndarray, gray: np.ndarray) -> np.ndarray:
            seen.append(1)
            return inner.detect(bgr, gray)

    r2 = Recognizer(rec.backend, Counting(), class_names=rec.class_names, mean=rec.mean, std=rec.std)
    sess = r2.session(detect_every=3, smoothing="none", confirm=1)
    results = [sess.process(f) for f in two_face_frames(face_img, 9)]
    assert len(seen) == 3  # frames 0, 3, 6
    assert [r.detected for r in results] == [True, False, False] * 3
    assert all(len(r.faces) == 2 for r in results)
    assert {f.track_id for r in results for f in r.faces} == {1, 2}
    assert all(f.smoothed is None and f.to_dict()["smoothed"] is None for r in results for f in r.faces)


def test_sessions_are_independent(rec: Recognizer, face_img: np.ndarray) -> None:
    frames = two_face_frames(face_img, 3)
    a, b = rec.session(confirm=1), rec.session(confirm=1)
    for f in frames:
        a.process(f)
    first_b = b.process(frames[0])
    assert first_b.frame == 0 and sorted(f.track_id for f in first_b.faces) == [1, 2]
    assert a.frame_index == 3


def test_annotate_scales_with_frame(rec: Recognizer, face_img: np.ndarray) -> None:
    for w, h in ((640, 360), (1920, 1080)):
        frame = cv2.resize(two_face_frames(face_img, 1)[0], (w, h))
        before = frame.copy()
        res = rec.session(confirm=1).process(frame)
        assert len(res.faces) == 2
        out = annotate(frame, res, fps=29.7)
        assert out.shape == (h, w, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(frame, before)  # input untouched
        changed = np.any(out != frame, axis=2).mean()
        assert 0.02 < changed < 0.6
    gray_out = annotate(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), res.faces)  # list of faces works too
    assert gray_out.shape == (1080, 1920, 3)
    face = Face((5, 5, 30, 30), np.full(7, 1 / 7), rec.class_names, track_id=3, smoothed=None)
    assert annotate(np.zeros((40, 40, 3), np.uint8), [face]).shape == (40, 40, 3)  # tiny frame, no crash


def test_from_pretrained_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(FerlabError, match="unknown Recognizer option"):
        Recognizer.from_pretrained(tiny_checkpoint, windw=3)
    with pytest.raises(FerlabError, match="not found"):
        Recognizer.from_pretrained(tmp_path / "nope.safetensors")
    with pytest.raises(FerlabError, match="smoothing"):
        Recognizer.from_pretrained(tiny_checkpoint, backend="torch", smoothing="median")


def test_top_level_lazy_export() -> None:
    import ferlab

    assert ferlab.Recognizer is Recognizer


def test_face_at_border_is_clipped_and_classified(rec: Recognizer) -> None:
    class Edge:
        name = "edge"

        def detect(self, bgr: np.ndarray, gray: np.ndarray) -> np.ndarray:
            return np.array([[-30, 100, 90, 90], [600, -20, 80, 80], [700, 700, 50, 50]])  # last: off-frame

    r = Recognizer(rec.backend, Edge(), class_names=rec.class_names, mean=rec.mean, std=rec.std)
    frame = np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    faces = r.predict(frame)
    assert [f.box for f in faces] == [(0, 100, 60, 90), (600, 0, 40, 60)]
    assert all(abs(f.probs.sum() - 1) < 1e-6 for f in faces)
    res = r.session(confirm=1).process(frame)
    assert [f.track_id for f in res.faces] == [1, 2]


def test_recognizer_keeps_model_info(rec: Recognizer, tiny_checkpoint: Path) -> None:
    info = rec.info
    assert (info.name, info.path, info.arch) == ("tiny", str(tiny_checkpoint), "fernet")
    assert (info.class_names, info.mean, info.std) == (rec.class_names, rec.mean, rec.std)
    assert info.metrics == {} and info.accuracy() == {}
    assert info.meta["model"]["name"] == "fernet"  # the whole sidecar, as read at load time


def test_default_session_shows_a_face_once_confirmed(rec: Recognizer, face_img: np.ndarray) -> None:
    """confirm=3 (default): a face is shown from its third detection, and its smoothing window
    already holds the frames seen before (Eq. 26 over the last N frames)."""
    calls: list[np.ndarray] = []
    backend = rec.backend

    def keeping(batch: np.ndarray) -> np.ndarray:
        out = backend(batch)
        calls.append(out)
        return out

    class LeftFirst:
        name = "left-first"

        def detect(self, bgr: np.ndarray, gray: np.ndarray) -> np.ndarray:
            boxes = rec.detector.detect(bgr, gray)
            return boxes[np.argsort(boxes[:, 0])]

    r2 = Recognizer(keeping, LeftFirst(), class_names=rec.class_names, mean=rec.mean, std=rec.std)  # type: ignore[arg-type]
    sess = r2.session(window=4)
    results = [sess.process(f) for f in two_face_frames(face_img, 6)]
    assert [len(r.faces) for r in results] == [0, 0, 2, 2, 2, 2]
    assert sorted(f.track_id for f in results[2].faces) == [1, 2]
    from ferlab.probabilities import softmax

    left = [softmax(c)[0] for c in calls]
    shown = [min(r.faces, key=lambda f: f.box[0]) for r in results[2:]]
    for k, face in enumerate(shown, start=2):
        lo = max(0, k - 3)
        np.testing.assert_allclose(face.smoothed, np.mean(left[lo:k + 1], axis=0), atol=1e-6)


def test_scene_cut_gives_new_ids_and_fresh_smoothing(rec: Recognizer, face_img: np.ndarray) -> None:
    frames = two_face_frames(face_img, 10)
    other = [np.where((f == 60).all(axis=2, keepdims=True), np.uint8(215), f) for f in frames]  # a new shot
    sess = rec.session(confirm=1)
    before = [sess.process(f) for f in frames[:5]]
    after = [sess.process(f) for f in other[5:]]
    ids_before = {f.track_id for r in before for f in r.faces}
    ids_after = {f.track_id for r in after for f in r.faces}
    assert ids_before == {1, 2} and ids_after and not ids_before & ids_after
    off = rec.session(confirm=1, scene_cut=0)
    for f in frames[:5]:
        off.process(f)
    assert {f.track_id for f in off.process(other[5]).faces} <= {1, 2}  # no cut detection: old ids


def test_uncertain_flag_follows_the_shipped_calibration(samples_dir: Path, tiny_checkpoint: Path) -> None:
    """Shipped models carry a temperature and threshold fitted on PublicTest; every face then
    says how uncertain it is, with the same number ``ferlab evaluate`` scores (softmax(z/T)),
    and is drawn as "uncertain" when flagged. A model without a calibration reports null."""
    from ferlab.research.evaluation.uncertainty import calibrated_probs
    from ferlab.inference.recognizer import Calibration

    rec = Recognizer.from_pretrained("fernet")
    cal = rec.calibration
    assert cal is not None and cal.temperature > 0 and 0 < cal.threshold < 1
    assert cal == Calibration.from_meta(rec.info.meta)
    faces = rec.predict(samples_dir / "photos" / "obama_and_biden.jpg")
    assert faces and all(isinstance(f.uncertain, bool) for f in faces)
    for f in faces:
        logits = np.log(f.probs)[None]  # logits up to a constant: softmax(z / T) is the same
        u = 1 - calibrated_probs(logits, cal.temperature).max()
        assert f.uncertainty == pytest.approx(u, abs=1e-9)
        assert f.uncertain == (u >= cal.threshold)
        assert f.to_dict()["uncertain"] is f.uncertain
    # the overlay names a flagged face "uncertain" (and keeps its top class)
    face = Face((10, 10, 80, 80), np.array([0.3, 0.05, 0.05, 0.3, 0.2, 0.05, 0.05]), rec.class_names)
    cal.judge(face)
    assert face.uncertain is True
    frame = np.zeros((200, 300, 3), np.uint8)
    plain = Face(face.box, face.probs, face.class_names)
    assert not np.array_equal(annotate(frame, [face]), annotate(frame, [plain]))
    uncal = Recognizer.from_pretrained(tiny_checkpoint, backend="torch")
    assert uncal.calibration is None
    assert all(f.uncertain is None and f.to_dict()["uncertainty"] is None
               for f in uncal.predict(samples_dir / "photos" / "obama.jpg"))


def test_threads_bound_the_detector_as_well_as_the_classifier(tiny_checkpoint: Path) -> None:
    """``threads`` is every ONNX Runtime session's budget: a ``ferlab batch`` worker given one
    core must not run YuNet on all of them (the workers would fight, and scaling stalls)."""
    for threads, want in ((1, 1), (None, 0)):  # 0 = ONNX Runtime's default (all cores)
        rec = Recognizer.from_pretrained(tiny_checkpoint, threads=threads, backend="onnx")
        session = rec.detector.inner._net.session
        assert session.get_session_options().intra_op_num_threads == want


def test_faces_of_many_frames_in_one_call_give_the_frame_by_frame_results(rec: Recognizer) -> None:
    """``batch_frames`` (GPU batching in ``ferlab batch``) detects and tracks each frame first
    and classifies all their faces in one call: on the bundled clip, with its three hard cuts,
    tentative tracks, expired tracks and held boxes (detect_every 2), every frame must come out
    as it does frame by frame."""
    from ferlab.inference.demo import SAMPLE_CLIP

    def run(batch_frames: int) -> list[FrameResult]:
        return list(rec.stream(SAMPLE_CLIP, batch_frames=batch_frames, detect_every=2))

    one, many = run(1), run(7)
    assert len(one) == len(many) > 200
    assert sum(len(r.faces) for r in one) > 200 and {r.detected for r in one} == {True, False}
    for a, b in zip(one, many):
        assert (a.frame, a.time, a.detected) == (b.frame, b.time, b.detected)
        assert [(f.box, f.track_id) for f in a.faces] == [(f.box, f.track_id) for f in b.faces]
        for fa, fb in zip(a.faces, b.faces):
            np.testing.assert_allclose(fa.probs, fb.probs, atol=1e-5)
            np.testing.assert_allclose(fa.smoothed, fb.smoothed, atol=1e-5)
    with pytest.raises(FerlabError, match="batch_frames"):
        rec.stream(SAMPLE_CLIP, batch_frames=0)


def test_flip_tta_averages_each_face_with_its_mirror(tiny_checkpoint: Path, samples_dir: Path) -> None:
    """``tta="flip"`` gives what ``ferlab evaluate --tta flip`` scores: the mean of the softmaxes
    of each face and its mirror image, from the same crops, in one backend call per batch."""
    from ferlab.research.evaluation.predict import predict_logits, probs_from_logits
    from ferlab.research.nets import load_checkpoint

    plain = Recognizer.from_pretrained(tiny_checkpoint, backend="torch")
    tta = Recognizer.from_pretrained(tiny_checkpoint, backend="torch", tta="flip")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8)
    ckpt = load_checkpoint(tiny_checkpoint)
    want = probs_from_logits(predict_logits(ckpt.model, crops, ckpt.mean, ckpt.std, tta=True)).numpy()
    got = tta.classify_crops(crops)
    assert got == pytest.approx(want, abs=1e-6)
    mirrored = plain.classify_crops(crops[:, :, ::-1].copy())
    assert got == pytest.approx(0.5 * (plain.classify_crops(crops) + mirrored), abs=1e-6)
    assert np.abs(got - plain.classify_crops(crops)).max() > 1e-6  # the option does something
    calls = []
    inner = tta.backend

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return inner(batch)

    tta.backend = counting  # type: ignore[assignment]
    faces = tta.predict(samples_dir / "photos" / "obama_and_biden.jpg")
    assert len(faces) >= 2 and calls == [2 * len(faces)]  # the faces and their mirrors, one call
    with pytest.raises(FerlabError, match="tta"):
        Recognizer.from_pretrained(tiny_checkpoint, backend="torch", tta="rotate")


def test_flip_tta_uses_the_calibration_fitted_with_flip_tta() -> None:
    """With ``tta="flip"`` the ``uncertain`` threshold and temperature come from the sidecar's
    ``calibration_tta`` (fitted on the averaged outputs, which are less peaked), else from
    ``calibration``."""
    from ferlab.inference.recognizer import Calibration

    meta = {"calibration": {"temperature": 1.2, "threshold": 0.5},
            "calibration_tta": {"temperature": 1.1, "threshold": 0.45}}
    assert Calibration.from_meta(meta) == Calibration(1.2, 0.5)
    assert Calibration.from_meta(meta, "flip") == Calibration(1.1, 0.45)
    assert Calibration.from_meta({"calibration": meta["calibration"]}, "flip") == Calibration(1.2, 0.5)
