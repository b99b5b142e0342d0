"""Temporal smoothing of per-frame probabilities (thesis section 4.12, Eq. 26).

Raw per-frame predictions flicker (Table 5: N=1 is "very jittery"). Every smoother here keeps
its state per key (a track id), so two people never share a history. Time is counted in
frames: ``update(key, probs, frame=i)`` makes the window "the last N frames" (Eq. 26), so after
a face was lost for a while the observations from before the gap drop out as frames pass,
instead of being averaged with the new ones. Without ``frame`` the observations of a key are
counted instead (the same thing when a face is seen in every frame). The thesis's own loop,
one buffer for every face (Algorithm 1), is the research kit's
(:mod:`ferlab.research.experiments.shared_buffer`).
"""
from __future__ import annotations

from collections import deque
from typing import Hashable, Protocol

import numpy as np

from ..errors import FerlabError
from .options import DEFAULTS, SMOOTHING_MODES


class Smoother(Protocol):
    name: str

    def update(self, key: Hashable, probs: np.ndarray, frame: int | None = None) -> np.ndarray | None:
        """Add the probabilities of ``key`` in frame ``frame`` (default: its next observation);
        return the smoothed ones (None = off)."""
        ...

    def forget(self, key: Hashable) -> None:
        """Drop a finished track's history (keeps memory flat on long videos)."""
        ...

    def reset(self) -> None: ...


class WindowSmoother:
    """Mean of a track's distributions in the last ``n`` frames (Eq. 26): frames ``i - n + 1``
    to ``i``, so fewer than ``n`` values when the face was missed in some of them. The mean of
    points on the simplex stays on the simplex, so the result is still a distribution."""

    name = "window"

    def __init__(self, n: int = 10) -> None:
        if n < 1:
            raise FerlabError(f"smoothing window must be >= 1, got {n}")
        self.n = int(n)
        self._buffers: dict[Hashable, deque[tuple[int, np.ndarray]]] = {}
        self._count: dict[Hashable, int] = {}

    def update(self, key: Hashable, probs: np.ndarray, frame: int | None = None) -> np.ndarray:
        if frame is None:
            frame = self._count.get(key, -1) + 1
        self._count[key] = frame
        buf = self._buffers.setdefault(key, deque(maxlen=self.n))
        buf.append((int(frame), np.asarray(probs, np.float64)))
        while buf[0][0] <= frame - self.n:
            buf.popleft()
        return np.mean([p for _, p in buf], axis=0)

    def forget(self, key: Hashable) -> None:
        self._buffers.pop(key, None)
        self._count.pop(key, None)

    def reset(self) -> None:
        self._buffers.clear()
        self._count.clear()


class EmaSmoother:
    """Exponential moving average ``s = a p + (1 - a) s``, starting at the first frame.

    Reacts to a change of expression without the hard N-frame delay of the window and needs
    no buffer. The default ``alpha = 2 / (N + 1)`` gives the same mean age of the data
    ((N - 1) / 2 frames) as a window of N, so the two modes are comparable. Over frames: after
    a gap of ``g`` frames the old state keeps the weight ``(1 - alpha) ** g`` it would have had.
    """

    name = "ema"

    def __init__(self, alpha: float | None = None, window: int = 10) -> None:
        alpha = 2.0 / (window + 1) if alpha is None else float(alpha)
        if not 0 < alpha <= 1:
            raise FerlabError(f"EMA alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self._state: dict[Hashable, tuple[int | None, np.ndarray]] = {}

    def update(self, key: Hashable, probs: np.ndarray, frame: int | None = None) -> np.ndarray:
        p = np.asarray(probs, np.float64)
        prev = self._state.get(key)
        if prev is None:
            s = p.copy()
        else:
            gap = 1 if frame is None or prev[0] is None else max(1, int(frame) - prev[0])
            keep = (1.0 - self.alpha) ** gap
            s = (1.0 - keep) * p + keep * prev[1]
        self._state[key] = (None if frame is None else int(frame), s)
        return s

    def forget(self, key: Hashable) -> None:
        self._state.pop(key, None)

    def reset(self) -> None:
        self._state.clear()


class NoSmoother:
    """Raw per-frame predictions (``smoothed`` is null in the output)."""

    name = "none"

    def update(self, key: Hashable, probs: np.ndarray, frame: int | None = None) -> None:
        return None

    def forget(self, key: Hashable) -> None:
        pass

    def reset(self) -> None:
        pass


def make_smoother(mode: str = DEFAULTS.smoothing, window: int = DEFAULTS.window,
                  ema_alpha: float | None = DEFAULTS.ema_alpha) -> Smoother:
    if mode == "window":
        return WindowSmoother(window)
    if mode == "ema":
        return EmaSmoother(ema_alpha, window)
    if mode == "none":
        return NoSmoother()
    raise FerlabError(f"unknown smoothing {mode!r}; choose one of {', '.join(SMOOTHING_MODES)}")
