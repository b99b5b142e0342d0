"""The overlay's layout: every face keeps its distribution visible and nothing is drawn over
another face, from a single face on a roomy frame to a row of audience faces."""
from __future__ import annotations

import numpy as np
import pytest

from ferlab.constants import CLASS_NAMES
from ferlab.inference.overlay import (CLASS_COLORS, UNCERTAIN_COLOR, Panel, annotate, color_of, label_of, layout,
                                      layout_json, layout_panels, strip_height, strip_segments, unit)
from ferlab.inference.results import Face, FrameResult

Rect = tuple[int, int, int, int]


def _overlap(a: Rect, b: Rect) -> int:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, iw) * max(0, ih)


def _inside(r: Rect, shape: tuple[int, ...]) -> bool:
    h, w = shape[:2]
    return r[2] > 0 and r[3] > 0 and r[0] >= 0 and r[1] >= 0 and r[0] + r[2] <= w and r[1] + r[3] <= h


def _row(shape: tuple[int, ...], sizes: list[int], gaps: list[int], x0: int, y0: int) -> list[Rect]:
    """Faces side by side, as in an audience: sizes in px, gaps between them."""
    boxes, x = [], x0
    for k, s in enumerate(sizes):
        boxes.append((x, y0 + (k % 2) * 6, s, s))
        x += s + (gaps[k] if k < len(gaps) else 0)
    assert x <= shape[1]
    return boxes


def _faces(boxes: list[Rect], seed: int = 0, uncertain: int | None = None) -> list[Face]:
    rng = np.random.default_rng(seed)
    return [Face(b, rng.dirichlet(np.ones(7)), CLASS_NAMES, track_id=k + 1, uncertain=k == uncertain)
            for k, b in enumerate(boxes)]


def _check_plan(shape: tuple[int, ...], faces: list[Face], fps: float | None = None) -> list[Panel]:
    """Every face has a distribution; all of it inside the frame; panels cover no face box, no
    label and no other panel; a strip is under its own box or inside it."""
    tags, panels = layout(shape, faces, fps)
    boxes = [f.box for f in faces]
    assert [p.face for p in panels] == list(range(len(faces))) and len(tags) == len(faces)
    for p in panels:
        assert _inside(p.rect, shape), p
        own = boxes[p.face]
        for j, b in enumerate(boxes):
            if j == p.face and p.kind == "strip" and _overlap(p.rect, b):  # the inside-the-box strip
                x, y, bw, bh = own
                assert x <= p.rect[0] and p.rect[0] + p.rect[2] <= x + bw and y + bh - p.rect[1] <= 2 * p.rect[3]
                continue
            assert _overlap(p.rect, b) == 0, (p, j, b)
        if not (p.kind == "strip" and _overlap(p.rect, own)):
            assert all(_overlap(p.rect, t.rect) == 0 for t in tags), p
    for a in panels:
        for b in panels:
            if a.face < b.face:
                assert _overlap(a.rect, b.rect) == 0, (a, b)
    return panels


def test_single_face_gets_the_full_panel_right_of_its_box() -> None:
    shape = (720, 1280, 3)
    face = Face((400, 200, 150, 150), np.array([0.05, 0.02, 0.03, 0.7, 0.1, 0.05, 0.05]), CLASS_NAMES, track_id=3)
    tags, (panel,) = layout(shape, [face], fps=30.0)
    assert panel.kind == "full" and panel.scale == 1.0
    x, y, w, h = panel.rect
    assert 550 < x < 570 and y == 200 and _inside(panel.rect, shape)  # just right of the box, top-aligned
    assert w > 150 and h > 150  # names + bars at full size on a 720p frame
    assert tags[0].rect[1] + tags[0].rect[3] <= 200  # the label sits on the box's top edge
    # the same plan with no labels or fps line to avoid: the right side is the first choice
    assert layout_panels(shape, [face.box])[0] == panel
    # drawn: the panel's area is darkened, the face itself is left alone
    frame = np.full(shape, 120, np.uint8)
    out = annotate(frame, [face], fps=30.0)
    assert (out[y + 1:y + h - 1, x + 1:x + 4] < 120).all()  # the margin left of the names
    np.testing.assert_array_equal(out[210:340, 410:540], frame[210:340, 410:540])


