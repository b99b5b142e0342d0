"""Which face is which across frames, so each person gets their own smoothing window.

Algorithm 1 of the thesis averages every face into one buffer, so with two people on screen
the displayed emotion is a mix of both. Here detections are matched to tracks by IoU (faces
move little between frames at 15-30 fps), with a centroid-distance fallback for fast moves
where boxes stop overlapping. Each pass is an optimal assignment (Hungarian method,
:func:`scipy.optimize.linear_sum_assignment`) over the pairs that pass its threshold. A track
that goes unmatched for ``max_missed`` updates is dropped, and its id is never reused, so ids
in JSONL/CSV identify one person.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Track:
    id: int
    box: np.ndarray  # (x, y, w, h) float, last matched box
    hits: int = 1
    missed: int = 0  # consecutive detection rounds without a match


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
    """IoU matching with centroid fallback (an optimal assignment in each pass); ids start
    at 1 and are never reused.

    ``max_missed``: detection rounds a face may be lost (blink of the detector, hand in front)
    before its track and its smoothing history are dropped. ``max_size_ratio`` stops a
    centroid match between boxes of very different size (a new face appearing near an old one).
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10, centroid_threshold: float = 0.6,
                 max_size_ratio: float = 1.6) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.centroid_threshold = centroid_threshold
        self.max_size_ratio = max_size_ratio
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks = []
        self._next_id = 1

    @property
    def visible(self) -> list[Track]:
        """Tracks matched in the latest detection round (what is on screen right now)."""
        return [t for t in self.tracks if t.missed == 0]

    def update(self, boxes: np.ndarray) -> tuple[list[int], list[int]]:
        """Match this frame's detections; returns (track id per box in input order, expired ids)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        n_t, n_d = len(self.tracks), len(boxes)
        assigned: list[int | None] = [None] * n_d
        matched_tracks: set[int] = set()
        if n_t and n_d:
            tboxes = np.stack([t.box for t in self.tracks])
            iou = iou_matrix(tboxes, boxes)
            cdist = _centroid_distance(tboxes, boxes)
            ts = tboxes[:, 2:].mean(1)[:, None]
            ds = boxes[:, 2:].mean(1)[None]
            ratio = np.maximum(ts, ds) / np.maximum(np.minimum(ts, ds), 1e-9)
            # pass 1: overlap; pass 2: nearby centre of a similar size (fast motion), among
            # the tracks and detections pass 1 left over
            for score, ok in ((iou, iou >= self.iou_threshold),
                              (-cdist, (cdist <= self.centroid_threshold) & (ratio <= self.max_size_ratio))):
                free = ok.copy()
                free[list(matched_tracks), :] = False
                free[:, [di for di in range(n_d) if assigned[di] is not None]] = False
                for ti, di in _assign(score, free):
                    matched_tracks.add(ti)
                    assigned[di] = ti
        ids: list[int] = []
        for di, ti in enumerate(assigned):
            if ti is None:
                track = Track(self._next_id, boxes[di].copy())
                self._next_id += 1
                self.tracks.append(track)
            else:
                track = self.tracks[ti]
                track.box = boxes[di].copy()
                track.hits += 1
                track.missed = 0
            ids.append(track.id)
        new_ids = set(ids)
        expired: list[int] = []
        kept: list[Track] = []
        for track in self.tracks:
            if track.id not in new_ids:
                track.missed += 1
                if track.missed > self.max_missed:
                    expired.append(track.id)
                    continue
            kept.append(track)
        self.tracks = kept
        return ids, expired
