"""Tracker and per-face temporal smoothing (Eq. 26): pure NumPy, no model, no media."""
from __future__ import annotations

import numpy as np
import pytest

from ferlab.errors import FerlabError
from ferlab.inference.smoothing import EmaSmoother, NoSmoother, WindowSmoother, make_smoother
from ferlab.inference.tracker import IouTracker, iou_matrix


def _dists(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.random((n, 7))
    return p / p.sum(1, keepdims=True)


# -- tracker -------------------------------------------------------------------------------

def test_iou_matrix_values() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0])


def test_ids_stable_when_boxes_move_a_little() -> None:
    tr = IouTracker()
    ids0, _ = tr.update([[100, 100, 80, 80], [300, 120, 90, 90]])
    assert ids0 == [1, 2]
    for step in range(1, 30):  # both drift 3 px/frame, order of detections swaps every frame
        boxes = [[100 + 3 * step, 100, 80, 80], [300 - 3 * step, 120 + step, 90, 90]]
        if step % 2:
            ids, _ = tr.update(boxes[::-1])
            ids = ids[::-1]
        else:
            ids, _ = tr.update(boxes)
        assert ids == [1, 2]


def test_fast_move_keeps_id_by_centroid() -> None:
    tr = IouTracker()
    tr.update([[100, 100, 60, 60]])
    ids, _ = tr.update([[130, 110, 60, 60]])  # IoU ~0.3 -> still overlap or centroid match
    ids2, _ = tr.update([[165, 110, 60, 60]])  # IoU ~0.26 < 0.3: centroid fallback (35 px < 0.6*60)
    assert ids == ids2 == [1]


def test_new_face_gets_new_id_and_ids_never_reused() -> None:
    tr = IouTracker(max_missed=2)
    assert tr.update([[0, 0, 50, 50]])[0] == [1]
    ids, _ = tr.update([[0, 0, 50, 50], [300, 300, 50, 50]])
    assert ids == [1, 2]
    # a much bigger face right next to track 1 is someone else, not a centroid match
    ids, _ = tr.update([[2, 0, 50, 50], [300, 300, 50, 50], [20, 20, 200, 200]])
    assert ids[:2] == [1, 2] and ids[2] == 3


def test_expiry_after_max_missed() -> None:
    tr = IouTracker(max_missed=3)
    tr.update([[0, 0, 50, 50]])
    expired_at = None
    for i in range(1, 6):
        _, expired = tr.update([])
        if expired:
            expired_at = i
            assert expired == [1]
            break
    assert expired_at == 4  # missed 1, 2, 3 are tolerated; the 4th miss expires it
    assert tr.tracks == []
    ids, _ = tr.update([[0, 0, 50, 50]])
    assert ids == [2]  # same place, but the old track is gone: a fresh id


def test_short_gap_keeps_id() -> None:
    tr = IouTracker(max_missed=5)
    tr.update([[10, 10, 50, 50]])
    for _ in range(3):
        tr.update([])
    assert [t.id for t in tr.visible] == []
    ids, _ = tr.update([[12, 10, 50, 50]])
    assert ids == [1]


# -- smoothing -----------------------------------------------------------------------------

def test_window_equals_eq26_mean() -> None:
    n = 10
    p = _dists(25)
    sm = WindowSmoother(n)
    for t in range(len(p)):
        out = sm.update(7, p[t])
        expected = p[max(0, t - n + 1):t + 1].mean(0)  # Eq. 26 (fewer than N at the start)
        np.testing.assert_allclose(out, expected, atol=1e-12)
        assert abs(out.sum() - 1) < 1e-9  # stays on the simplex


def test_window_is_per_track() -> None:
    sm = WindowSmoother(5)
    a, b = np.eye(7)[3], np.eye(7)[5]
    for _ in range(5):
        sa, sb = sm.update(1, a), sm.update(2, b)
    np.testing.assert_allclose(sa, a)
    np.testing.assert_allclose(sb, b)  # no mixing between people
    sm.forget(1)
    np.testing.assert_allclose(sm.update(1, b), b)  # history of a forgotten track is gone


def test_ema_and_none() -> None:
    p = _dists(5)
    ema = EmaSmoother(alpha=0.25)
    s = ema.update(1, p[0])
    np.testing.assert_allclose(s, p[0])
    for t in range(1, 5):
        prev = s
        s = ema.update(1, p[t])
        np.testing.assert_allclose(s, 0.25 * p[t] + 0.75 * prev)
    assert EmaSmoother(window=10).alpha == pytest.approx(2 / 11)
    assert NoSmoother().update(1, p[0]) is None


def test_make_smoother_validates() -> None:
    assert isinstance(make_smoother("window", 4), WindowSmoother)
    for mode in ("median", "shared"):  # the thesis's shared buffer is the research kit's
        with pytest.raises(FerlabError, match="unknown smoothing"):
            make_smoother(mode)
    with pytest.raises(FerlabError, match="window"):
        make_smoother("window", 0)
    with pytest.raises(FerlabError, match="alpha"):
        make_smoother("ema", 10, 1.5)


def test_assignment_is_optimal_not_greedy() -> None:
    """Greedy would give the best-overlapping pair first (track 1 <-> the first box) and leave
    track 2 nothing; the optimal assignment (SciPy's Hungarian solver) keeps both people."""
    tr = IouTracker()
    assert tr.update([[0, 0, 10, 10], [5, 0, 10, 10]])[0] == [1, 2]
    iou = iou_matrix([[0, 0, 10, 10], [5, 0, 10, 10]], [[2, 0, 10, 10], [-3, 0, 10, 10]])
    assert iou[0, 0] > iou[0, 1] >= 0.3 and iou[1, 0] >= 0.3 > iou[1, 1]
    ids, expired = tr.update([[2, 0, 10, 10], [-3, 0, 10, 10]])
    assert ids == [2, 1] and expired == []


