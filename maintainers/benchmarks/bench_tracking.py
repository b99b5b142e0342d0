"""Can the track ids be trusted? ID switches and IDF1 on two clips, default vs previous tracker.

    .venv/bin/python maintainers/benchmarks/bench_tracking.py [--json out.json] [--keep DIR]

1. The bundled clip (``ferlab/assets/sample_clip.mp4``, 275 frames, 640x360): the performer
   in two shots (frames 0-19 far away, on the right; 82-210 a frontal close-up), his pianist in
   two (0-19 at the piano, on the left; 20-44 a profile close-up), audience shots in between and
   after, hard cuts at frames 20, 82 and 211. Both are annotated by rules on YuNet's raw
   detections (frames 0-19: the box right of x = 300 is the performer, the one left of it the
   pianist; 20-44: the box wider than 200 px, the pianist; 82-210: the only face, the
   performer), so the ids each gets need no hand labels. ``maintainers/benchmarks/probe_identities.py``
   checks the rules with a face-recognition embedding against the two men's reference photos
   (an earlier version took the profile close-up for the performer). Across a cut a new id is
   the rule, so each man's minimum is one id per shot he is detected in (2 each). Audience
   faces are not annotated: IDF1 on this clip ignores predicted faces that overlap no
   annotated one.
2. A generated clip with known identities: four face patches from the sample photos (with the
   context YuNet needs around a face) move on paths over a textured background for 150
   frames: A and B cross (B passes in front of A), C bobs in place and is hidden for 8 frames
   (a gap), then a hard cut (new background) after which D appears where C was, and A comes
   back elsewhere. Ground-truth boxes are the patch's face box found once by YuNet on the
   patch alone, moved with the patch.

For each clip and tracker setting it prints the ids used, ID switches (CLEAR-MOT: a ground-truth
face matched to a different id than at its previous match), IDF1 (the identity F1 of Ristani
et al. 2016: one-to-one ground-truth/predicted id matching maximising the frames they share at
IoU >= 0.5, computed with SciPy's assignment solver; ``motmetrics`` is not used because its
last release predates NumPy 2), false faces per frame and the share of ground-truth faces
shown (recall). Tracker settings: the defaults (confirmation 3, appearance gate 0.5, scene-cut
detection 20) and the previous defaults (confirm 1, position only, no cut detection).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FERLAB_SHARED", REPO.parent / "shared"))
CLIP = REPO / "src" / "ferlab" / "assets" / "sample_clip.mp4"
PHOTOS = SHARED / "samples" / "photos"
IOU_MATCH = 0.5

SETTINGS = {
    "default (confirm 3, appearance 0.5, cuts)": {},
    "previous (confirm 1, position only, no cuts)": {"confirm": 1, "appearance_threshold": 0.0, "scene_cut": 0.0},
}


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


# -- metrics ----------------------------------------------------------------------------------

def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from ferlab.inference.tracker import iou_matrix

    return iou_matrix(a, b)


def _frame_matches(gt: dict[int, np.ndarray], pred: dict[int, np.ndarray],
                   prev: dict[int, int]) -> dict[int, int]:
    """gt id -> pred id in one frame (IoU >= 0.5), keeping last frame's pairs when still valid."""
    from scipy.optimize import linear_sum_assignment

    out: dict[int, int] = {}
    g_ids, p_ids = list(gt), list(pred)
    if not g_ids or not p_ids:
        return out
    iou = _iou(np.stack([gt[g] for g in g_ids]), np.stack([pred[p] for p in p_ids]))
    cost = 1 - iou
    for gi, g in enumerate(g_ids):  # CLEAR-MOT: a correspondence that still holds is kept
        if g in prev and prev[g] in p_ids:
            pj = p_ids.index(prev[g])
            if iou[gi, pj] >= IOU_MATCH:
                cost[gi, pj] = -1.0
    rows, cols = linear_sum_assignment(cost)
    for r, c in zip(rows, cols):
        if iou[r, c] >= IOU_MATCH:
            out[g_ids[r]] = p_ids[c]
    return out


