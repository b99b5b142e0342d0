"""Drawing results on frames: box, track id, smoothed label + confidence, the whole
distribution as bars (Algorithm 1, line 15) and the frame rate. A face flagged ``uncertain``
gets a grey box and the label "uncertain (happy 41%)", its bars unchanged.

Sizes are derived from the frame so the same code is legible on a 640x360 webcam frame and on
a 1080p video: every length is multiplied by ``u`` (1.0 at 720p). Only OpenCV primitives are
used, so it works in the headless build and in the server.

Where the distributions go is planned before anything is drawn (:func:`layout_tags`,
:func:`layout_panels`), so the plan can be tested without reading pixels. A frame of an
audience has many faces close together and no room for a full panel beside each; covering a
neighbour's face or panel would make both unreadable, so every face keeps its distribution in
the largest form that fits without overlapping anything: the full panel, a smaller one with
the same seven rows, or a thin stacked strip under (or just inside) its box.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from ..constants import CLASS_NAMES
from .preprocess import to_bgr
from .results import Face, FrameResult

FONT = cv2.FONT_HERSHEY_SIMPLEX
# BGR; colours chosen to stay distinguishable for the common colour-vision deficiencies
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 230), "disgust": (60, 160, 60), "fear": (160, 60, 160), "happy": (0, 200, 255),
    "neutral": (200, 200, 200), "sad": (220, 120, 30), "surprise": (0, 140, 255),
}
UNCERTAIN_COLOR = (128, 128, 128)  # a face the model cannot read (see Calibration)
_FALLBACK = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167)]
# The second try when the full panel fits nowhere: 0.65 keeps the seven names legible at 720p.
SMALL_SCALE = 0.65
Rect = tuple[int, int, int, int]  # x, y, w, h in pixels; covers x..x+w-1, y..y+h-1


def color_of(name: str, index: int = 0) -> tuple[int, int, int]:
    return CLASS_COLORS.get(name, _FALLBACK[index % len(_FALLBACK)])


def unit(shape: tuple[int, ...]) -> float:
    """Size unit of a frame: 1.0 at 1280x720, 0.5 at 640x360/480, 1.5 at 1080p."""
    h, w = shape[:2]
    return max(0.35, min(w, h * 16 / 9) / 1280)


@dataclass(frozen=True)
class Panel:
    """Where and in which form one face's distribution is drawn: ``full`` and ``small`` are the
    dark panel of names and bars (``scale`` 1 or :data:`SMALL_SCALE`), ``strip`` the stacked
    one-line form that is used when no panel fits."""

    face: int  # index of the face in the frame's list
    kind: Literal["full", "small", "strip"]
    rect: Rect
    scale: float = 1.0


@dataclass(frozen=True)
class Tag:
    """A face's label: the text's origin (baseline left, as ``cv2.putText`` takes it), its font
    scale and thickness, and the rectangle its coloured background covers."""

    org: tuple[int, int]
    rect: Rect
    fs: float
    thick: int


@dataclass(frozen=True)
class _Geometry:
    """Sizes of one panel; the full one (scale 1) is what a single face has always had."""

    fs: float
    thick: int
    name_w: int
    name_h: int
    row: int
    bar_w: int
    pad: int
    rows: int

    @property
    def size(self) -> tuple[int, int]:
        return self.pad * 3 + self.name_w + self.bar_w, self.pad * 2 + self.row * self.rows


@functools.lru_cache(maxsize=64)
def _geometry(names: tuple[str, ...], u: float, scale: float = 1.0) -> _Geometry:
    """Cached: the same few (classes, frame size, scale) recur on every frame of a stream, and
    measuring the longest class name is the costly part."""
    su = u * scale
    fs = max(0.33, 0.5 * u) if scale == 1.0 else max(0.25, max(0.33, 0.5 * u) * scale)
    thick = 1 if su < 1.6 else 2
    (nw, nh), _ = cv2.getTextSize(max(names, key=len) if names else "", FONT, fs, thick)
    return _Geometry(fs, thick, nw, nh, int(nh * 1.9) + 1, max(int(40 * scale), int(110 * su)),
                     max(2 if scale < 1 else 3, int(6 * su)), len(names))


def _line(u: float) -> int:
    """Thickness of a face's box outline."""
    return max(1, int(round(2 * u)))


def _tag_style(u: float) -> tuple[float, int]:
    return max(0.4, 0.75 * u), _line(u)


