"""Which face is which across frames, so each person gets their own smoothing window.

Algorithm 1 of the thesis averages every face into one buffer, so with two people on screen
the displayed emotion is a mix of both. Here detections are matched to tracks by IoU (faces
move little between frames at 15-30 fps), with a centroid-distance fallback for fast moves
where boxes stop overlapping. Each pass is an optimal assignment (Hungarian method,
:func:`scipy.optimize.linear_sum_assignment`) over the pairs that pass its threshold.

What makes the ids trustworthy:

* **confirmation**: a new face is *tentative* until it has been matched in ``confirm``
  detection rounds (one miss in between is allowed); only then does it get an id. A false
  face the detector fires on for a frame or two never gets one, and is never shown.
* **matching cascade**: confirmed tracks are matched before tentative ones, so a stray
  detection next to a person never steals that person's track.
* **re-acquisition**: a confirmed track that lost its face keeps its id for ``max_missed``
  rounds; when a face reappears after a gap the gate widens with the gap (the person moved
  meanwhile), and if exactly one confirmed track is lost and exactly one face is left over,
  that face is taken as the same person wherever it is (one person in view = one id), as long
  as its size and appearance agree.
* **appearance gate**: each track keeps a small descriptor of its face (the 48x48 crop shrunk
  to 16x16, zero-mean, unit length; :func:`face_descriptor`); a detection whose descriptor
  correlates less than ``appearance_threshold`` with the track's is not that person, even in
  the same place, so a different face taking a place starts a new track (and new smoothing).
  On the bundled clip the same face in consecutive frames correlates at 0.74 or more in 99% of
  cases, two different faces at 0.45 (median); FER2013 faces at 0.08.
* **scene cuts** are detected by the session from frame statistics and end every track
  (:meth:`IouTracker.end_all`).

Ids start at 1 and are never reused, so ids in JSONL/CSV identify one person.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DESCRIPTOR_SIDE = 16


def face_descriptor(face_u8: np.ndarray) -> np.ndarray:
    """A 256-value appearance descriptor of a 48x48 face crop: shrunk to 16x16 by pixel
    averaging, zero mean, unit length; the dot product of two is their correlation."""
    import cv2

    small = cv2.resize(face_u8, (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), interpolation=cv2.INTER_AREA)
    v = small.astype(np.float32).ravel()
    v -= v.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else v


@dataclass
class Track:
    id: int | None  # None while tentative (not yet confirmed)
    box: np.ndarray  # (x, y, w, h) float, last matched box
    hits: int = 1
    missed: int = 0  # consecutive detection rounds without a match
    descriptor: np.ndarray | None = None
    pending: list[Any] = field(default_factory=list)  # what a session saw before confirmation

    @property
    def confirmed(self) -> bool:
        return self.id is not None


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (x, y, w, h) box in ``a`` against every box in ``b``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ax1, ay1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _centroid_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Centre distance in units of the mean box side, so the threshold is scale-free."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ca = a[:, :2] + a[:, 2:] / 2
    cb = b[:, :2] + b[:, 2:] / 2
    d = np.linalg.norm(ca[:, None] - cb[None], axis=2)
    side = (a[:, 2:].mean(1)[:, None] + b[:, 2:].mean(1)[None]) / 2
    return d / np.maximum(side, 1e-9)


def _assign(score: np.ndarray, ok: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, col) with ``ok`` that match as many rows as possible and, among those
    matchings, maximise the total ``score``; each row and column is used at most once."""
    if not ok.any():
        return []
    from scipy.optimize import linear_sum_assignment

    # A pair that is not ok costs more than any set of allowed pairs can save, so the solver
    # uses one only where the matrix shape forces it; such pairs are dropped from the answer.
    forbidden = (float(np.abs(score[ok]).max()) + 1.0) * 2 * (min(score.shape) + 1)
    rows, cols = linear_sum_assignment(np.where(ok, -score, forbidden))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]