def score(gt_frames: list[dict[int, np.ndarray]], pred_frames: list[dict[int, np.ndarray]]) -> dict[str, Any]:
    """ID switches, IDF1, recall and false faces per frame of predicted tracks vs ground truth."""
    from scipy.optimize import linear_sum_assignment

    switches = matched = n_gt = n_pred = false = 0
    last: dict[int, int] = {}
    prev: dict[int, int] = {}
    for gt, pred in zip(gt_frames, pred_frames):
        m = _frame_matches(gt, pred, prev)
        for g, p in m.items():
            if g in last and last[g] != p:
                switches += 1
            last[g] = p
        prev = m
        matched += len(m)
        n_gt += len(gt)
        n_pred += len(pred)
        false += len(pred) - len(m)
    # IDF1: global one-to-one gt-id <-> pred-id matching on the frames they share (IoU >= 0.5)
    g_all = sorted({g for f in gt_frames for g in f})
    p_all = sorted({p for f in pred_frames for p in f})
    idtp = 0
    if g_all and p_all:
        share = np.zeros((len(g_all), len(p_all)))
        gi = {g: i for i, g in enumerate(g_all)}
        pi = {p: i for i, p in enumerate(p_all)}
        for gt, pred in zip(gt_frames, pred_frames):
            if not gt or not pred:
                continue
            gs, ps = list(gt), list(pred)
            iou = _iou(np.stack([gt[g] for g in gs]), np.stack([pred[p] for p in ps]))
            for a, b in zip(*np.nonzero(iou >= IOU_MATCH)):
                share[gi[gs[a]], pi[ps[b]]] += 1
        rows, cols = linear_sum_assignment(-share)
        idtp = int(share[rows, cols].sum())
    idf1 = 2 * idtp / (n_gt + n_pred) if n_gt + n_pred else 1.0
    return {"ids": len(p_all), "id_switches": switches, "idf1": idf1, "recall": matched / max(1, n_gt),
            "false_per_frame": false / max(1, len(gt_frames)), "gt_identities": len(g_all)}


def run_tracker(rec: Any, frames: list[np.ndarray], **session: Any) -> tuple[list[dict[int, np.ndarray]], float]:
    sess = rec.session(**session)
    out = []
    t = time.perf_counter()
    for i, f in enumerate(frames):
        r = sess.process(f, i / 30)
        out.append({int(face.track_id): np.array(face.box, np.float64) for face in r.faces if face.track_id is not None})
    return out, (time.perf_counter() - t) / len(frames) * 1000


# -- clip 1: the bundled clip ---------------------------------------------------------------------

def read_frames(path: Path) -> list[np.ndarray]:
    from ferlab.inference.capture import iter_frames, open_capture

    cap, info = open_capture(path)
    try:
        return [f for _, _, f in iter_frames(cap, info)]
    finally:
        cap.release()


PEOPLE = {1: "performer", 2: "pianist"}
SHOTS = (0, 20, 45, 82, 211)  # first frame of each shot (44/45: a dissolve, no hard cut)
HARD_CUTS = (20, 82, 211)


def clip_truth(frames: list[np.ndarray]) -> list[dict[int, np.ndarray]]:
    """The performer's (1) and the pianist's (2) face per frame, by the rules in the module
    docstring (YuNet raw boxes)."""
    from ferlab.inference.detector import make_detector
    from ferlab.inference.preprocess import clip_boxes, to_gray

    det = make_detector("yunet")
    truth: list[dict[int, np.ndarray]] = []
    for i, f in enumerate(frames):
        b = clip_boxes(det.detect(f, to_gray(f)), f.shape[1], f.shape[0]).astype(np.float64)
        picks: dict[int, np.ndarray] = {}
        if i < 20:
            right, left = b[b[:, 0] > 300], b[b[:, 0] <= 300]
            if len(right) == 1:
                picks[1] = right[0]
            if len(left) == 1:
                picks[2] = left[0]
        elif i < 45:
            big = b[b[:, 2] > 200]
            if len(big) == 1:
                picks[2] = big[0]
        elif 82 <= i < 211 and len(b) == 1:
            picks[1] = b[0]
        truth.append(picks)
    return truth