# -- trustworthy tracks (confirmation, gaps, appearance, frames) -----------------------------

def _desc(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(256).astype(np.float32)
    v -= v.mean()
    return v / np.linalg.norm(v)


def test_one_frame_false_face_never_gets_an_id() -> None:
    tr = IouTracker(confirm=3)
    person = [100, 100, 80, 80]
    seen: list[int | None] = []
    for t in range(8):
        boxes = [person] + ([[400, 300, 60, 60]] if t == 2 else [])  # a false face in frame 2 only
        ids, _ = tr.update(boxes)
        seen += ids
    assert seen[:2] == [None, None]  # the person: tentative for two frames, then id 1
    assert {i for i in seen if i is not None} == {1}  # the false face never got an id
    assert tr._next_id == 2


def test_tentative_face_tolerates_one_miss_then_confirms() -> None:
    tr = IouTracker(confirm=3)
    box = [[50, 50, 60, 60]]
    assert tr.update(box)[0] == [None]
    tr.update([])  # missed once
    assert tr.update(box)[0] == [None]
    assert tr.update(box)[0] == [1]


@pytest.mark.parametrize("gap", [1, 5, 14])
def test_gap_of_k_frames_keeps_the_id(gap: int) -> None:
    """A face lost for up to max_missed frames is re-acquired, even when it moved meanwhile."""
    tr = IouTracker(confirm=3, max_missed=15, appearance_threshold=0.5)
    d = _desc(1)
    for t in range(5):
        ids, _ = tr.update([[100 + 2 * t, 100, 80, 80]], [d])
    assert ids == [1]
    for _ in range(gap):
        tr.update([], [])
    ids, expired = tr.update([[100 + 2 * (5 + gap) + 60, 110, 84, 84]], [d])  # moved ~0.7 box sides
    assert ids == [1] and expired == []


def test_gap_longer_than_max_missed_gives_new_id() -> None:
    tr = IouTracker(confirm=1, max_missed=3)
    tr.update([[0, 0, 50, 50]])
    for _ in range(4):
        tr.update([])
    assert tr.update([[0, 0, 50, 50]])[0] == [2]


def test_one_person_in_view_is_one_id_after_a_gap() -> None:
    tr = IouTracker(confirm=1, max_missed=15, appearance_threshold=0.5)
    d = _desc(2)
    tr.update([[50, 50, 80, 80]], [d])
    tr.update([[52, 50, 80, 80]], [d])
    for _ in range(6):
        tr.update([], [])
    ids, _ = tr.update([[400, 200, 90, 90]], [d])  # far away but the only face, same appearance
    assert ids == [1]


def test_different_face_taking_the_place_gets_new_id() -> None:
    tr = IouTracker(confirm=1, appearance_threshold=0.5)
    a, b = _desc(3), _desc(4)
    assert abs(float(a @ b)) < 0.3
    for _ in range(4):
        ids, _ = tr.update([[100, 100, 80, 80]], [a])
    assert ids == [1]
    ids, _ = tr.update([[102, 100, 80, 80]], [b])  # same place, someone else
    assert ids == [2]
    no_gate = IouTracker(confirm=1)  # position only: the old id would continue
    for desc in (a, a, a, b):
        ids, _ = no_gate.update([[100, 100, 80, 80]], [desc])
    assert ids == [1]


def test_crossing_faces_keep_their_ids_by_appearance() -> None:
    tr = IouTracker(confirm=1, appearance_threshold=0.5)
    a, b = _desc(5), _desc(6)
    for t in range(21):  # A goes right, B goes left, they overlap around t = 10
        xa, xb = 100 + 15 * t, 400 - 15 * t
        ids, _ = tr.update([[xa, 100, 80, 80], [xb, 104, 80, 80]], [a, b])
        assert ids == [1, 2], t


def test_end_all_is_a_cut() -> None:
    tr = IouTracker(confirm=1)
    tr.update([[0, 0, 50, 50], [100, 0, 50, 50]])
    assert tr.end_all() == [1, 2]
    assert tr.update([[0, 0, 50, 50]])[0] == [3]


def test_window_is_over_frames_not_observations() -> None:
    """Eq. 26 over the last N frames: after a gap, what was seen before it drops out."""
    sm = WindowSmoother(4)
    a, b = np.eye(7)[0], np.eye(7)[1]
    sm.update(1, a, frame=0)
    sm.update(1, a, frame=1)
    np.testing.assert_allclose(sm.update(1, b, frame=3), (2 * a + b) / 3)  # frames 0..3
    np.testing.assert_allclose(sm.update(1, b, frame=4), (a + 2 * b) / 3)  # frame 0 out
    np.testing.assert_allclose(sm.update(1, b, frame=20), b)  # long gap: only the new frame


def test_ema_over_frames_decays_across_a_gap() -> None:
    ema = EmaSmoother(alpha=0.5)
    a, b = np.eye(7)[0], np.eye(7)[1]
    ema.update(1, a, frame=0)
    np.testing.assert_allclose(ema.update(1, b, frame=3), 0.125 * a + 0.875 * b)  # (1 - a)^3 kept