def _cover(cands: np.ndarray, obstacles: np.ndarray) -> np.ndarray:
    """For (n, 4) candidate rects, the area of the (k, 4) obstacles each covers (x, y, w, h)."""
    if len(obstacles) == 0 or len(cands) == 0:
        return np.zeros(len(cands), np.int64)
    c, o = cands[:, None, :], obstacles[None, :, :]
    iw = np.minimum(c[..., 0] + c[..., 2], o[..., 0] + o[..., 2]) - np.maximum(c[..., 0], o[..., 0])
    ih = np.minimum(c[..., 1] + c[..., 3], o[..., 1] + o[..., 3]) - np.maximum(c[..., 1], o[..., 1])
    return (np.clip(iw, 0, None) * np.clip(ih, 0, None)).sum(axis=1)


def _hits(cands: np.ndarray, obstacles: np.ndarray) -> np.ndarray:
    return _cover(cands, obstacles) > 0


def _grow(r: Rect, m: int) -> Rect:
    return r[0] - m, r[1] - m, r[2] + 2 * m, r[3] + 2 * m


def _order(boxes: Sequence[Rect]) -> list[int]:
    """Largest faces first: they are the ones a viewer looks at, so they get the first choice."""
    return sorted(range(len(boxes)), key=lambda i: (-boxes[i][2] * boxes[i][3], i))