def annotated_only(truth: list[dict[int, np.ndarray]], pred: list[dict[int, np.ndarray]]) -> list[dict[int, np.ndarray]]:
    """The predicted faces that overlap an annotated face: the rest (audience) is not judged."""
    out = []
    for t, p in zip(truth, pred):
        if not t or not p:
            out.append({})
            continue
        gt = np.stack(list(t.values()))
        out.append({pid: box for pid, box in p.items() if (_iou(box[None], gt) > 0).any()})
    return out


# -- clip 2: generated, known identities ---------------------------------------------------------

IDENTITY_PHOTOS = {"A": "obama.jpg", "B": "biden.jpg", "C": "lin-manuel-miranda.png", "D": "alex-lacamoire.png"}


def face_patch(photo: Path, side: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """A square patch around the photo's largest face (the face plus 60% context), resized to
    ``side``, and the face box inside it."""
    from ferlab.inference.detector import make_detector
    from ferlab.inference.preprocess import load_image, to_gray

    img = load_image(photo)
    det = make_detector("yunet")
    b = det.detect(img, to_gray(img))
    x, y, w, h = b[np.argmax(b[:, 2] * b[:, 3])]
    cx, cy, s = x + w / 2, y + h / 2, 1.6 * max(w, h)
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    pad = int(s)
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[y0 + pad:y0 + pad + int(s), x0 + pad:x0 + pad + int(s)]
    patch = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    fb = det.detect(patch, to_gray(patch))
    fbox = fb[np.argmax(fb[:, 2] * fb[:, 3])].astype(np.float64) if len(fb) else np.array([side * .19, side * .19, side * .62, side * .62])
    return patch, fbox


def background(seed: int, w: int = 640, h: int = 480) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 40, w // 40, 3), dtype=np.uint8)
    bg = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(bg, (0, 0), 6)


def generated_clip(n: int = 150) -> tuple[list[np.ndarray], list[dict[int, np.ndarray]]]:
    """The scenario of the module docstring; returns frames and ground truth {identity: box}."""
    patches = {k: face_patch(PHOTOS / v) for k, v in IDENTITY_PHOTOS.items()}
    gid = {k: i + 1 for i, k in enumerate(IDENTITY_PHOTOS)}
    cut = n // 2
    bgs = (background(1), background(2))
    frames, truth = [], []
    for t in range(n):
        f = bgs[t >= cut].copy()
        gt: dict[int, np.ndarray] = {}
        placed: list[tuple[str, int, int]] = []  # drawn in order: later ones in front
        if t < cut:
            u = t / (cut - 1)
            placed.append(("A", int(40 + 420 * u), 160))  # left -> right
            if not 40 <= t < 48:
                placed.append(("C", 470, int(300 + 12 * np.sin(t / 5))))  # bobbing; hidden 40-47
            placed.append(("B", int(460 - 420 * u), 175))  # right -> left, in front of A
        else:
            u = (t - cut) / (n - cut - 1)
            placed.append(("D", 470, int(300 + 12 * np.sin(t / 5))))  # where C was
            placed.append(("A", int(60 + 200 * u), 40))  # A again, elsewhere
        for k, x, y in placed:
            patch, fbox = patches[k]
            s = patch.shape[0]
            f[y:y + s, x:x + s] = patch
            gt[gid[k]] = fbox + np.array([x, y, 0, 0])
        # a face drawn over another hides it: drop ground truth boxes mostly covered
        for k, x, y in placed:
            for k2, x2, y2 in placed:
                if k2 == k or placed.index((k2, x2, y2)) < placed.index((k, x, y)):
                    continue
                covered = _iou(gt[gid[k]][None], np.array([[x2, y2, 150, 150]], np.float64))[0, 0]
                inside = _overlap_share(gt[gid[k]], np.array([x2, y2, 150, 150], np.float64))
                if inside > 0.5 and covered > 0:
                    gt.pop(gid[k], None)
        frames.append(f)
        truth.append(gt)
    return frames, truth


def _overlap_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of box a covered by box b."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / max(1e-9, a[2] * a[3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="write the numbers here")
    ap.add_argument("--keep", default=None, metavar="DIR", help="write the generated clip here (generated.avi)")
    ap.add_argument("--model", default=None, help="model (default: the shipped default)")
    args = ap.parse_args()

    from ferlab.inference import Recognizer

    print(f"ferlab tracking benchmark | {os.cpu_count()} CPUs | load average {load()}", flush=True)
    rec = Recognizer.from_pretrained(args.model)
    results: dict[str, Any] = {"load_start": load()}
    clips = {}
    frames = read_frames(CLIP)
    clips["bundled clip (performer and pianist)"] = (frames, clip_truth(frames))
    gen, gen_truth = generated_clip()
    clips["generated clip (4 identities, crossing, gap, cut)"] = (gen, gen_truth)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        w = cv2.VideoWriter(str(Path(args.keep) / "generated.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
        for f in gen:
            w.write(f)
        w.release()
    for clip, (fr, truth) in clips.items():
        print(f"\n{clip}: {len(fr)} frames, {len({g for t in truth for g in t})} ground-truth identities, "
              f"{sum(len(t) for t in truth) / len(fr):.2f} ground-truth faces/frame", flush=True)
        results[clip] = {}
        for label, opts in SETTINGS.items():
            pred, ms = run_tracker(rec, fr, **opts)
            bundled = clip.startswith("bundled")
            s = score(truth, annotated_only(truth, pred) if bundled else pred)
            s["all_ids"] = len({i for p in pred for i in p})
            s["ms_per_frame"] = ms
            if bundled:
                for g, who in PEOPLE.items():  # the ids each annotated man is shown under
                    s[f"{who}_ids"] = len({pid for t, p in zip(truth, pred) for pid, box in p.items()
                                           if g in t and _iou(box[None], t[g][None])[0, 0] >= IOU_MATCH})
                span: dict[int, set[int]] = {}  # an id seen on both sides of a cut: two people, one id
                for i, p in enumerate(pred):
                    shot = sum(i >= cut for cut in HARD_CUTS)
                    for pid in p:
                        span.setdefault(pid, set()).add(shot)
                s["ids_across_cuts"] = sum(len(v) > 1 for v in span.values())
                print(f"  {label:<46} performer ids {s['performer_ids']}, pianist ids {s['pianist_ids']} (one per "
                      f"shot each is in: 2 at best), {s['all_ids']} ids in the clip, {s['ids_across_cuts']} id(s) "
                      f"continued across a cut, ID switches {s['id_switches']} (2 at best: a cut in each man's frames), IDF1 {s['idf1']:.3f} (the two "
                      f"men), both shown in {s['recall'] * 100:.1f}% of their frames, {ms:.1f} ms/frame "
                      f"(load {load()})", flush=True)
            else:
                print(f"  {label:<46} ids {s['all_ids']} for {s['gt_identities']} identities (5 at best: the cut "
                      f"gives A a new id), ID switches {s['id_switches']}, IDF1 {s['idf1']:.3f}, "
                      f"recall {s['recall'] * 100:.1f}%, false faces/frame {s['false_per_frame']:.2f}, "
                      f"{ms:.1f} ms/frame (load {load()})", flush=True)
            results[clip][label] = s
    results["load_end"] = load()
    print(f"\nload average at the end: {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