_S, _L = (360, 640, 3), (720, 1280, 3)
CROWDS = {  # frame, boxes, how many labels cannot help touching a neighbour, largest face gets a full panel
    "row-360p": (_S, _row(_S, [80, 90, 70, 100, 85, 72], [15, 12, 20, 10, 18], 60, 130), 0, True),
    "row-720p": (_L, _row(_L, [110, 95, 120, 100, 90], [20, 20, 20, 25], 60, 250), 0, True),
    # 10-18 px gaps at 720p: "#4 surprise 29%" is wider than its face and both gaps even at the
    # smallest label size, so it has to touch a neighbour
    "tight-row-720p": (_L, _row(_L, [100, 90, 120, 95, 110, 85], [12, 15, 10, 18, 14], 60, 300), 1, True),
    # two rows filling a 640x360 frame: no panel fits anywhere, every face gets its strip;
    # at 720p the same gaps leave three labels touching a neighbour's corner
    "two-rows-360p": (_S, _row(_S, [70, 90, 80, 100, 85, 72], [15, 12, 20, 10, 18], 40, 90)
                      + _row(_S, [90, 75, 95, 80, 85, 72], [12, 15, 10, 18, 14], 50, 220), 0, False),
    "two-rows-720p": (_L, _row(_L, [100, 90, 120, 95, 110, 85], [15, 12, 20, 10, 18], 100, 230)
                      + _row(_L, [90, 75, 95, 80, 85, 72], [12, 15, 10, 18, 14], 120, 400), 3, True),
}


@pytest.mark.parametrize("name", list(CROWDS))
def test_crowded_frames_keep_every_distribution_clear_of_faces_and_panels(name: str) -> None:
    shape, boxes, max_covered, largest_full = CROWDS[name]
    faces = _faces(boxes, uncertain=2)  # one wide "uncertain (...)" label among them
    panels = _check_plan(shape, faces, fps=29.9)
    largest = int(np.argmax([b[2] * b[3] for b in boxes]))
    assert (panels[largest].kind == "full") == largest_full
    assert any(p.kind != "full" for p in panels)  # no room for a full panel each
    tags, _ = layout(shape, faces, fps=29.9)
    covered = [j for i, t in enumerate(tags) for j, b in enumerate(boxes) if j != i and _overlap(t.rect, b)]
    assert len(covered) <= max_covered
    # drawn: inside every face box only labels and its own strip changed a pixel
    frame = np.full(shape, 100, np.uint8)
    out = annotate(frame, FrameResult(0, 0.0, faces), fps=29.9)
    changed = np.any(out != frame, axis=2)
    for i, (x, y, bw, bh) in enumerate(boxes):
        allowed = np.zeros(shape[:2], bool)
        for r in [t.rect for t in tags] + [panels[i].rect]:
            allowed[max(0, r[1]):r[1] + r[3], max(0, r[0]):r[0] + r[2]] = True
        interior = (slice(y + 3, y + bh - 2), slice(x + 3, x + bw - 2))  # within the outline
        assert not (changed[interior] & ~allowed[interior]).any(), i


def test_audience_grid_degrades_to_small_panels_and_strips() -> None:
    shape = (720, 1280, 3)
    boxes = ([(80 + 130 * i, 120 + (i % 2) * 40, 110, 110) for i in range(9)]
             + [(140 + 140 * i, 420, 120, 120) for i in range(8)])
    panels = _check_plan(shape, _faces(boxes), fps=30.0)
    kinds = {p.kind for p in panels}
    assert kinds == {"full", "small", "strip"}
    # the bottom row's larger faces chose first: all of them have a panel, most a full one
    assert all(p.kind != "strip" for p in panels[9:]) and sum(p.kind == "full" for p in panels[9:]) >= 4
    assert sum(p.kind == "full" for p in panels[:9]) == 0
    small = next(p for p in panels if p.kind == "small")
    full = next(p for p in panels if p.kind == "full")
    assert small.rect[2] < full.rect[2] and small.rect[3] < full.rect[3]
    assert all(p.rect[2] == boxes[p.face][2] and p.rect[3] == strip_height(unit(shape))
               for p in panels if p.kind == "strip" and p.rect[1] > boxes[p.face][1] + boxes[p.face][3])


