"""The thesis's Algorithm 1 smoothing (one buffer for all faces), kept in the research kit:
the loop verbatim, and a session of the product's pipeline that uses it."""
from __future__ import annotations

import numpy as np
import pytest

from ferlab.errors import FerlabError
from ferlab.inference import Recognizer
from ferlab.inference.options import InferenceOptions
from ferlab.research.experiments.shared_buffer import SharedBufferSmoother, shared_buffer_session

from test_inference_recognizer import face_img, rec, two_face_frames  # noqa: F401 - fixtures


def _dists(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.random((n, 7))
    return p / p.sum(1, keepdims=True)


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


def test_not_a_product_option() -> None:
    with pytest.raises(FerlabError, match="unknown smoothing"):
        InferenceOptions(smoothing="shared")


def test_session_smooths_all_faces_with_one_buffer(rec: Recognizer, face_img: np.ndarray) -> None:
    """Two people through the product's pipeline: each face shows the mean of the one buffer
    of the last N entries of both, as Algorithm 1 does."""
    sess = shared_buffer_session(rec, window=10, confirm=1)
    assert isinstance(sess.smoother, SharedBufferSmoother) and sess.tracker.confirm == 1
    buffer: list[np.ndarray] = []
    for f in two_face_frames(face_img, 8):
        for face in sess.process(f).faces:
            buffer = (buffer + [face.probs])[-10:]
            np.testing.assert_allclose(face.smoothed, np.mean(buffer, axis=0), atol=1e-9)
