"""Faces at every size: recall, false faces, accuracy and cost of the face detection policy.

    .venv/bin/python maintainers/benchmarks/bench_scale.py --crops facial_expressions --out maintainers/benchmarks/results-scale.txt
    .venv/bin/python maintainers/benchmarks/bench_scale.py --crops facial_expressions --large      # 3x the faces

Real faces, real backgrounds, every size. Faces: every face of the sample photos in the
shared folder (``samples/photos``; not the two ``obama_partial_face*`` ones, whose faces the
photo already cuts; with their own surroundings, a square of 3 face sides around each) and a
class-balanced sample of the LFW-style labelled photos of ``bench_real_photos.py``
(muxspace/facial_expressions, ``--crops DIR``: 350x350 photos that are the face and little
else). Each face is rescaled so that its box (YuNet's square box, found once on the source at a
size YuNet handles well) spans 24, 48, 96, 192, 384, 768 and 1536 px, and 90% of the canvas's
shorter side, and blended (feathered edges) into canvases of 640x480, 1920x1080, 3000x4000
(portrait) and 7680x4320: as many faces per canvas as fit side by side, a third of them fully
inside, a third touching a border and a third 35% cut off by it. Backgrounds are collages of
face-free pieces of real photos: the sample photos and frames of the sample clip away from
every face (faces found by YuNet at five scales down to a 0.3 score and by the Haar cascade,
each with a face side of margin all round) and scikit-learn's two sample photos (a temple, a
flower). Canvases of background alone measure false faces where there is no face at all.

Printed per detection policy (the previous default: one pass at up to 1920 px; the default;
any given with ``--policy NAME=OPTIONS``):

* recall per face size x canvas: a face is found when a box overlaps it with IoU >= 0.5 (both
  clipped to the canvas), for the photo faces and the LFW-style faces apart and together;
* false faces per image: boxes on no face (a second box on a found face counts as false; boxes
  on a face that a source photo holds besides its main one, e.g. the other man of a two-person
  photo, are neither), on canvases with faces and on background-only canvases;
* accuracy through the pipeline per face size (``Recognizer.predict``, the default model): the
  labelled faces on 1920x1080 canvases (3000x4000 at 1536 px), each on the same background at
  every size (:func:`accuracy_scenes`), the predicted label against the annotator's (a face not
  found counts as wrong), how often the label is the one the same face got at 96 px, and, as
  the floor of that, how often it changes when the 96 px face only moves to another place;
* ms per image (median, whole ``predict``) per canvas, and the passes the policy makes on each
  canvas with the milliseconds of each (best of 3).

Timings need an idle machine; recall and accuracy do not. ``--large`` takes three placements of
every photo face and 3x the labelled faces (about 3x the time).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from ferlab.inference.tracker import iou_matrix  # noqa: E402

SHARED = Path(os.environ.get("FERLAB_SHARED", REPO.parent / "shared"))
PHOTOS = SHARED / "samples" / "photos"
CLIP = SHARED / "samples" / "short_hamilton_clip.mp4"

SIZES = (24, 48, 96, 192, 384, 768, 1536)
CANVASES = ((640, 480), (1920, 1080), (3000, 4000), (7680, 4320))  # width x height
FILL = 0.9  # the largest face size measured: this share of the canvas's shorter side
PLACEMENTS = ("inside", "edge", "cut")
CUT = 0.35  # share of a cut-off face's box outside the canvas
IOU_HIT = 0.5
PHOTO_CONTEXT = 3.0  # a photo face is pasted with a square of this many face sides around it
PITCH = {"photo": 2.6, "crop": 1.35}  # grid cell side / face side: faces and their surroundings never overlap
GOAL_RECALL, GOAL_SMALL, GOAL_FALSE, GOAL_ACC = 0.99, 0.90, 0.05, 1.0
ACC_CANVAS = {1536: (3000, 4000)}  # the other sizes: 1920x1080

PREVIOUS = "previous default (one pass, --max-detect-side 1920)"
DEFAULT = "default"


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def size_label(size: int, canvas: tuple[int, int]) -> str:
    return "90%" if size == fill_size(canvas) else str(size)


def fill_size(canvas: tuple[int, int]) -> int:
    return int(round(FILL * min(canvas)))


def canvas_sizes(canvas: tuple[int, int]) -> list[int]:
    """The face sizes measured on a canvas: the fixed ones that fit, then 90% of its short side."""
    return [s for s in SIZES if s < fill_size(canvas)] + [fill_size(canvas)]


# -- faces -------------------------------------------------------------------------------------

@dataclass
class Source:
    """A real face: its image, its square box there and every other face the image holds."""

    name: str
    kind: str  # "photo" (with its surroundings) or "crop" (LFW-style: the face and little else)
    image: np.ndarray
    box: np.ndarray  # (4,) x, y, side, side
    others: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    label: str | None = None


def _yunet(threshold: float = 0.8) -> Any:
    from ferlab.inference.detector import YuNetDetector

    return YuNetDetector(score_threshold=threshold)


def _squares(rows: np.ndarray) -> np.ndarray:
    from ferlab.inference.detector import square_boxes

    return square_boxes(rows) if len(rows) else np.zeros((0, 4))


def _faces_at(det: Any, image: np.ndarray, long_side: int) -> np.ndarray:
    """YuNet's rows on a copy at ``long_side`` px, boxes mapped back to ``image``."""
    s = long_side / max(image.shape[:2])
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    small = cv2.resize(image, (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s))),
                       interpolation=interp)
    rows = det.detect_faces(small).astype(np.float64)
    rows[:, :14] /= s
    return rows


