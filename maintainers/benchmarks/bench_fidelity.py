"""Does the whole pipeline see what the model sees? FER2013 faces placed into real frames.

    .venv/bin/python maintainers/benchmarks/bench_fidelity.py [--split test] [--n 1000] [--json out.json]

FER2013 test faces (48x48) are upscaled to a side of 64-200 px, rotated by up to +-10 degrees
and placed, two per frame and apart, into 640x480 grayscale backgrounds cut from the sample
photos and the bundled clip where YuNet finds no face (``--backgrounds`` shows them). Each
frame goes through ``Recognizer.predict`` (detect, crop, Eq. 27, classify) exactly as a photo
would, and every placed face is matched to at most one detection (IoU >= 0.4).

Printed per detector setting: detection recall (also by face side), false faces per frame
(detections matching no placed face), the pipeline's accuracy over all placed faces (a missed
face counts as wrong) against the model's direct accuracy on the same 48x48 faces
(``predict_probs`` on the original crops), and both over the detected faces only: that gap is
what the detector's box and the crop (framing, resizing) cost, recall aside. The goal: recall >= 99% and pipeline accuracy within
one point of direct accuracy.

Protocol: the framing of crops was derived on train faces (``YuNetDetector``'s docstring), any
setting is tuned with ``--split val`` (PublicTest), and the numbers of record are ``--split
test`` (PrivateTest faces only: the ``PrivateTest_`` files).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FERLAB_SHARED", REPO.parent / "shared"))
CLIP = REPO / "src" / "ferlab" / "assets" / "sample_clip.mp4"
PHOTOS = SHARED / "samples" / "photos"
FRAME = (640, 480)
IOU_MATCH = 0.4
SIDES = (64, 200)
MAX_ROTATION = 10.0


def backgrounds(n: int, seed: int) -> list[np.ndarray]:
    """Grayscale 640x480 crops of the sample photos and clip frames with no face in them
    (YuNet at a low threshold, 0.5, finds none), so a detection is a placed face or a false one."""
    from ferlab.inference.detector import YuNetDetector

    probe = YuNetDetector(score_threshold=0.5)
    rng = np.random.default_rng(seed)
    sources: list[np.ndarray] = []
    for p in sorted(PHOTOS.iterdir()) if PHOTOS.is_dir() else []:
        img = cv2.imread(str(p))
        if img is not None:
            sources.append(img)
    cap = cv2.VideoCapture(str(CLIP))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 25 == 0:
            sources.append(frame)
        i += 1
    cap.release()
    out: list[np.ndarray] = []
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        src = sources[int(rng.integers(len(sources)))]
        h, w = src.shape[:2]
        scale = max(FRAME[0] / w, FRAME[1] / h) * float(rng.uniform(1.0, 2.5))
        big = cv2.resize(src, (int(np.ceil(w * scale)), int(np.ceil(h * scale))), interpolation=cv2.INTER_LINEAR)
        y0 = int(rng.integers(big.shape[0] - FRAME[1] + 1))
        x0 = int(rng.integers(big.shape[1] - FRAME[0] + 1))
        crop = big[y0:y0 + FRAME[1], x0:x0 + FRAME[0]]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        gray = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2GRAY)
        if len(probe.detect_faces(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))) == 0:
            out.append(gray)
    if len(out) < n:
        raise SystemExit(f"only {len(out)} face-free backgrounds found in {PHOTOS} and {CLIP}")
    return out


def place(bg: np.ndarray, face: np.ndarray, side: int, angle: float, cx: float, cy: float) -> np.ndarray:
    """Paste the 48x48 ``face`` upscaled to ``side`` px and rotated by ``angle`` degrees about
    its centre at (cx, cy) into ``bg`` (in place; only the rotated square is written)."""
    s = side / face.shape[0]
    m = cv2.getRotationMatrix2D((face.shape[1] / 2, face.shape[0] / 2), angle, s)
    m[:, 2] += (cx - face.shape[1] / 2, cy - face.shape[0] / 2)
    size = (bg.shape[1], bg.shape[0])
    warped = cv2.warpAffine(face, m, size, flags=cv2.INTER_CUBIC)
    mask = cv2.warpAffine(np.full_like(face, 255), m, size, flags=cv2.INTER_NEAREST)
    bg[mask > 0] = warped[mask > 0]
    return bg


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of (x, y, w, h) boxes: the tracker's own."""
    from ferlab.inference.tracker import iou_matrix

    return iou_matrix(a, b)