class IouTracker:
    """IoU matching with centroid fallback (an optimal assignment in each pass), confirmation,
    re-acquisition and an appearance gate (module docstring); ids start at 1, never reused.

    ``max_missed``: detection rounds a confirmed face may be lost (blink of the detector, hand
    in front) before its track and its smoothing history are dropped. ``max_size_ratio`` stops
    a centroid match between boxes of very different size (a new face appearing near an old
    one). ``confirm``: detection rounds a new face must be seen in before it gets an id (1 =
    at once, as the thesis's pipeline). ``appearance_threshold``: least descriptor correlation
    for a detection to continue a track (0 = position only; needs descriptors in
    :meth:`update`).
    """

    TENTATIVE_MAX_MISSED = 1  # a tentative face may be missed once ("seen in 3 of the last 4")
    REACQUIRE_MAX_SIDES = 3.0  # the widened gate after a gap, in box sides

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10, centroid_threshold: float = 0.6,
                 max_size_ratio: float = 1.6, confirm: int = 1, appearance_threshold: float = 0.0) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.centroid_threshold = centroid_threshold
        self.max_size_ratio = max_size_ratio
        self.confirm = max(1, int(confirm))
        self.appearance_threshold = float(appearance_threshold)
        self.tracks: list[Track] = []
        self.last_tracks: list[Track] = []  # the track of each box of the latest update
        self._next_id = 1

    def reset(self) -> None:
        self.tracks = []
        self.last_tracks = []
        self._next_id = 1

    def end_all(self) -> list[int]:
        """End every track (a scene cut): returns the confirmed ids; they are never reused."""
        ids = [t.id for t in self.tracks if t.id is not None]
        self.tracks = []
        self.last_tracks = []
        return ids

    @property
    def visible(self) -> list[Track]:
        """Confirmed tracks matched in the latest detection round (what is on screen now)."""
        return [t for t in self.tracks if t.missed == 0 and t.confirmed]

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def update(self, boxes: np.ndarray, descriptors: np.ndarray | None = None) -> tuple[list[int | None], list[int]]:
        """Match this frame's detections; returns (track id per box in input order, None for a
        face not yet confirmed; ids that expired). ``descriptors``: one
        :func:`face_descriptor` per box, for the appearance gate."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        n_d = len(boxes)
        desc = None if descriptors is None or not len(boxes) else np.asarray(descriptors, np.float32).reshape(n_d, -1)
        assigned: list[int | None] = [None] * n_d
        matched: set[int] = set()
        tracks = self.tracks
        if tracks and n_d:
            tboxes = np.stack([t.box for t in tracks])
            iou = iou_matrix(tboxes, boxes)
            cdist = _centroid_distance(tboxes, boxes)
            ts = tboxes[:, 2:].mean(1)[:, None]
            ds = boxes[:, 2:].mean(1)[None]
            ratio = np.maximum(ts, ds) / np.maximum(np.minimum(ts, ds), 1e-9)
            same = np.ones((len(tracks), n_d), bool)  # appearance gate
            if desc is not None and self.appearance_threshold > 0:
                for ti, t in enumerate(tracks):
                    if t.descriptor is not None and t.hits >= 2:
                        same[ti] = desc @ t.descriptor >= self.appearance_threshold
            confirmed = np.array([t.confirmed for t in tracks])
            missed = np.array([t.missed for t in tracks], np.float64)[:, None]
            lost = (missed > 0) & confirmed[:, None]
            reach = np.minimum(self.centroid_threshold * (1 + missed), self.REACQUIRE_MAX_SIDES)
            passes = [
                (iou, iou >= self.iou_threshold),
                (-cdist, (cdist <= self.centroid_threshold) & (ratio <= self.max_size_ratio)),
                (-cdist, lost & (cdist <= reach) & (ratio <= self.max_size_ratio)),  # re-acquire after a gap
            ]
            # confirmed tracks first (matching cascade), then tentative ones with what is left
            for rows in (confirmed, ~confirmed):
                for score, ok in passes:
                    free = ok & same & rows[:, None]
                    free[list(matched), :] = False
                    free[:, [di for di in range(n_d) if assigned[di] is not None]] = False
                    for ti, di in _assign(score, free):
                        matched.add(ti)
                        assigned[di] = ti
            # one person in view = one id: a sole lost track takes a sole leftover face
            left = [di for di in range(n_d) if assigned[di] is None]
            alive = [ti for ti, t in enumerate(tracks) if t.confirmed and ti not in matched]
            others = [ti for ti, t in enumerate(tracks) if t.confirmed and ti in matched]
            if len(left) == 1 and len(alive) == 1 and not others:
                ti, di = alive[0], left[0]
                if tracks[ti].missed > 0 and same[ti, di] and ratio[ti, di] <= self.max_size_ratio * 1.25:
                    matched.add(ti)
                    assigned[di] = ti
        out: list[Track] = []
        for di, ti in enumerate(assigned):
            d = None if desc is None else desc[di]
            if ti is None:
                track = Track(self._new_id() if self.confirm <= 1 else None, boxes[di].copy(), descriptor=d)
                tracks.append(track)
            else:
                track = tracks[ti]
                track.box = boxes[di].copy()
                track.hits += 1
                track.missed = 0
                if d is not None:
                    track.descriptor = d if track.descriptor is None else _blend(track.descriptor, d)
                if track.id is None and track.hits >= self.confirm:
                    track.id = self._new_id()
            out.append(track)
        seen = {id(t) for t in out}
        expired: list[int] = []
        kept: list[Track] = []
        for track in tracks:
            if id(track) not in seen:
                track.missed += 1
                limit = self.max_missed if track.confirmed else self.TENTATIVE_MAX_MISSED
                if track.missed > limit:
                    if track.id is not None:
                        expired.append(track.id)
                    continue
            kept.append(track)
        self.tracks = kept
        self.last_tracks = out
        return [t.id for t in out], expired


def _blend(old: np.ndarray, new: np.ndarray, alpha: float = 0.3) -> np.ndarray:
    """Running appearance of a track: follows slow changes (turning, light), not one bad frame."""
    v = (1 - alpha) * old + alpha * new
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else v
