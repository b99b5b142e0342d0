"""What the pipeline returns per face and per frame.

The dict shapes are a contract: the web server sends ``FrameResult.to_dict()`` to browsers
and the JSONL files are read by other tools, so keys never change meaning and a face always
has every key (``track_id``/``smoothed`` are ``null`` when there is no tracking/smoothing,
e.g. for a single photo). ``uncertain`` and ``uncertainty`` are ``null`` for a model without
a calibration on record (see :class:`ferlab.inference.recognizer.Calibration`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Six decimals keep JSONL/CSV compact and are far below any difference that matters.
_DECIMALS = 6


def _dist(p: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    return {n: round(float(v), _DECIMALS) for n, v in zip(names, p)}


@dataclass
class Face:
    """One detected face: ``box`` is (x, y, w, h) in pixels of the input image."""

    box: tuple[int, int, int, int]
    probs: np.ndarray
    class_names: Sequence[str]
    track_id: int | None = None
    smoothed: np.ndarray | None = None
    # 1 - max of the temperature-scaled displayed distribution, and whether it reaches the
    # model's threshold (both chosen on PublicTest); None without a calibration
    uncertainty: float | None = None
    uncertain: bool | None = None
    # degrees the photo was turned clockwise before this face was found and read (a sideways
    # photo, option ``rotate``); the box is in the photo's own pixels either way
    rotation: int = 0

    @property
    def display_probs(self) -> np.ndarray:
        """The distribution the label comes from: smoothed when available (Eq. 26)."""
        return self.smoothed if self.smoothed is not None else self.probs

    @property
    def label(self) -> str:
        return str(self.class_names[int(np.argmax(self.display_probs))])

    @property
    def confidence(self) -> float:
        return float(np.max(self.display_probs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [int(v) for v in self.box],
            "track_id": None if self.track_id is None else int(self.track_id),
            "label": self.label,
            "confidence": round(self.confidence, _DECIMALS),
            "probs": _dist(self.probs, self.class_names),
            "smoothed": None if self.smoothed is None else _dist(self.smoothed, self.class_names),
            "uncertain": None if self.uncertain is None else bool(self.uncertain),
            "uncertainty": None if self.uncertainty is None else round(float(self.uncertainty), _DECIMALS),
            **({"rotation": int(self.rotation)} if self.rotation else {}),
        }


@dataclass
class FrameResult:
    """All faces of one frame; ``time`` is seconds from the start of the stream."""

    frame: int
    time: float
    faces: list[Face] = field(default_factory=list)
    detected: bool = True  # False on frames where boxes were carried over by the tracker

    def to_dict(self) -> dict[str, Any]:
        return {"frame": int(self.frame), "time": round(float(self.time), _DECIMALS),
                "faces": [f.to_dict() for f in self.faces]}