def scenes(images: np.ndarray, bgs: list[np.ndarray], seed: int) -> list[tuple[np.ndarray, list[int], np.ndarray]]:
    """Frames with two faces each: (frame, face indices, (2, 4) true boxes)."""
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(images))
    out = []
    for k in range(0, len(order) - 1, 2):
        idx = [int(order[k]), int(order[k + 1])]
        frame = bgs[(k // 2) % len(bgs)].copy()
        boxes = []
        while len(boxes) < 2:
            side = int(rng.integers(SIDES[0], SIDES[1] + 1))
            half = side * 0.75  # room for the rotated corners
            cx = float(rng.uniform(half, FRAME[0] - half))
            cy = float(rng.uniform(half, FRAME[1] - half))
            box = np.array([cx - side / 2, cy - side / 2, side, side])
            if boxes and iou(box[None], np.array(boxes))[0].max() > 0 or \
                    any(abs(cx - (b[0] + b[2] / 2)) < (side + b[2]) * 0.8 and abs(cy - (b[1] + b[3] / 2))
                        < (side + b[3]) * 0.8 for b in boxes):
                continue  # apart, so each detection belongs to one face
            place(frame, images[idx[len(boxes)]], side, float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)), cx, cy)
            boxes.append(box)
        out.append((frame, idx, np.array(boxes)))
    return out


