"""Drawing results on frames: box, track id, smoothed label + confidence, the whole
distribution as bars (Algorithm 1, line 15) and the frame rate. A face flagged ``uncertain``
gets a grey box and the label "uncertain (happy 41%)", its bars unchanged.

Sizes are derived from the frame so the same code is legible on a 640x360 webcam frame and on
a 1080p video: every length is multiplied by ``u`` (1.0 at 720p). Only OpenCV primitives are
used, so it works in the headless build and in the server.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

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


def color_of(name: str, index: int = 0) -> tuple[int, int, int]:
    return CLASS_COLORS.get(name, _FALLBACK[index % len(_FALLBACK)])


def unit(shape: tuple[int, ...]) -> float:
    """Size unit of a frame: 1.0 at 1280x720, 0.5 at 640x360/480, 1.5 at 1080p."""
    h, w = shape[:2]
    return max(0.35, min(w, h * 16 / 9) / 1280)


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


def _bars(img: np.ndarray, face: Face, box: Sequence[int], u: float, taken: list[tuple[int, int, int, int]]) -> None:
    """The full distribution next to the face: right of the box, else left, below or above,
    whichever stays inside the frame and overlaps the fewest faces and other panels
    (``taken``, updated here), so several people stay readable on a small frame."""
    h, w = img.shape[:2]
    probs = face.display_probs
    names = list(face.class_names)
    fs = max(0.33, 0.5 * u)
    thick = 1 if u < 1.6 else 2
    (nw, nh), _ = cv2.getTextSize(max(names, key=len), FONT, fs, thick)
    row = int(nh * 1.9) + 1
    bar_w = max(40, int(110 * u))
    pad = max(3, int(6 * u))
    pw = pad * 3 + nw + bar_w
    ph = pad * 2 + row * len(names)
    x, y, bw, bh = (int(v) for v in box)
    candidates = [(x + bw + pad, y), (x - pad - pw, y), (x, y + bh + pad), (x, y - pad - ph)]
    best: tuple[float, int, int] | None = None
    for cx, cy in candidates:
        fits = 0 <= cx and cx + pw <= w and 0 <= cy and cy + ph <= h
        cx, cy = int(np.clip(cx, 0, max(0, w - pw))), int(np.clip(cy, 0, max(0, h - ph)))
        cost = sum(_overlap((cx, cy, pw, ph), r) for r in taken) + (0 if fits else 0.5 * pw * ph)
        if best is None or cost < best[0]:
            best = (cost, cx, cy)
        if cost == 0:
            break
    assert best is not None
    _, px, py = best
    taken.append((px, py, pw, ph))
    _darken(img, px, py, px + pw, py + ph)
    top = int(np.argmax(probs))
    for i, (name, p) in enumerate(zip(names, probs)):
        ty = py + pad + row * i + (row + nh) // 2
        col = (255, 255, 255) if i == top else (190, 190, 190)
        cv2.putText(img, name, (px + pad, ty), FONT, fs, col, thick, cv2.LINE_AA)
        bx = px + pad * 2 + nw
        by0, by1 = py + pad + row * i + row // 5, py + pad + row * (i + 1) - row // 5
        cv2.rectangle(img, (bx, by0), (bx + bar_w, by1), (90, 90, 90), 1)
        fill = int(round(bar_w * float(np.clip(p, 0, 1))))
        if fill > 0:
            cv2.rectangle(img, (bx, by0), (bx + fill, by1), color_of(name, i), -1)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(max(0, iw) * max(0, ih))


def annotate(frame: np.ndarray, frame_result: FrameResult | Sequence[Face], fps: float | None = None,
             *, bars: bool = True) -> np.ndarray:
    """A copy of ``frame`` (any depth/channels; returned as 8-bit BGR) with the results drawn."""
    img = to_bgr(frame).copy()
    faces = frame_result.faces if isinstance(frame_result, FrameResult) else list(frame_result)
    h, w = img.shape[:2]
    u = unit(img.shape)
    thick = max(1, int(round(2 * u)))
    fs = max(0.4, 0.75 * u)
    taken: list[tuple[int, int, int, int]] = [tuple(int(v) for v in f.box) for f in faces]  # type: ignore[misc]
    for face in faces:
        x, y, bw, bh = (int(v) for v in face.box)
        names = list(face.class_names)
        color = color_of(face.label, names.index(face.label) if face.label in names else 0)
        tag = f"#{face.track_id} " if face.track_id is not None else ""
        text = f"{tag}{face.label} {face.confidence * 100:.0f}%"
        if face.uncertain:  # drawn as such: grey, "uncertain", the top class still named
            color = UNCERTAIN_COLOR
            text = f"{tag}uncertain ({face.label} {face.confidence * 100:.0f}%)"
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, thick)
        (tw, th), base = cv2.getTextSize(text, FONT, fs, thick)
        ty = y - base - 3 if y - th - base - 6 >= 0 else y + th + 3  # inside the box at the top edge
        tx = int(np.clip(x, 2, max(2, w - tw - 2)))
        _text(img, text, (tx, ty), fs, thick, (0, 0, 0), bg=color)
        if bars:
            _bars(img, face, (x, y, bw, bh), u, taken)
    if fps is not None:
        label = f"{fps:.1f} fps  {len(faces)} face{'s' if len(faces) != 1 else ''}"
        (tw, th), base = cv2.getTextSize(label, FONT, fs, thick)
        _text(img, label, (int(8 * u) + 2, int(8 * u) + th + 2), fs, thick, (255, 255, 255), bg=(0, 0, 0))
    return img