def layout_tags(frame_shape: tuple[int, ...], boxes: Sequence[Sequence[int]], texts: Sequence[str],
                u: float | None = None, obstacles: Sequence[Rect] = ()) -> list[Tag]:
    """Where each face's label goes, ``tags[i]`` for ``boxes[i]``: on the top edge of its box,
    left-aligned (inside the box when there is no room above), as always. In a crowd a label
    wider than its face would cover the neighbour's box or label, so then it is centred or
    right-aligned over its box, moved inside it, written smaller (0.8, then 0.65) or, last,
    put under the box, whichever comes first without covering another face's box or an earlier
    label (largest faces first); failing that, the one clear of other faces that covers the
    least of earlier labels; failing that (labels wider than a face and its gaps), the one
    covering the least of other faces and, a quarter as much, of labels. ``obstacles`` (the
    frame-rate line) count as labels already placed."""
    h, w = frame_shape[:2]
    u = unit(frame_shape) if u is None else u
    fs0, thick0 = _tag_style(u)
    rects: list[Rect] = [tuple(int(v) for v in b) for b in boxes]  # type: ignore[misc]
    faces = np.array([_grow(r, _line(u) // 2 + 1) for r in rects], np.int64).reshape(-1, 4)
    tags: list[Tag | None] = [None] * len(rects)
    placed: list[Rect] = [tuple(int(v) for v in r) for r in obstacles]  # type: ignore[misc]
    for i in _order(rects):
        x, y, bw, bh = rects[i]
        cands: list[Tag] = []
        for edge, shrink in [(e, k) for e in ("top", "bottom") for k in (1.0, 0.8, 0.65)]:
            fs = fs0 if shrink == 1.0 else max(0.33, fs0 * shrink)
            thick = thick0 if shrink == 1.0 else max(1, int(round(thick0 * shrink)))
            (tw, th), base = cv2.getTextSize(texts[i], FONT, fs, thick)
            xs = [x, x + (bw - tw) // 2, x + bw - tw]
            if edge == "top":
                orgs = [(v, y - base - 3) for v in xs] if y - th - base - 6 >= 0 else []
                orgs += [(v, y + th + 3) for v in xs]  # inside the box at the top edge
            else:  # under the box: the last resort before covering a neighbour
                orgs = [(v, y + bh + th + 4) for v in xs] if y + bh + th + base + 6 < h else []
            for ox, oy in orgs:  # the rect is what _text fills
                ox = min(max(int(ox), 2), max(2, w - tw - 2))
                cands.append(Tag((ox, oy), (ox - 2, oy - th - 2, tw + 5, th + base + 5), fs, thick))
        arr = np.array([t.rect for t in cands], np.int64)
        on_face = _cover(arr, np.delete(faces, i, axis=0))
        on_tag = _cover(arr, np.array(placed, np.int64).reshape(-1, 4))
        free = np.flatnonzero(on_face == 0)
        # the first clear of other labels too, else the one covering least of them; if all cover
        # another face, the one covering least of faces (4x) and labels, so it stays legible
        best = cands[int(free[np.argmin(on_tag[free])] if len(free) else np.argmin(4 * on_face + on_tag))]
        tags[i] = best
        placed.append(best.rect)
    return [t for t in tags if t is not None]


def _spans(lo: int, hi: int, anchor: int, steps: int = 12) -> list[int]:
    """Positions from ``lo`` to ``hi``, nearest to ``anchor`` first (sliding along a side)."""
    if hi < lo:
        return []
    vals = {int(round(lo + (hi - lo) * k / steps)) for k in range(steps + 1)}
    if lo <= anchor <= hi:
        vals.add(anchor)
    return sorted(vals, key=lambda v: (abs(v - anchor), v))


def _candidates(frame_shape: tuple[int, ...], box: Rect, top: int, bottom: int, pw: int, ph: int,
                gap: int) -> np.ndarray:
    """Rects of size pw x ph beside ``box``: right, left, below, above (the box and its label
    span rows ``top`` to ``bottom``), first aligned with the box's top-left, then slid along
    their side, nearest first, as far as they still read as this face's: beside it, reaching
    its middle row; under or over it, spanning its whole width (or within it). Only those
    inside the frame."""
    h, w = frame_shape[:2]
    x, y, bw, bh = box
    ys = _spans(max(0, min(y, y + bh // 2 - ph)), min(h - ph, y + bh // 2), y)
    xs = _spans(max(0, min(x, x + bw - pw)), min(w - pw, max(x, x + bw - pw)), x)
    sides = [[(x + bw + gap, v) for v in ys], [(x - gap - pw, v) for v in ys],
             [(v, bottom + gap) for v in xs], [(v, top - gap - ph) for v in xs]]
    ranked = sorted(((s, abs(cx - x) if s >= 2 else abs(cy - y), k, cx, cy)
                     for s, side in enumerate(sides) for k, (cx, cy) in enumerate(side)))
    out = np.array([(cx, cy, pw, ph) for *_, cx, cy in ranked], np.int64).reshape(-1, 4)
    ok = (out[:, 0] >= 0) & (out[:, 1] >= 0) & (out[:, 0] + pw <= w) & (out[:, 1] + ph <= h)
    return out[ok]


def strip_height(u: float) -> int:
    """Height of the compact distribution strip: thin enough to fit under any face."""
    return max(4, int(round(8 * u)))


def layout_panels(frame_shape: tuple[int, ...], boxes: Sequence[Sequence[int]], u: float | None = None, *,
                  class_names: Sequence[Sequence[str]] | None = None, tags: Sequence[Rect] | None = None,
                  obstacles: Sequence[Rect] = ()) -> list[Panel]:
    """The plan for every face's distribution, ``panels[i]`` for ``boxes[i]``.

    Faces are served largest first. Each takes the first of: the full panel, then the
    :data:`SMALL_SCALE` panel, at any of the :func:`_candidates` positions that lies inside the
    frame and overlaps no face box, no panel placed before, no label (``tags[i]`` is face i's,
    see :func:`layout_tags`) and none of ``obstacles`` (the frame-rate line); else the strip,
    as wide as the box, just below it when that is free and otherwise just inside its bottom
    edge, which always fits. ``class_names[i]`` are the rows of face i's panel (default: the
    seven FER classes).
    """
    h, w = frame_shape[:2]
    u = unit(frame_shape) if u is None else u
    rects: list[Rect] = [tuple(int(v) for v in b) for b in boxes]  # type: ignore[misc]
    labels: list[Rect] = [tuple(int(v) for v in t) for t in tags] if tags is not None else []  # type: ignore[misc]
    line = _line(u)
    fixed = [_grow(r, line // 2 + 1) for r in rects] + labels + [tuple(int(v) for v in o) for o in obstacles]
    sep = max(1, int(round(2 * u)))  # keeps neighbouring panels from reading as one
    placed: list[Rect] = []
    plan: list[Panel | None] = [None] * len(rects)
    sh = strip_height(u)
    for i in _order(rects):
        x, y, bw, bh = rects[i]
        names = CLASS_NAMES if class_names is None else class_names[i]
        blocked = np.array(fixed + [_grow(p, sep) for p in placed], np.int64).reshape(-1, 4)
        top, bottom = y, y + bh
        if labels and labels[i][1] + labels[i][3] <= y + 1:  # its label sits on top of the box
            top = min(top, labels[i][1])
        elif labels and labels[i][1] >= y + bh - 1:  # or under it
            bottom = max(bottom, labels[i][1] + labels[i][3])
        for kind, scale in (("full", 1.0), ("small", SMALL_SCALE)):
            g = _geometry(tuple(names), u, scale)
            pw, ph = g.size
            cands = _candidates(frame_shape, rects[i], top, bottom, pw, ph, g.pad)
            free = np.flatnonzero(~_hits(cands, blocked))
            if len(free):
                r = tuple(int(v) for v in cands[free[0]])
                plan[i] = Panel(i, kind, r, scale)  # type: ignore[arg-type]
                break
        else:
            below = np.array([(x, y + bh + line // 2 + 2, bw, sh)], np.int64)
            if y + bh + line // 2 + 2 + sh <= h and 0 <= x and x + bw <= w and not _hits(below, blocked)[0]:
                r = tuple(int(v) for v in below[0])
            else:  # inside the box, above its bottom line, clipped to the frame
                x0, x1 = max(0, x + line), min(w, x + bw - line)
                y1 = min(h, y + bh - line)
                r = (x0, max(0, y1 - sh), max(0, x1 - x0), max(0, min(sh, y1)))
            plan[i] = Panel(i, "strip", r)  # type: ignore[arg-type]
        placed.append(plan[i].rect)  # type: ignore[union-attr]
    return [p for p in plan if p is not None]


def strip_segments(rect: Rect, probs: Sequence[float] | np.ndarray) -> list[tuple[int, int]]:
    """Column ranges [x0, x1) of the strip's segments, one per class in order; widths are the
    probabilities' shares of the strip (rounded at the cumulative edges, so they add up)."""
    p = np.clip(np.asarray(probs, np.float64), 0, None)
    p = p / p.sum() if p.sum() > 0 else np.full(len(p), 1 / max(1, len(p)))
    edges = rect[0] + np.round(rect[2] * np.concatenate([[0.0], np.cumsum(p)])).astype(int)
    edges[-1] = rect[0] + rect[2]
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, thick: int,
          color: tuple[int, int, int], bg: tuple[int, int, int] | None = None, pad: int = 2) -> tuple[int, int]:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    x, y = org
    if bg is not None:
        cv2.rectangle(img, (x - pad, y - th - pad), (x + tw + pad, y + base + pad), bg, -1)
    cv2.putText(img, text, (x, y), FONT, scale, color, thick, cv2.LINE_AA)
    return tw, th + base


def _darken(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.55) -> None:
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        roi[:] = (roi.astype(np.float32) * (1 - alpha)).astype(np.uint8)


def _draw_panel(img: np.ndarray, face: Face, panel: Panel, u: float) -> None:
    """The dark panel: every class name, the top one in white, and its bar."""
    probs, names = face.display_probs, list(face.class_names)
    g = _geometry(tuple(names), u, panel.scale)
    px, py, pw, ph = panel.rect
    _darken(img, px, py, px + pw, py + ph)
    top = int(np.argmax(probs))
    for i, (name, p) in enumerate(zip(names, probs)):
        ty = py + g.pad + g.row * i + (g.row + g.name_h) // 2
        col = (255, 255, 255) if i == top else (190, 190, 190)
        cv2.putText(img, name, (px + g.pad, ty), FONT, g.fs, col, g.thick, cv2.LINE_AA)
        bx = px + g.pad * 2 + g.name_w
        by0, by1 = py + g.pad + g.row * i + g.row // 5, py + g.pad + g.row * (i + 1) - g.row // 5
        cv2.rectangle(img, (bx, by0), (bx + g.bar_w, by1), (90, 90, 90), 1)
        fill = int(round(g.bar_w * float(np.clip(p, 0, 1))))
        if fill > 0:
            cv2.rectangle(img, (bx, by0), (bx + fill, by1), color_of(name, i), -1)


def _draw_strip(img: np.ndarray, face: Face, rect: Rect) -> None:
    """The compact form: one row of class-coloured segments as wide as the probabilities."""
    x, y, _, sh = rect
    for i, (name, (a, b)) in enumerate(zip(face.class_names, strip_segments(rect, face.display_probs))):
        if b > a and sh > 0:
            img[max(0, y):y + sh, max(0, a):b] = color_of(name, i)


def label_of(face: Face) -> tuple[str, tuple[int, int, int]]:
    """A face's label text and colour: its track id, top class and confidence in the class's
    colour, or, flagged uncertain, grey and "uncertain" with the top class still named."""
    tag = f"#{face.track_id} " if face.track_id is not None else ""
    if face.uncertain:
        return f"{tag}uncertain ({face.label} {face.confidence * 100:.0f}%)", UNCERTAIN_COLOR
    names = list(face.class_names)
    return (f"{tag}{face.label} {face.confidence * 100:.0f}%",
            color_of(face.label, names.index(face.label) if face.label in names else 0))


def _fps_line(fps: float, n_faces: int, u: float) -> tuple[str, tuple[int, int], Rect]:
    """The frame-rate line at the top-left: text, origin and the rectangle it covers."""
    fs, thick = _tag_style(u)
    text = f"{fps:.1f} fps  {n_faces} face{'s' if n_faces != 1 else ''}"
    (tw, th), base = cv2.getTextSize(text, FONT, fs, thick)
    org = (int(8 * u) + 2, int(8 * u) + th + 2)
    return text, org, (org[0] - 2, org[1] - th - 2, tw + 5, th + base + 5)


def layout(frame_shape: tuple[int, ...], faces: Sequence[Face], fps: float | None = None, *,
           bars: bool = True) -> tuple[list[Tag], list[Panel]]:
    """Everything :func:`annotate` will draw besides the boxes, ``tags[i]`` and ``panels[i]``
    for ``faces[i]`` (no panels with ``bars=False``): labels first, as they belong to the
    box's edge, then the distributions around them and the frame-rate line."""
    u = unit(frame_shape)
    boxes = [tuple(int(v) for v in f.box) for f in faces]
    obstacles = [] if fps is None else [_fps_line(fps, len(faces), u)[2]]
    tags = layout_tags(frame_shape, boxes, [label_of(f)[0] for f in faces], u, obstacles)
    if not bars:
        return tags, []
    return tags, layout_panels(frame_shape, boxes, u, class_names=[f.class_names for f in faces],
                               tags=[t.rect for t in tags], obstacles=obstacles)


def layout_json(frame_shape: tuple[int, ...], faces: Sequence[Face]) -> dict[str, list[dict[str, Any]]]:
    """:func:`layout`'s plan for a page that draws the faces itself (``ferlab serve``), so the
    page and :func:`annotate` place labels and distributions the same way from one
    computation: ``tags[i]`` (the label's text and the rectangle of its background) and
    ``panels[i]`` (``kind`` full, small or strip, its rectangle and ``scale``) for
    ``faces[i]``, in the frame's pixels. No frame-rate line: the page shows its own."""
    tags, panels = layout(frame_shape, faces)
    return {"tags": [{"text": label_of(f)[0], "rect": [int(v) for v in t.rect]} for f, t in zip(faces, tags)],
            "panels": [{"kind": p.kind, "rect": [int(v) for v in p.rect], "scale": p.scale} for p in panels]}


def annotate(frame: np.ndarray, frame_result: FrameResult | Sequence[Face], fps: float | None = None,
             *, bars: bool = True) -> np.ndarray:
    """A copy of ``frame`` (any depth/channels; returned as 8-bit BGR) with the results drawn
    as :func:`layout` plans them: boxes, the distributions, then labels and the frame rate on
    top."""
    img = to_bgr(frame).copy()
    faces = frame_result.faces if isinstance(frame_result, FrameResult) else list(frame_result)
    u = unit(img.shape)
    fs, thick = _tag_style(u)
    tags, panels = layout(img.shape, faces, fps, bars=bars)
    labels = [label_of(f) for f in faces]
    for face, (_, color) in zip(faces, labels):
        x, y, bw, bh = (int(v) for v in face.box)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, thick)
    for panel in panels:
        if panel.kind == "strip":
            _draw_strip(img, faces[panel.face], panel.rect)
        else:
            _draw_panel(img, faces[panel.face], panel, u)
    for i in reversed(_order([tuple(int(v) for v in f.box) for f in faces])):  # largest faces' labels on top
        _text(img, labels[i][0], tags[i].org, tags[i].fs, tags[i].thick, (0, 0, 0), bg=labels[i][1])
    if fps is not None:
        text, org, _ = _fps_line(fps, len(faces), u)
        _text(img, text, org, fs, thick, (255, 255, 255), bg=(0, 0, 0))
    return img
