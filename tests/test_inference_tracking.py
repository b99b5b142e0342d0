"""Tracker and temporal smoothing (Eq. 26, Algorithm 1): pure NumPy, no model, no media."""
from __future__ import annotations

import numpy as np
import pytest

from ferlab.errors import FerlabError
from ferlab.inference.smoothing import (EmaSmoother, NoSmoother, SharedBufferSmoother, WindowSmoother,
                                        make_smoother)
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


def test_shared_buffer_reproduces_algorithm_1() -> None:
    """Two faces per frame; the thesis loop appends face by face into ONE buffer of N."""
    n = 10
    probs = _dists(40, seed=3).reshape(20, 2, 7)
    sm = SharedBufferSmoother(n)
    buffer: list[np.ndarray] = []  # Algorithm 1, written out literally
    for frame in probs:
        for face_id, p in enumerate(frame):
            buffer.append(p)
            buffer = buffer[-n:]  # line 12: keep last N entries
            expected = np.mean(buffer, axis=0)  # line 13
            np.testing.assert_allclose(sm.update(face_id, p), expected, atol=1e-12)
    # and it does mix people: face 0's smoothed output depends on face 1's inputs
    sm2 = SharedBufferSmoother(n)
    sm2.update(0, np.eye(7)[0])
    mixed = sm2.update(1, np.eye(7)[6])
    assert mixed[0] == pytest.approx(0.5) and mixed[6] == pytest.approx(0.5)


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
    assert isinstance(make_smoother("shared", 4), SharedBufferSmoother)
    with pytest.raises(FerlabError, match="unknown smoothing"):
        make_smoother("median")
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
