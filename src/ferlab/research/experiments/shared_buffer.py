"""The thesis's own smoothing, Algorithm 1: ONE buffer of the last N distributions for every
face of every frame, for reproducing the thesis's behaviour and comparing it with ferlab's.

The product smooths each tracked face on its own (:mod:`ferlab.inference.smoothing`), because
with two people in the frame the shared buffer shows each of them a mix of both
(docs/thesis-deviations.md, "Per-face smoothing"). Here the thesis's loop is kept verbatim, and
:func:`shared_buffer_session` runs the product's per-frame pipeline with it::

    rec = Recognizer.from_pretrained()
    for result in Stream(shared_buffer_session(rec, window=10), "clip.mp4"):
        ...
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Hashable

import numpy as np

from ...errors import FerlabError
from ...inference.options import DEFAULTS

if TYPE_CHECKING:  # pragma: no cover
    from ...inference.recognizer import Recognizer, Session


class SharedBufferSmoother:
    """Algorithm 1, lines 2 and 12-13: one buffer of the last ``n`` distributions of all faces,
    appended face by face in detection order; each face shows the mean of the buffer right
    after its own append. A :class:`~ferlab.inference.smoothing.Smoother`."""

    name = "shared"

    def __init__(self, n: int = DEFAULTS.window) -> None:
        if n < 1:
            raise FerlabError(f"smoothing window must be >= 1, got {n}")
        self.n = int(n)
        self._buffer: deque[np.ndarray] = deque(maxlen=self.n)

    def update(self, key: Hashable, probs: np.ndarray, frame: int | None = None) -> np.ndarray:
        self._buffer.append(np.asarray(probs, np.float64))  # verbatim: entries, not frames
        return np.mean(self._buffer, axis=0)

    def forget(self, key: Hashable) -> None:
        pass  # one buffer for everyone: nothing per face to drop

    def reset(self) -> None:
        self._buffer.clear()


def shared_buffer_session(recognizer: Recognizer, window: int = DEFAULTS.window, **overrides: Any) -> Session:
    """A :class:`~ferlab.inference.recognizer.Session` of ``recognizer`` (stream options
    ``overrides``) whose faces are smoothed by the thesis's shared buffer of ``window`` entries."""
    session = recognizer.session(**overrides)
    session.smoother = SharedBufferSmoother(window)
    return session