def run(rec: Any, frames: list[tuple[np.ndarray, list[int], np.ndarray]], labels: np.ndarray,
        direct_pred: np.ndarray) -> dict[str, Any]:
    from ferlab.inference.preprocess import crop_faces

    found = correct = correct_found = false = placed = direct_correct = direct_found = truebox_found = 0
    sides: list[tuple[float, bool]] = []
    framing: list[tuple[float, float]] = []  # detected side / placed side, centre offset / placed side
    paired: list[int] = []  # per detected face: direct right - pipeline right (-1, 0 or 1)
    for frame, idx, truth in frames:
        faces = rec.predict(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        placed += len(idx)
        direct_correct += int(sum(direct_pred[i] == labels[i] for i in idx))
        det = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        used: set[int] = set()
        matched = [False] * len(idx)
        if len(det):
            m = iou(truth, det)
            for g in np.argsort(-m.max(axis=1)):  # greedy one-to-one
                free = np.where([k in used for k in range(len(det))], -1.0, m[g])
                j = int(np.argmax(free))
                if free[j] >= IOU_MATCH:
                    used.add(j)
                    matched[g] = True
                    found += 1
                    hit = int(np.argmax(faces[j].probs)) == labels[idx[g]]
                    correct += hit
                    correct_found += hit
                    direct_found += int(direct_pred[idx[g]] == labels[idx[g]])
                    paired.append(int(direct_pred[idx[g]] == labels[idx[g]]) - int(hit))
                    # the placed square itself (axis-aligned, clipped): the same face, rotated and
                    # resampled as the detector's crop is, with the framing exact
                    x0, y0 = np.maximum(np.round(truth[g, :2]), 0).astype(int)
                    x1 = int(min(frame.shape[1], round(truth[g, 0] + truth[g, 2])))
                    y1 = int(min(frame.shape[0], round(truth[g, 1] + truth[g, 3])))
                    p = rec.classify_crops(crop_faces(frame, np.array([[x0, y0, x1 - x0, y1 - y0]])))
                    truebox_found += int(int(np.argmax(p[0])) == labels[idx[g]])
                    box = np.asarray(faces[j].box, np.float64)
                    off = (box[:2] + box[2:] / 2) - (truth[g, :2] + truth[g, 2:] / 2)
                    framing.append((box[2] / truth[g, 2], float(np.hypot(*off)) / truth[g, 2]))
        sides.extend((float(b[2]), ok) for b, ok in zip(truth, matched))
        false += len(det) - len(used)
    n_frames = len(frames)
    side = np.array(sides)
    bins = [(64, 100), (100, 150), (150, 201)]
    recall_by_side = {f"{a}-{b - 1}": float(side[(side[:, 0] >= a) & (side[:, 0] < b), 1].mean()) for a, b in bins}
    return {"frames": n_frames, "faces": placed, "recall": found / placed, "false_per_frame": false / n_frames,
            "pipeline_acc": correct / placed, "pipeline_acc_detected": correct_found / max(found, 1),
            "direct_acc": direct_correct / placed, "direct_acc_detected": direct_found / max(found, 1),
            "true_box_acc_detected": truebox_found / max(found, 1),
            # standard error of the detected-faces gap: a paired difference over the same faces
            "gap_detected_se": float(np.std(paired, ddof=1) / np.sqrt(len(paired))) if len(paired) > 1 else float("nan"),
            "box_side_ratio_p10_p50_p90": np.percentile([f[0] for f in framing], [10, 50, 90]).tolist() if framing else [],
            "box_offset_p50_p90": np.percentile([f[1] for f in framing], [50, 90]).tolist() if framing else [],
            "recall_by_side": recall_by_side}


def alignment_check(model: str, frames: list[tuple[np.ndarray, list[int], np.ndarray]],
                    labels: np.ndarray) -> dict[str, Any]:
    """Would rotating each face upright by YuNet's eye landmarks before cropping help? The
    same detected faces (default YuNet, IoU-matched) cropped as the pipeline crops them and
    cropped from the frame rotated about the box centre by the eye line's angle."""
    from ferlab.inference import Recognizer
    from ferlab.inference.detector import YuNetDetector, square_boxes
    from ferlab.inference.preprocess import crop_face

    rec, det = Recognizer.from_pretrained(model), YuNetDetector()
    plain = aligned = n = 0
    for frame, idx, truth in frames:
        faces = det.detect_faces(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        if not len(faces):
            continue
        boxes = square_boxes(faces)
        m = iou(truth, boxes)
        h, w = frame.shape
        for g in range(len(idx)):
            j = int(m[g].argmax())
            if m[g, j] < IOU_MATCH:
                continue
            x, y, bw, bh = (int(round(v)) for v in boxes[j])
            x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + bw), min(h, y + bh)
            (rx, ry), (lx, ly) = faces[j, 4:6], faces[j, 6:8]  # the two eyes, image left first
            rot = cv2.getRotationMatrix2D((x + bw / 2, y + bh / 2), float(np.degrees(np.arctan2(ly - ry, lx - rx))), 1.0)
            upright = cv2.warpAffine(frame, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            crops = np.stack([crop_face(frame, (x0, y0, x1 - x0, y1 - y0)),
                              crop_face(upright, (x0, y0, x1 - x0, y1 - y0))])
            p = rec.classify_crops(crops).argmax(1)
            n += 1
            plain += int(p[0] == labels[idx[g]])
            aligned += int(p[1] == labels[idx[g]])
    return {"faces": n, "plain_acc": plain / max(n, 1), "aligned_acc": aligned / max(n, 1)}


def framing(images: np.ndarray) -> dict[str, Any]:
    """Where YuNet's box sits in FER2013's own frame: each 48x48 face upscaled 4x (192 px) and
    padded to 384 px by repeating its border, then YuNet (default threshold). This is how the
    crop's framing was derived (train faces; ``YuNetDetector``'s docstring), and its detection
    rate is the most the detector finds of FER2013 faces in the kindest setting (large, upright,
    no pasted edge): the ceiling for the recall above."""
    from ferlab.inference.detector import YuNetDetector

    det = YuNetDetector()
    up, pad = 4, 96
    rows = []
    for face in images:
        big = cv2.resize(face, (48 * up, 48 * up), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        f = det.detect_faces(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
        if len(f):
            x, y, w, h = f[int(np.argmax(f[:, 2] * f[:, 3])), :4]
            side = 48 * up
            rows.append((h / side, w / side, ((y + h / 2) - (pad + side / 2)) / h, ((x + w / 2) - (pad + side / 2)) / h))
    a = np.array(rows).reshape(-1, 4)
    med = np.median(a, 0) if len(a) else np.full(4, np.nan)
    return {"faces": len(images), "found": len(a) / max(len(images), 1), "height": float(med[0]),
            "width": float(med[1]), "centre_dy": float(med[2]), "centre_dx": float(med[3])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "data" / "fer2013"))
    ap.add_argument("--split", default="test", choices=("val", "test"),
                    help="val = PublicTest (tuning), test = PrivateTest faces (report)")
    ap.add_argument("--n", type=int, default=1000, help="faces placed (two per frame)")
    ap.add_argument("--model", default=None, help="shipped name or checkpoint (default: the shipped default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score-thresholds", default="0.8,0.6",
                    help="YuNet score thresholds to compare (0.8 = the default)")
    ap.add_argument("--haar", action="store_true", help="also the thesis's Haar detector")
    ap.add_argument("--align-check", action="store_true",
                    help="also: accuracy with crops rotated upright by YuNet's eye landmarks vs the pipeline's crops")
    ap.add_argument("--framing", type=int, default=0, metavar="N",
                    help="also: YuNet's box inside FER2013's frame on N train faces (how the crop was framed)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--backgrounds", default=None, help="write the backgrounds as PNGs to this folder")
    args = ap.parse_args()

    from ferlab.research.data import resolve_data
    from ferlab.research.evaluation.predict import predict_probs
    from ferlab.inference import Recognizer
    from ferlab.research.nets import load_checkpoint
    from ferlab.models.hub import default_model, resolve_model

    args.model = args.model or default_model().name
    split = resolve_data(args.data).split(args.split)  # val = PublicTest, test = PrivateTest
    keep = np.arange(len(split))
    rng = np.random.default_rng(args.seed)
    keep = np.sort(rng.choice(keep, size=min(args.n, len(keep)), replace=False))
    images, labels = split.images[keep], split.labels[keep]
    ckpt = load_checkpoint(resolve_model(args.model))
    direct = predict_probs(ckpt.model, images, ckpt.mean, ckpt.std, device="cpu").argmax(1)
    direct = np.asarray(direct)
    bgs = backgrounds(40, args.seed)
    if args.backgrounds:
        Path(args.backgrounds).mkdir(parents=True, exist_ok=True)
        for i, b in enumerate(bgs):
            cv2.imwrite(str(Path(args.backgrounds) / f"bg{i:02d}.png"), b)
    frames = scenes(images, bgs, args.seed)
    print(f"pipeline fidelity | model {args.model} | {len(frames) * 2} {args.split} faces "
          f"({'PrivateTest' if args.split == 'test' else 'PublicTest'}) in {len(frames)} 640x480 frames, "
          f"sides {SIDES[0]}-{SIDES[1]} px, rotation +-{MAX_ROTATION:g} deg, {len(bgs)} face-free backgrounds",
          flush=True)
    results: dict[str, Any] = {"split": args.split, "model": args.model, "n": len(frames) * 2, "settings": {}}
    settings: list[tuple[str, dict[str, Any]]] = []
    for thr in (float(t) for t in args.score_thresholds.split(",") if t):
        settings.append((f"yunet --detect-threshold {thr:g}" + (" (default)" if thr == 0.8 else ""),
                         {"detector": "yunet", "detect_threshold": thr}))
    if args.haar:
        settings.append(("haar (thesis)", {"detector": "haar"}))
    for name, det in settings:
        rec = Recognizer.from_pretrained(args.model, **det)
        r = run(rec, frames, labels, direct)
        results["settings"][name] = r
        by_side = ", ".join(f"{k} px {v:.1%}" for k, v in r["recall_by_side"].items())
        print(f"  {name:<40} recall {r['recall']:6.1%} ({by_side})  false faces/frame {r['false_per_frame']:.3f}\n"
              f"  {'':<40} all faces: pipeline acc {r['pipeline_acc']:6.1%} vs direct {r['direct_acc']:6.1%} "
              f"(gap {100 * (r['direct_acc'] - r['pipeline_acc']):+.1f} pts, a missed face counts as wrong)\n"
              f"  {'':<40} detected faces: pipeline acc {r['pipeline_acc_detected']:6.1%} vs direct "
              f"{r['direct_acc_detected']:6.1%} on the same faces (gap "
              f"{100 * (r['direct_acc_detected'] - r['pipeline_acc_detected']):+.1f} +- {100 * r['gap_detected_se']:.1f} pts "
              f"(standard error): the crop's fidelity)\n"
              f"  {'':<40} of that gap, rotation and resampling: {100 * (r['direct_acc_detected'] - r['true_box_acc_detected']):+.1f} pts "
              f"(the placed square, exactly framed: {r['true_box_acc_detected']:6.1%}); the detector's framing: "
              f"{100 * (r['true_box_acc_detected'] - r['pipeline_acc_detected']):+.1f} pts (box side / placed side "
              f"p10/p50/p90 {'/'.join(f'{v:.3f}' for v in r['box_side_ratio_p10_p50_p90'])}, centre offset "
              f"p50/p90 {'/'.join(f'{v:.3f}' for v in r['box_offset_p50_p90'])} of the side)", flush=True)
    if args.align_check:
        a = alignment_check(args.model, frames, labels)
        results["alignment"] = a
        print(f"  eye-landmark alignment, same {a['faces']} detected faces: pipeline crops {a['plain_acc']:6.1%}, "
              f"rotated upright first {a['aligned_acc']:6.1%} ({100 * (a['aligned_acc'] - a['plain_acc']):+.1f} pts)",
              flush=True)
    if args.framing:
        train = resolve_data(args.data).split("train")
        pick = np.sort(np.random.default_rng(args.seed).choice(len(train), size=min(args.framing, len(train)), replace=False))
        fr = framing(train.images[pick])
        results["framing"] = fr
        print(f"  framing, {fr['faces']} train faces upscaled 4x and border-padded: YuNet finds {fr['found']:.1%}; "
              f"median box {fr['height']:.3f} x {fr['width']:.3f} (height x width) of the 48-px frame, centre "
              f"{fr['centre_dy']:+.3f} / {fr['centre_dx']:+.3f} box heights below / right of the frame's", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