def test_random_crowds_keep_the_invariants() -> None:
    rng = np.random.default_rng(7)
    for shape in ((360, 640, 3), (480, 640, 3), (720, 1280, 3), (1080, 1920, 3), (200, 300, 3)):
        for _ in range(6):
            boxes: list[Rect] = []
            for _ in range(200):  # non-overlapping faces at random, a few px apart at least
                s = int(rng.integers(max(24, shape[0] // 12), shape[0] // 3))
                b = (int(rng.integers(0, shape[1] - s)), int(rng.integers(0, shape[0] - s)), s, s)
                if all(_overlap((b[0] - 3, b[1] - 3, s + 6, s + 6), o) == 0 for o in boxes):
                    boxes.append(b)
                if len(boxes) == 8:
                    break
            _check_plan(shape, _faces(boxes, int(rng.integers(1 << 30)), uncertain=0), fps=25.0)


def test_strip_segments_are_proportional_to_the_probabilities() -> None:
    probs = np.array([0.1, 0.05, 0.05, 0.4, 0.2, 0.15, 0.05])
    rect = (13, 40, 200, 6)
    seg = strip_segments(rect, probs)
    assert seg[0][0] == 13 and seg[-1][1] == 213 and all(a[1] == b[0] for a, b in zip(seg, seg[1:]))
    np.testing.assert_allclose([b - a for a, b in seg], 200 * probs, atol=1)
    assert [b - a for a, b in strip_segments((0, 0, 70, 4), np.zeros(7))] == [10] * 7  # no mass: even


def test_drawn_strip_reads_back_as_the_distribution() -> None:
    """A face with no room for any panel (a small frame filled by it) gets the strip; its row of
    pixels on a black frame has each class colour over the class's share of the box width."""
    shape = (120, 160, 3)
    probs = np.array([0.05, 0.1, 0.05, 0.45, 0.2, 0.1, 0.05])
    face = Face((20, 30, 120, 60), probs, CLASS_NAMES)
    _, (panel,) = layout(shape, [face])
    assert panel.kind == "strip"
    x, y, w, h = panel.rect
    assert w >= 110 and h == strip_height(unit(shape))
    out = annotate(np.zeros(shape, np.uint8), [face])
    line = out[y + h // 2, x:x + w]
    for i, name in enumerate(CLASS_NAMES):
        n = int(np.all(line == color_of(name, i), axis=1).sum())
        assert abs(n - w * probs[i]) <= 1, name
    assert len({tuple(c) for c in CLASS_COLORS.values()}) == 7  # so the read-back is unambiguous


def test_annotate_returns_a_bgr_copy_and_draws_uncertain_faces_grey() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (360, 640), np.uint8)  # grayscale in, BGR out
    before = frame.copy()
    probs = np.array([0.3, 0.05, 0.05, 0.3, 0.2, 0.05, 0.05])
    happy = np.array([0.02, 0.02, 0.02, 0.9, 0.02, 0.01, 0.01])
    sure = Face((60, 100, 90, 90), happy, CLASS_NAMES, uncertain=False)
    unsure = Face((400, 100, 90, 90), probs, CLASS_NAMES, track_id=2, uncertain=True)
    out = annotate(frame, [sure, unsure], fps=12.5)
    assert out.shape == (360, 640, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(frame, before)
    assert label_of(unsure) == ("#2 uncertain (angry 30%)", UNCERTAIN_COLOR)
    assert tuple(out[145, 400]) == UNCERTAIN_COLOR  # the box's left edge
    assert tuple(out[145, 60]) == color_of("happy", 3)
    tags, _ = layout(out.shape, [sure, unsure], fps=12.5)
    tx, ty = tags[1].rect[:2]
    assert tuple(out[ty + 1, tx + 1]) == UNCERTAIN_COLOR  # the label's background
    bgr = np.dstack([frame] * 3)
    plain = annotate(bgr, [sure, unsure])
    np.testing.assert_array_equal(bgr, np.dstack([before] * 3))
    assert plain is not bgr and not np.array_equal(plain, bgr)
    # bars=False: box and label only, nothing beside the face
    _, panels = layout(bgr.shape, [sure], bars=False)
    assert panels == []
    bare = annotate(bgr, [sure], bars=False)
    np.testing.assert_array_equal(bare[100:190, 160:300], bgr[100:190, 160:300])
    assert not np.array_equal(annotate(bgr, [sure])[100:190, 160:300], bgr[100:190, 160:300])


def test_a_label_is_never_hidden_under_the_frame_rate_line() -> None:
    """The frame-rate line is drawn last, in the top-left corner: a face there (the demo clip's
    audience shot has one) gets its label placed clear of it, not underneath it."""
    from ferlab.inference.overlay import _fps_line

    shape = (360, 640, 3)
    faces = _faces([(15, 25, 75, 70), (300, 120, 90, 90)])
    fps_rect = _fps_line(24.2, len(faces), unit(shape))[2]
    tags, _ = layout(shape, faces, fps=24.2)
    assert all(_overlap(t.rect, fps_rect) == 0 for t in tags), (tags, fps_rect)


def test_layout_json_is_the_plan_annotate_draws() -> None:
    """What the server sends the page (``layout_json``) is :func:`layout`'s plan, the one
    :func:`annotate` draws, as plain JSON: one label and one distribution per face, in order."""
    import json

    shape = (360, 640, 3)
    faces = _faces(_row(shape, [70] * 8, [8] * 7, 10, 60), seed=4, uncertain=2)
    sent = json.loads(json.dumps(layout_json(shape, faces)))
    tags, panels = layout(shape, faces)
    assert sent["tags"] == [{"text": label_of(f)[0], "rect": list(t.rect)} for f, t in zip(faces, tags)]
    assert sent["panels"] == [{"kind": p.kind, "rect": list(p.rect), "scale": p.scale} for p in panels]
    assert "uncertain" in sent["tags"][2]["text"] and {p["kind"] for p in sent["panels"]} != {"full"}