def all_faces(image: np.ndarray, weak: Any) -> np.ndarray:
    """Every face an image may hold, generously: YuNet at five scales down to a 0.3 score."""
    rows = [_faces_at(weak, image, side) for side in (320, 640, 1280, max(image.shape[:2]),
                                                    min(2 * max(image.shape[:2]), 2600))]
    return _squares(np.concatenate(rows)) if rows else np.zeros((0, 4))


def photo_sources(folder: Path) -> list[Source]:
    """Each face of the sample photos (found by YuNet on a 640 px copy, where their faces are
    60-250 px: well inside what it finds), with the photo's other faces."""
    det, weak = _yunet(), _yunet(0.3)
    out = []
    for path in sorted(folder.iterdir()):
        if "partial" in path.name or path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        boxes = _squares(_faces_at(det, image, 640))
        boxes = boxes[boxes[:, 2] >= 40 * max(image.shape[:2]) / 640]
        every = all_faces(image, weak)
        for k, b in enumerate(boxes):
            out.append(Source(f"{path.stem}#{k}" if len(boxes) > 1 else path.stem, "photo", image, b, every))
    return out


def crop_sources(root: Path, per_class: int, seed: int) -> list[Source]:
    """A class-balanced sample of the labelled LFW-style photos (bench_real_photos.py's), each
    with YuNet's one box on it; photos where YuNet finds no face or several are left out."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_real_photos import sample  # noqa: E402 - the same sample rule as the photo benchmark

    det = _yunet()
    out = []
    for path, label in sample(root, per_class, seed):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None or min(image.shape[:2]) < 200:
            continue
        rows = det.detect_faces(image)
        if len(rows) != 1:
            continue
        out.append(Source(path.stem, "crop", image, _squares(rows)[0], label=label))
    return out


# -- backgrounds -----------------------------------------------------------------------------

def background_images(photos: Path, clip: Path) -> list[tuple[str, np.ndarray]]:
    """Real photos for backgrounds: the sample photos, clip frames (the wide shot and the
    close-up, not the audience) and scikit-learn's two sample photos."""
    from sklearn.datasets import load_sample_image

    out = [(n, cv2.cvtColor(load_sample_image(n), cv2.COLOR_RGB2BGR)) for n in ("china.jpg", "flower.jpg")]
    out += [(p.name, cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in sorted(photos.iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    cap = cv2.VideoCapture(str(clip))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i in (5, 100, 140, 180, 205):
            out.append((f"clip#{i}", frame))
        i += 1
    cap.release()
    return out


def face_free_pieces(images: list[tuple[str, np.ndarray]], rng: np.random.Generator,
                     per_image: int = 12) -> list[tuple[str, np.ndarray]]:
    """Random rectangles of each image that keep a face side of margin from every face found
    in it by YuNet (five scales, score >= 0.3) or the Haar cascade."""
    from ferlab.inference.detector import HaarDetector

    weak, haar = _yunet(0.3), HaarDetector()
    pieces = []
    for name, image in images:
        h, w = image.shape[:2]
        faces = all_faces(image, weak)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        hb = haar.detect(image, gray).astype(np.float64)
        zones = np.concatenate([faces, hb]) if len(hb) else faces
        if len(zones):
            m = zones[:, 2:3]  # a face side all round
            zones = np.concatenate([zones[:, :2] - m, zones[:, :2] + zones[:, 2:] + m], axis=1)
        got = 0
        for _ in range(400):
            if got >= per_image:
                break
            side = rng.uniform(0.2, 0.7) * min(h, w)
            aspect = rng.uniform(0.6, 1.7)
            pw, ph = int(min(w, side * np.sqrt(aspect))), int(min(h, side / np.sqrt(aspect)))
            if pw < 64 or ph < 64:
                continue
            x, y = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
            hit = (zones[:, 0] < x + pw) & (zones[:, 2] > x) & (zones[:, 1] < y + ph) & (zones[:, 3] > y)
            if len(zones) and np.any(hit):
                continue
            pieces.append((name, image[y:y + ph, x:x + pw].copy()))
            got += 1
    return pieces


def _ramp(n: int, start: float, stop: float, width: float) -> np.ndarray:
    """1 inside [start, stop], falling linearly to 0 over ``width`` px towards both ends."""
    x = np.arange(n, dtype=np.float32) + 0.5
    return np.clip(np.minimum(x - start, stop - x) / max(width, 1.0), 0.0, 1.0)


def paste(canvas: np.ndarray, image: np.ndarray, region: tuple[float, float, float, float], scale: float,
          at: tuple[float, float], feather: float) -> None:
    """Blend ``image[region]`` (x0, y0, x1, y1 in image px) scaled by ``scale`` into ``canvas``
    with its top-left corner at ``at``; edges fade over ``feather`` of the pasted side. Only the
    visible part is resampled, so a 1536 px face from a 300 px one costs no more than it shows."""
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = region
    dx0, dy0 = at
    dx1, dy1 = dx0 + (x1 - x0) * scale, dy0 + (y1 - y0) * scale
    cx0, cy0 = max(0, int(np.floor(dx0))), max(0, int(np.floor(dy0)))
    cx1, cy1 = min(W, int(np.ceil(dx1))), min(H, int(np.ceil(dy1)))
    if cx1 <= cx0 or cy1 <= cy0:
        return
    if scale < 1:  # shrink the region first (area averaging, as a camera would), then place it
        ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
        crop = image[iy0:int(np.ceil(y1)), ix0:int(np.ceil(x1))]
        small = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        m = np.float32([[1, 0, dx0 - cx0 + (ix0 - x0) * scale], [0, 1, dy0 - cy0 + (iy0 - y0) * scale]])
        src = small
    else:
        m = np.float32([[scale, 0, dx0 - cx0 - x0 * scale], [0, scale, dy0 - cy0 - y0 * scale]])
        src = image
    patch = cv2.warpAffine(src, m, (cx1 - cx0, cy1 - cy0), flags=cv2.INTER_CUBIC if scale >= 1 else cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    fw = feather * min(dx1 - dx0, dy1 - dy0)
    ax = _ramp(cx1 - cx0, dx0 - cx0, dx1 - cx0, fw)
    ay = _ramp(cy1 - cy0, dy0 - cy0, dy1 - cy0, fw)
    alpha = (ay[:, None] * ax[None, :])[..., None]
    roi = canvas[cy0:cy1, cx0:cx1]
    roi[:] = np.clip(alpha * patch + (1 - alpha) * roi + 0.5, 0, 255).astype(np.uint8)


def background(pieces: list[tuple[str, np.ndarray]], rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A collage: one piece covering the canvas, 2-5 more blended in at random sizes."""
    _, base = pieces[int(rng.integers(len(pieces)))]
    s = max(w / base.shape[1], h / base.shape[0])
    bw, bh = base.shape[1] * s, base.shape[0] * s
    canvas = np.zeros((h, w, 3), np.uint8)
    paste(canvas, base, (0, 0, base.shape[1], base.shape[0]), s, ((w - bw) / 2, (h - bh) / 2), 0.0)
    for _ in range(int(rng.integers(2, 6))):
        _, p = pieces[int(rng.integers(len(pieces)))]
        side = rng.uniform(0.2, 0.6) * min(w, h)
        s = side / max(p.shape[:2])
        pw, ph = p.shape[1] * s, p.shape[0] * s
        paste(canvas, p, (0, 0, p.shape[1], p.shape[0]), s, (rng.uniform(-0.1 * pw, w - 0.9 * pw),
                                                               rng.uniform(-0.1 * ph, h - 0.9 * ph)), 0.15)
    return canvas


# -- canvases with faces ---------------------------------------------------------------------

@dataclass
class Placed:
    source: Source
    size: int
    placement: str
    box: np.ndarray  # the face's square box in the canvas (may reach outside)


@dataclass
class Scene:
    canvas_size: tuple[int, int]
    size: int  # face size (0: background only)
    faces: list[Placed]
    others: np.ndarray  # faces the sources hold besides their main one, in canvas px
    seed: int

    def render(self, pieces: list[tuple[str, np.ndarray]]) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        w, h = self.canvas_size
        canvas = background(pieces, rng, w, h)
        for f in self.faces:
            src = f.source
            s = f.size / src.box[2]
            ih, iw = src.image.shape[:2]
            if src.kind == "photo":
                cx, cy = src.box[0] + src.box[2] / 2, src.box[1] + src.box[3] / 2
                half = PHOTO_CONTEXT * src.box[2] / 2
                region = (max(0.0, cx - half), max(0.0, cy - half), min(iw, cx + half), min(ih, cy + half))
                feather = 0.08
            else:
                region, feather = (0.0, 0.0, float(iw), float(ih)), 0.04
            at = (f.box[0] + (region[0] - src.box[0]) * s, f.box[1] + (region[1] - src.box[1]) * s)
            paste(canvas, src.image, region, s, at, feather)
        return canvas


def _others(src: Source, box: np.ndarray, size: int) -> np.ndarray:
    """The source's other faces (not its main one) where they land in the canvas."""
    if not len(src.others):
        return np.zeros((0, 4))
    s = size / src.box[2]
    o = src.others
    keep = ~((np.abs(o[:, 0] - src.box[0]) < 0.3 * src.box[2]) & (np.abs(o[:, 1] - src.box[1]) < 0.3 * src.box[2])
             & (np.abs(o[:, 2] - src.box[2]) < 0.5 * src.box[2]))
    o = o[keep]
    return np.stack([box[0] + (o[:, 0] - src.box[0]) * s, box[1] + (o[:, 1] - src.box[1]) * s,
                     o[:, 2] * s, o[:, 3] * s], axis=1)


def layout(canvas: tuple[int, int], size: int, kind: str, n: int) -> list[list[tuple[str, tuple[float, float]]]]:
    """Images for ``n`` faces of ``size`` px: per image a list of (placement, face centre).

    Faces sit in a grid of cells ``PITCH`` face sides apart; a third are placed fully inside,
    a third touching the border of their cell's canvas side, a third cut off by it by ``CUT``
    of their box (cells on no border take the inside ones). A face too large for a grid gets
    a canvas of its own, at a random place (inside) or against a random side."""
    w, h = canvas
    cell = PITCH[kind] * size
    nx, ny = int(w // cell), int(h // cell)
    half = size / 2
    types = [PLACEMENTS[i % 3] for i in range(n)]
    rng = np.random.default_rng(size * 7919 + w)
    images: list[list[tuple[str, tuple[float, float]]]] = []
    if nx * ny <= 1:
        for t in types:
            side = int(rng.integers(4))
            cx = rng.uniform(half, w - half) if w > size else w / 2
            cy = rng.uniform(half, h - half) if h > size else h / 2
            off = half if t == "edge" else half - CUT * size
            if t != "inside":
                if side == 0:
                    cx = off
                elif side == 1:
                    cx = w - off
                elif side == 2:
                    cy = off
                else:
                    cy = h - off
            images.append([(t, (cx, cy))])
        return images
    gx, gy = (w - nx * cell) / 2, (h - ny * cell) / 2
    cells = [(i, j) for j in range(ny) for i in range(nx)]
    while types:
        border = [c for c in cells if c[0] in (0, nx - 1) or c[1] in (0, ny - 1)]
        inner = [c for c in cells if c not in border]
        rng.shuffle(border)
        rng.shuffle(inner)
        take = types[:len(cells)]
        types = types[len(cells):]
        edge_types = [t for t in take if t != "inside"]
        ins = [t for t in take if t == "inside"]
        placed = []
        free_border = list(border)
        for t in edge_types:
            if not free_border:
                ins.append("inside")
                continue
            i, j = free_border.pop()
            sides = [s for s, ok in ((0, i == 0), (1, i == nx - 1), (2, j == 0), (3, j == ny - 1)) if ok]
            side = sides[int(rng.integers(len(sides)))]
            cx, cy = gx + (i + 0.5) * cell, gy + (j + 0.5) * cell
            off = half if t == "edge" else half - CUT * size
            cx, cy = {0: (off, cy), 1: (w - off, cy), 2: (cx, off), 3: (cx, h - off)}[side]
            placed.append((t, (cx, cy)))
        free = inner + free_border
        for t in ins:
            i, j = free.pop()
            jit = 0.1 * size
            placed.append(("inside", (gx + (i + 0.5) * cell + rng.uniform(-jit, jit),
                                      gy + (j + 0.5) * cell + rng.uniform(-jit, jit))))
        images.append(placed)
    return images


def scenes_for(canvas: tuple[int, int], size: int, sources: list[Source], repeats: int,
               seed: int) -> list[Scene]:
    """Every source face ``repeats`` times (placements cycling inside/edge/cut) at ``size``."""
    out = []
    for kind in ("photo", "crop"):
        srcs = [s for s in sources if s.kind == kind]
        if not srcs:
            continue
        n = len(srcs) * repeats
        order = [srcs[(i + i // len(srcs)) % len(srcs)] for i in range(n)]  # shift so placements vary per face
        k = 0
        for img in layout(canvas, size, kind, n):
            faces, others = [], []
            for placement, (cx, cy) in img:
                src = order[k]
                k += 1
                box = np.array([cx - size / 2, cy - size / 2, size, size], np.float64)
                faces.append(Placed(src, size, placement, box))
                others.append(_others(src, box, size))
            out.append(Scene(canvas, size, faces, np.concatenate(others), seed + len(out) * 31 + size))
    return out


ACC_SLOTS = (4, 2)  # accuracy canvases up to 384 px hold 8 faces, each in its own 480x540 cell
ACC_SHIFTED = -96  # "size" key of the second 96 px rendering (another cell of the same canvas)


def accuracy_scenes(labelled: list[Source], seed: int, every_1536: int) -> list[Scene]:
    """The labelled faces in groups of 8 on a 1920x1080 background of their own, the same at
    every size: up to 384 px each face at the centre of its cell, 8 per canvas; at 768 px alone
    at the canvas's centre; at 1536 px (every ``every_1536``-th face) alone on a 3000x4000 canvas.
    Then once more at 96 px in the next cell, to show how often the label changes with nothing
    but the place (the classifier's own noise)."""
    out = []
    nx, ny = ACC_SLOTS
    for g in range(0, len(labelled), nx * ny):
        group = labelled[g:g + nx * ny]
        bg_seed = seed + 5000 + g
        for size in (*[s for s in SIZES if s <= 384], ACC_SHIFTED):
            if (1920, 1080) not in CANVASES:
                break
            faces, others = [], []
            for k, src in enumerate(group):
                slot = (k + (1 if size == ACC_SHIFTED else 0)) % (nx * ny)
                side = abs(size)
                cx, cy = (slot % nx + 0.5) * 1920 / nx, (slot // nx + 0.5) * 1080 / ny
                box = np.array([cx - side / 2, cy - side / 2, side, side], np.float64)
                faces.append(Placed(src, side, "inside", box))
                others.append(_others(src, box, side))
            out.append(Scene((1920, 1080), size, faces, np.concatenate(others), bg_seed))
        for k, src in enumerate(group):
            for size, canvas in ((768, (1920, 1080)), (1536, (3000, 4000))):
                if canvas not in CANVASES or (size == 1536 and (g + k) % every_1536):
                    continue
                w, h = canvas
                box = np.array([w / 2 - size / 2, h / 2 - size / 2, size, size], np.float64)
                out.append(Scene(canvas, size, [Placed(src, size, "inside", box)], _others(src, box, size), bg_seed))
    return out


# -- matching --------------------------------------------------------------------------------

def clip(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, y0 = np.clip(b[:, 0], 0, w), np.clip(b[:, 1], 0, h)
    x1, y1 = np.clip(b[:, 0] + b[:, 2], 0, w), np.clip(b[:, 1] + b[:, 3], 0, h)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def match(scene: Scene, boxes: np.ndarray) -> tuple[list[int | None], int]:
    """For each placed face the index of the box that found it (or None), and the false boxes:
    those matched to no face that do not overlap a face the sources hold besides their main one."""
    from scipy.optimize import linear_sum_assignment

    w, h = scene.canvas_size
    gt = clip(np.array([f.box for f in scene.faces]).reshape(-1, 4), w, h)
    det = clip(boxes, w, h)
    m = iou_matrix(gt, det)
    found: list[int | None] = [None] * len(gt)
    used = set()
    if m.size:
        rows, cols = linear_sum_assignment(-m)
        for r, c in zip(rows, cols):
            if m[r, c] >= IOU_HIT:
                found[r] = int(c)
                used.add(int(c))
    others = clip(scene.others, w, h)
    false = 0
    for c in range(len(det)):
        if c in used:
            continue
        if len(others) and (iou_matrix(det[c:c + 1], others) > 0.2).any():
            continue
        false += 1
    return found, false


# -- policies ----------------------------------------------------------------------------------

def parse_policy(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME=key:value,key:value`` (InferenceOptions names, or ``det.NAME`` for an attribute of
    the detection policy such as ``det.candidate_threshold``; numbers parsed, ``none`` is None)."""
    name, _, rest = spec.partition("=")
    opts: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition(":")
        try:
            opts[k.strip()] = int(v) if v.strip().lstrip("-").isdigit() else float(v)
        except ValueError:
            opts[k.strip()] = None if v.strip().lower() == "none" else v.strip()
    return name.strip(), opts


def previous_options() -> dict[str, Any]:
    """The options that give the previous default policy: one pass, capped at 1920 px."""
    from ferlab.inference.options import InferenceOptions

    names = set(InferenceOptions.names())
    opts: dict[str, Any] = {"max_detect_side": 1920}
    if "detect_side" in names:
        opts["detect_side"] = 0  # no separate working-size pass
    if "min_face" in names:
        opts["min_face"] = 0  # no finer pass
    return opts


def passes_of(det: Any, shape: tuple[int, int]) -> list[tuple[str, float]]:
    """(description, scale) of each pass a detector makes on a frame of ``shape``."""
    plan = getattr(det, "plan", None)
    if plan is not None:
        return [(p.describe(shape), p.scale) for p in plan(shape)]
    s = det._effective_scale(shape)
    return [(f"one pass at {round(shape[1] * s)}x{round(shape[0] * s)}", s)]


# -- the runs ---------------------------------------------------------------------------------

def run_policy(name: str, rec: Any, scenes: list[Scene], blanks: list[Scene], acc_scenes: list[Scene],
               pieces: list[tuple[str, np.ndarray]], cache: dict[int, np.ndarray]) -> dict[str, Any]:
    """Every scene through ``rec.predict``: hits per (canvas, size, kind, placement), false
    boxes, labels of the labelled faces, ms per image per canvas."""
    hits: dict[str, list[int]] = {}
    false_faces = {"faces": [0, 0], "blank": [0, 0]}  # [false boxes, images]
    ms: dict[str, list[float]] = {}
    labels: dict[int, dict[str, str | None]] = {}
    truth: dict[str, str] = {}
    misses: list[str] = []
    for group, items in (("faces", scenes), ("blank", blanks), ("acc", acc_scenes)):
        for scene in items:
            key = id(scene)
            if key not in cache:
                cache[key] = scene.render(pieces)
            img = cache[key]
            t = time.perf_counter()
            faces = rec.predict(img)
            cname = f"{scene.canvas_size[0]}x{scene.canvas_size[1]}"
            ms.setdefault(cname, []).append((time.perf_counter() - t) * 1000)
            boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
            found, false = match(scene, boxes)
            if group == "acc":
                for f, hit in zip(scene.faces, found):
                    labels.setdefault(scene.size, {})[f.source.name] = None if hit is None else faces[hit].label
                    truth[f.source.name] = f.source.label or "?"
                continue
            false_faces[group][0] += false
            false_faces[group][1] += 1
            for f, hit in zip(scene.faces, found):
                k = f"{cname}|{size_label(scene.size, scene.canvas_size)}|{f.source.kind}|{f.placement}"
                hits.setdefault(k, [0, 0])
                hits[k][0] += hit is not None
                hits[k][1] += 1
                if hit is None:
                    misses.append(f"{k}|{f.source.name}")
    return {"name": name, "hits": hits, "false": false_faces, "ms": {k: float(np.median(v)) for k, v in ms.items()},
            "labels": {str(k): v for k, v in labels.items()}, "truth": truth, "misses": misses}


def recall_of(hits: dict[str, list[int]], canvas: str, size: str, kinds: tuple[str, ...],
              placements: tuple[str, ...] = PLACEMENTS) -> tuple[int, int]:
    got = tot = 0
    for k, (h, n) in hits.items():
        c, s, kind, p = k.split("|")
        if c == canvas and s == size and kind in kinds and p in placements:
            got, tot = got + h, tot + n
    return got, tot


def _pct(got: int, tot: int) -> str:
    return f"{got / tot * 100:5.1f}" if tot else "    -"


def report(res: dict[str, Any], say: Any) -> dict[str, Any]:
    """Print the tables of one policy; returns the goals' verdicts."""
    hits = res["hits"]
    canvases = [f"{w}x{h}" for w, h in CANVASES]
    cols = [str(s) for s in SIZES] + ["90%"]
    verdict: dict[str, Any] = {}

    def table(title: str, kinds: tuple[str, ...],
              placements: tuple[str, ...] = PLACEMENTS) -> list[tuple[str, str, int, int]]:
        say(f"  recall % ({title}; faces per cell in brackets)")
        say("    " + f"{'canvas':<11}" + "".join(f"{c:>13}" for c in cols))
        cells = []
        for c in canvases:
            row = f"    {c:<11}"
            for s in cols:
                got, tot = recall_of(hits, c, s, kinds, placements)
                row += f"{_pct(got, tot):>8} ({tot:>3})" if tot else f"{'':>13}"
                if tot:
                    cells.append((c, s, got, tot))
            say(row)
        return cells

    all_cells = table("all faces", ("photo", "crop"))
    table("sample-photo faces, with their surroundings", ("photo",))
    table("LFW-style faces, the face alone", ("crop",))
    for p in PLACEMENTS:
        got = sum(recall_of(hits, c, s, ("photo", "crop"), (p,))[0] for c in canvases for s in cols)
        tot = sum(recall_of(hits, c, s, ("photo", "crop"), (p,))[1] for c in canvases for s in cols)
        say(f"  placement {p:<7}: recall {_pct(got, tot).strip()}% of {tot} faces")
    ff = res["false"]
    fpi = ff["faces"][0] / max(1, ff["faces"][1])
    fpb = ff["blank"][0] / max(1, ff["blank"][1])
    say(f"  false faces per image: {fpi:.3f} on canvases with faces ({ff['faces'][0]} in {ff['faces'][1]}), "
                 f"{fpb:.3f} on background-only canvases ({ff['blank'][0]} in {ff['blank'][1]})")
    say("  ms per image (median, whole predict): "
                 + ", ".join(f"{c} {res['ms'].get(c, float('nan')):.0f}" for c in canvases))
    # accuracy per face size
    labels, truth = res["labels"], res["truth"]
    if labels:
        ref = labels.get("96", {})
        say(f"  accuracy through the pipeline per face size ({len(truth)} labelled LFW-style faces; all: a face "
            "not found counts as wrong; label as at 96 px: among faces found at both sizes)")
        acc: dict[int, tuple[float, int]] = {}
        for s in (*SIZES, ACC_SHIFTED):
            got = labels.get(str(s), {})
            if not got:
                continue
            n = len(got)
            correct = sum(1 for k, v in got.items() if v is not None and v == truth[k])
            found = sum(1 for v in got.values() if v is not None)
            both = [k for k, v in got.items() if v is not None and ref.get(k) is not None]
            same = sum(1 for k in both if got[k] == ref[k])
            name = "96 px, next cell" if s == ACC_SHIFTED else f"{s} px"
            acc[s] = (correct / n, n)
            say(f"    {name:<16} all {correct / n * 100:5.1f}% ({n} faces, found {found}) | label as at 96 px "
                f"{same}/{len(both)}")
        if 96 in acc and 768 in acc:
            both = [k for k in labels["768"] if labels["768"][k] is not None and ref.get(k) is not None]
            a96 = sum(ref[k] == truth[k] for k in both) / max(1, len(both))
            a768 = sum(labels["768"][k] == truth[k] for k in both) / max(1, len(both))
            gained = sum(labels["768"][k] == truth[k] != ref[k] for k in both)
            lost = sum(ref[k] == truth[k] != labels["768"][k] for k in both)
            lo, hi, p = paired_difference(gained, lost, len(both))
            say(f"    faces found at both 96 and 768 px ({len(both)}): accuracy {a96 * 100:.1f}% at 96 px, "
                f"{a768 * 100:.1f}% at 768 px; right only at 768 px {gained}, only at 96 px {lost}: difference "
                f"95% CI [{lo:+.1f}, {hi:+.1f}] points, McNemar exact p = {p:.2f}")
            verdict["acc_768_minus_96_points"] = (a768 - a96) * 100
            verdict["acc_768_minus_96_ci"] = [lo, hi]
            verdict["acc_768_minus_96_points_all"] = (acc[768][0] - acc[96][0]) * 100
    # goals
    low = [(c, s, g, t) for c, s, g, t in all_cells
           if (s == "90%" or int(s) >= 40) and t and g / t < GOAL_RECALL]
    small = recall_of(hits, "640x480", "24", ("photo", "crop"))
    verdict.update({"cells_under_99": [f"{c} {s}: {g}/{t}" for c, s, g, t in low],
                    "recall_24_640x480": small[0] / max(1, small[1]),
                    "false_per_image": (ff["faces"][0] + ff["blank"][0]) / max(1, ff["faces"][1] + ff["blank"][1])})
    return verdict


def paired_difference(gained: int, lost: int, n: int) -> tuple[float, float, float]:
    """The 95% interval (points) of a paired accuracy difference from its discordant pairs
    (``gained``: right only in the second condition, ``lost``: only in the first; normal
    approximation), and McNemar's exact two-sided p-value (a binomial test on the discordant
    pairs, SciPy): whether the same faces are read better at one size than at the other."""
    from scipy.stats import binomtest

    if not n:
        return 0.0, 0.0, 1.0
    d = (gained - lost) / n
    se = np.sqrt(max(gained + lost - n * d * d, 0.0)) / n
    p = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
    return (d - 1.96 * se) * 100, (d + 1.96 * se) * 100, float(p)


def goal_lines(v: dict[str, Any], kinds: str) -> list[str]:
    out = [f"  goals ({kinds}):",
           f"    recall >= 99% from 40 px to 90% of the short side on every canvas: "
           + ("met" if not v["cells_under_99"] else "NOT met in " + "; ".join(v["cells_under_99"])),
           f"    recall >= 90% at 24 px on 640x480: {v['recall_24_640x480'] * 100:.1f}% "
           + ("met" if v["recall_24_640x480"] >= GOAL_SMALL else "NOT met"),
           f"    false faces <= 0.05 per image: {v['false_per_image']:.3f} "
           + ("met" if v["false_per_image"] <= GOAL_FALSE else "NOT met")]
    if "acc_768_minus_96_points" in v:
        d, d_all = v["acc_768_minus_96_points"], v["acc_768_minus_96_points_all"]
        out.append(f"    accuracy at 768 px within 1 point of 96 px (faces found at both): {d:+.1f} points "
                   + ("met" if abs(d) <= GOAL_ACC else "NOT met")
                   + f" (95% CI [{v['acc_768_minus_96_ci'][0]:+.1f}, {v['acc_768_minus_96_ci'][1]:+.1f}]; "
                   f"all faces, not found = wrong: {d_all:+.1f})")
    return out


def pass_costs(rec: Any, pieces: list[tuple[str, np.ndarray]], say: Any) -> dict[str, Any]:
    """The passes the policy makes on each canvas size, with the ms of each (best of 3) on a
    background canvas, and the whole detector's ms."""
    from ferlab.inference.preprocess import to_gray

    out: dict[str, Any] = {}
    det = rec.detector
    for w, h in CANVASES:
        img = background(pieces, np.random.default_rng(w + h), w, h)
        gray = to_gray(img)
        row: list[str] = []
        timed_pass = getattr(det, "time_passes", None)
        if timed_pass is not None:
            per = timed_pass(img, gray, repeats=3)
            row = [f"{desc} {ms:.0f} ms" for desc, ms in per]
            out[f"{w}x{h}"] = {"passes": [[d, m] for d, m in per]}
        else:
            row = [d for d, _ in passes_of(det, (h, w))]
            out[f"{w}x{h}"] = {"passes": [[d, None] for d in row]}
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            det.detect(img, gray)
            best = min(best, (time.perf_counter() - t) * 1000)
        out[f"{w}x{h}"]["detect_ms"] = best
        say(f"    {w}x{h}: {'; '.join(row)} | detection {best:.0f} ms")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=Path, default=None,
                    help="a checkout of muxspace/facial_expressions (LFW-style labelled faces; without it only "
                         "the sample-photo faces are measured and accuracy is skipped)")
    ap.add_argument("--per-class", type=int, default=None,
                    help="labelled faces per class (default 20 for accuracy, 2 of them also for recall; --large: 40)")
    ap.add_argument("--large", action="store_true", help="3 placements of each photo face, 3x the labelled faces")
    ap.add_argument("--policy", action="append", default=[], metavar="NAME=key:value,...",
                    help="another policy to measure, as InferenceOptions (e.g. 'single 640=max_detect_side:640'); "
                         "repeatable. The previous default and the default are always measured.")
    ap.add_argument("--only", default="", help="comma list of policy names to measure (default: all)")
    ap.add_argument("--canvases", default="", help="comma list of canvases, e.g. 640x480,1920x1080 (default: all)")
    ap.add_argument("--model", default=None, help="model for the accuracy part (default: the shipped default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the printed report here too")
    ap.add_argument("--json", type=Path, default=None, help="write all the numbers here")
    args = ap.parse_args()

    from ferlab.inference import Recognizer

    global CANVASES
    if args.canvases:
        want = set(args.canvases.split(","))
        CANVASES = tuple(c for c in CANVASES if f"{c[0]}x{c[1]}" in want)
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    t_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    if not PHOTOS.is_dir():
        raise SystemExit(f"sample photos not found at {PHOTOS} (set FERLAB_SHARED to the shared folder)")
    sources = photo_sources(PHOTOS)
    per_class = args.per_class or (40 if args.large else 20)
    labelled: list[Source] = []
    if args.crops is not None:
        if not (args.crops / "data" / "legend.csv").is_file():
            raise SystemExit(f"{args.crops}: no data/legend.csv (clone https://github.com/muxspace/facial_expressions)")
        labelled = crop_sources(args.crops, per_class, args.seed)
    recall_crops = [s for i, s in enumerate(labelled) if i % max(1, per_class // (4 if args.large else 2)) == 0]
    pieces = face_free_pieces(background_images(PHOTOS, CLIP), rng)
    scenes = [sc for c in CANVASES for s in canvas_sizes(c)
              for sc in scenes_for(c, s, sources + recall_crops, 3 if args.large else 2 if c[0] * c[1] < 3e6 else 1,
                                   args.seed)]
    blanks = [Scene(c, 0, [], np.zeros((0, 4)), args.seed + 1000 + i * 17) for c in CANVASES
              for i in range(12 if c[0] * c[1] < 10_000_000 else 6)]
    acc_scenes = accuracy_scenes(labelled, args.seed, 1 if args.large else 4)
    n_faces = sum(len(sc.faces) for sc in scenes)
    say(f"ferlab scale benchmark | {os.cpu_count()} CPUs | load average {load()}")
    say(f"faces: {sum(s.kind == 'photo' for s in sources)} sample-photo faces ({', '.join(s.name for s in sources)}); "
        f"{len(recall_crops)} LFW-style faces for recall, {len(labelled)} labelled for accuracy "
        f"({'--crops ' + str(args.crops) if args.crops else 'no --crops'})")
    say(f"backgrounds: {len(pieces)} face-free pieces of {len({n for n, _ in pieces})} real photos and clip frames")
    say(f"images: {len(scenes)} with {n_faces} faces, {len(blanks)} background only, {len(acc_scenes)} for accuracy; "
        f"{'--large' if args.large else 'default size (--large: 3x)'}")

    policies: list[tuple[str, dict[str, Any]]] = [(PREVIOUS, previous_options()), (DEFAULT, {})]
    policies += [parse_policy(p) for p in args.policy]
    if args.only:
        keep = set(args.only.split(","))
        policies = [p for p in policies if p[0] in keep or p[0].split(" ")[0] in keep]
    cache: dict[int, np.ndarray] = {}
    results: dict[str, Any] = {"load_start": load(), "policies": {}}
    for name, opts in policies:
        tuning = {k[4:]: v for k, v in opts.items() if k.startswith("det.")}  # ScaledDetector attributes
        rec = Recognizer.from_pretrained(args.model, **{k: v for k, v in opts.items() if not k.startswith("det.")})
        for k, v in tuning.items():
            setattr(rec.detector, k, v)
        say()
        say(f"== {name} ({', '.join(f'{k}={v}' for k, v in opts.items()) or 'no options'}) | load {load()}")
        res = run_policy(name, rec, scenes, blanks, acc_scenes, pieces, cache)
        verdict = report(res, say)
        for g in goal_lines(verdict, "all faces"):
            say(g)
        say("  passes per canvas (ms each, best of 3, on a background canvas):")
        costs = pass_costs(rec, pieces, say)
        results["policies"][name] = {"options": opts, **res, "verdict": verdict, "passes": costs}
    results["load_end"] = load()
    say()
    say(f"load average at the end: {load()} | {time.perf_counter() - t_start:.0f} s")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
