"""Inference speed on this machine: classifier per face, detector per frame, pipeline fps.

    .venv/bin/python maintainers/benchmarks/bench_inference.py [--frames 150] [--model CKPT] [--json out.json]

1. ms per face: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime static INT8, batch 1 and 4,
   for FerNet (default widths) and ResNet-18 (thesis) with random weights, plus a trained
   checkpoint (--model; default the shipped fernet), on which INT8 agreement means something.
2. detector ms per 640x480 frame: Haar (thesis settings) and YuNet, full and half scale; and
   both on the bundled clip and the sample photos (faces found, ms per frame / photo).
3. end-to-end fps (decode + detect + classify + track/smooth + draw) on 640x480 videos with
   1, 2 and 4 faces built from the sample clip, for a ladder of settings, each adding one change.
4. faces at every size in video (``--skip`` name ``scale``): a 1920x1080 close-up made from the
   sample clip's close-up shot (frames 82-210, a fixed window twice the face's height, upscaled
   bicubic, so the face fills half the frame's height) through ``ferlab video --jsonl`` with the
   defaults and with the previous detection policy (one pass at up to 1920 px): frames with
   the face tracked and the ids it gets; then JSONL-only fps and faces/frame of both policies
   side by side, same run, on the 640x480 videos with 4 and 1 faces and on the close-up.
5. models side by side (``--models a,b``; ``--skip`` name ``models``): each model as users run it
   (``Recognizer.from_pretrained(name)``, default options): ms per face through ``classify_crops``
   (batch 1 and 4, FER2013 faces) and JSONL-only fps and faces/frame on the 640x480 4-face video,
   the models interleaved so they see the same machine. The transfer-learning runs are compared
   with the shipped models here.

Every timing is the best of a few repeats (wall clock), and the CPU time of the process is
printed beside it: on a shared machine the wall clock includes time other processes took, the
CPU time does not. The load average is printed at the start and the end for the same reason.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FERLAB_SHARED", REPO.parent / "shared"))


def timeit(fn: Callable[[], Any], n: int, repeats: int = 5, warmup: int = 3) -> tuple[float, float]:
    """(best wall ms per call, best CPU ms per call) over ``repeats`` runs of ``n`` calls."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        walls.append((time.perf_counter() - t) / n * 1000)
        cpus.append((time.process_time() - c) / n * 1000)
    return min(walls), min(cpus)


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


# -- 1. classifier -------------------------------------------------------------------------

def cpu_flags() -> str:
    """The x86 features INT8 speed and correctness depend on (VNNI: exact U8S8 dot products
    without int16 saturation; ferlab quantises with 7-bit weights so both paths agree)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    flags: set[str] = set()
    model = "?"
    for line in text.splitlines():
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
        elif line.startswith("model name") and model == "?":
            model = line.split(":", 1)[1].strip()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    shown = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in wanted)
    vnni = "with VNNI" if {"avx512_vnni", "avx_vnni"} & flags else "WITHOUT VNNI"
    return f"{model}: {shown} ({vnni})"


def calibration_faces(n: int, seed: int, split: str = "train", prefix: str | None = None,
                      balanced: bool = True) -> np.ndarray | None:
    from ferlab.inference.export import load_calibration_faces

    root = SHARED / "data" / "fer2013" / split
    if not root.is_dir():
        return None
    return load_calibration_faces(root, n, seed=seed, prefix=prefix, balanced=balanced)


def bench_classifier(models: dict[str, Any], work: Path, rows: list[dict[str, Any]],
                     threads: int | None) -> dict[str, Path]:
    from ferlab.inference.backends import OnnxBackend, TorchBackend
    from ferlab.probabilities import softmax
    from ferlab.inference.export import export_onnx, normalise_faces

    from ferlab.inference.export import CALIBRATION_COUNT

    calib = calibration_faces(CALIBRATION_COUNT, seed=0)
    check = calibration_faces(700, seed=1, split="test", prefix="PrivateTest_", balanced=False)
    int8_paths: dict[str, Path] = {}
    for name, ckpt in models.items():
        fp32 = export_onnx(ckpt, work / f"{name}.onnx")
        backends: dict[str, Any] = {"torch eager": TorchBackend(ckpt.model), "ORT fp32": OnnxBackend(fp32, threads=threads)}
        if calib is not None:
            t0 = time.perf_counter()
            # random-weight models have near-ties everywhere: only the trained one must pass 98%
            int8 = export_onnx(ckpt, work / f"{name}-int8.onnx", int8=True, calibration=calib,
                               min_agreement=0.98 if name == "trained" else 0.0)
            print(f"  [{name}] INT8 quantisation ({len(calib)} FER2013 train faces): {time.perf_counter() - t0:.1f}s",
                  flush=True)
            backends["ORT int8"] = OnnxBackend(int8, threads=threads)
            int8_paths[name] = int8
        x4 = np.random.default_rng(0).standard_normal((4, 1, 48, 48)).astype(np.float32)
        speed: dict[tuple[str, int], float] = {}
        for bname, be in backends.items():
            for bs in (1, 4):
                x = x4[:bs]
                n = 20 if "resnet" in name or "trained" in name else 50
                wall, cpu = timeit(lambda: be(x), n, repeats=3)
                speed[bname, bs] = wall / bs
                rows.append({"model": name, "backend": bname, "batch": bs, "ms_per_face": wall / bs,
                             "cpu_ms_per_face": cpu / bs})
                print(f"  {name:<10} {bname:<12} batch {bs}: {wall / bs:7.2f} ms/face  (cpu {cpu / bs:7.2f})", flush=True)
        if "ORT int8" in backends:
            ratios = {bs: speed["ORT fp32", bs] / speed["ORT int8", bs] for bs in (1, 4)}
            verdict = ("INT8 is faster than fp32" if min(ratios.values()) > 1.05 else
                       "INT8 is NOT faster than fp32 on this CPU (use the fp32 model)")
            print(f"  {name:<10} INT8 vs fp32, same run: {ratios[1]:.2f}x at batch 1, {ratios[4]:.2f}x at batch 4 "
                  f"-> {verdict}", flush=True)
            rows.append({"model": name, "int8_speedup_b1": ratios[1], "int8_speedup_b4": ratios[4]})
        if check is not None and "ORT int8" in backends:
            xc = normalise_faces(check, ckpt.mean, ckpt.std)
            p32, p8 = softmax(backends["ORT fp32"](xc)), softmax(backends["ORT int8"](xc))
            pt = softmax(backends["torch eager"](xc))
            rows.append({"model": name, "int8_top1_agreement": float((p32.argmax(1) == p8.argmax(1)).mean()),
                         "int8_max_prob_diff": float(np.abs(p32 - p8).max()),
                         "onnx_torch_max_prob_diff": float(np.abs(p32 - pt).max()), "faces": len(xc)})
            print(f"  {name:<10} INT8 vs fp32 on {len(xc)} FER2013 PrivateTest faces: top-1 agreement "
                  f"{rows[-1]['int8_top1_agreement'] * 100:.1f}%, max |dp| {rows[-1]['int8_max_prob_diff']:.2e}; "
                  f"ORT fp32 vs torch max |dp| {rows[-1]['onnx_torch_max_prob_diff']:.1e}", flush=True)
    return int8_paths


# -- videos with 1, 2, 4 faces ----------------------------------------------------------------

def face_track(clip: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of the clip and a face centre per frame (YuNet if present, else Haar;
    gaps interpolated), so face-centred tiles can be cut from it."""
    from ferlab.inference.detector import make_detector
    from ferlab.inference.preprocess import to_gray

    det = make_detector("yunet")  # the bundled default
    cap = cv2.VideoCapture(str(clip))
    frames, centres = [], []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
        b = det.detect(f, to_gray(f))
        if len(b):
            x, y, w, h = b[np.argmax(b[:, 2] * b[:, 3])]
            centres.append((x + w / 2, y + h / 2))
        else:
            centres.append((np.nan, np.nan))
    c = np.array(centres, np.float64)
    idx = np.arange(len(c))
    for k in range(2):
        ok = ~np.isnan(c[:, k])
        c[:, k] = np.interp(idx, idx[ok], c[ok, k])
    return frames, c


def build_video(frames: list[np.ndarray], centres: np.ndarray, n_faces: int, path: Path, length: int) -> Path:
    """640x480: 1 face = the clip letterboxed; 2/4 faces = 320x240 tiles cut around the face
    at different moments of the clip (the others are face-free background tiles)."""
    if path.is_file():
        return path
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    n = len(frames)
    for t in range(length):
        canvas = np.zeros((480, 640, 3), np.uint8)
        if n_faces == 1:
            canvas[60:420] = frames[t % n]
        else:
            for k in range(4):
                i = (t + k * n // 4) % n
                f = frames[i]
                cx, cy = centres[i]
                if k < n_faces:
                    x0 = int(np.clip(cx - 160, 0, f.shape[1] - 320))
                    y0 = int(np.clip(cy - 120, 0, f.shape[0] - 240))
                else:  # background: the half of the frame away from the face
                    x0 = 0 if cx > f.shape[1] / 2 else f.shape[1] - 320
                    y0 = f.shape[0] - 240
                canvas[(k // 2) * 240:(k // 2) * 240 + 240, (k % 2) * 320:(k % 2) * 320 + 320] = f[y0:y0 + 240, x0:x0 + 320]
        w.write(canvas)
    w.release()
    return path


# -- 2. detector -------------------------------------------------------------------------------

def bench_detectors(video: Path, rows: list[dict[str, Any]]) -> None:
    from ferlab.inference.detector import YuNetDetector, make_detector
    from ferlab.inference.preprocess import to_gray

    cap = cv2.VideoCapture(str(video))
    frames = [cap.read()[1] for _ in range(30)]
    grays = [to_gray(f) for f in frames]
    # "yunet" runs in ONNX Runtime (the default); "yunet-cv" is the same model in OpenCV's DNN module
    configs: list[tuple[str, str, float]] = [("haar", "", 1.0), ("haar", "", 0.5), ("yunet", "", 1.0),
                                             ("yunet", "", 0.5), ("yunet-cv", "", 1.0)]
    for name, path, scale in configs:
        det = make_detector(YuNetDetector(engine="opencv") if name == "yunet-cv" else name, path or None, scale=scale)
        it = iter(range(10**9))
        found = []

        def step() -> None:
            i = next(it) % len(frames)
            found.append(len(det.detect(frames[i], grays[i])))

        wall, cpu = timeit(step, len(frames), repeats=3, warmup=2)
        rows.append({"detector": name, "scale": scale, "ms_per_frame": wall, "cpu_ms_per_frame": cpu,
                     "faces_per_frame": float(np.mean(found))})
        print(f"  {name:<8} scale {scale:<4}: {wall:6.1f} ms/frame (cpu {cpu:6.1f}), "
              f"{np.mean(found):.2f} faces/frame found", flush=True)


def bench_detection_real(rows: list[dict[str, Any]]) -> None:
    """Haar (thesis) vs YuNet (default) on real footage: the bundled clip (frames with a face,
    faces per frame, ms per frame) and the sample photos (faces per photo, ms per photo)."""
    from ferlab.inference.detector import make_detector
    from ferlab.inference.preprocess import load_image, to_gray

    from ferlab.inference.capture import iter_frames, open_capture

    cap, info = open_capture(REPO / "src" / "ferlab" / "assets" / "sample_clip.mp4")
    frames = [f for _, _, f in iter_frames(cap, info)]
    cap.release()
    photos = sorted((SHARED / "samples" / "photos").glob("*")) if (SHARED / "samples" / "photos").is_dir() else []
    images = [(p.name, load_image(p)) for p in photos]
    for name in ("haar", "yunet"):
        det = make_detector(name)
        counts, ms = [], []
        for f in frames:
            g = to_gray(f)
            t = time.perf_counter()
            counts.append(len(det.detect(f, g)))
            ms.append((time.perf_counter() - t) * 1000)
        c = np.array(counts)
        row: dict[str, Any] = {"detector": name, "clip_frames_with_face": float((c > 0).mean()),
                               "clip_faces_per_frame": float(c.mean()), "clip_ms_median": float(np.median(ms))}
        per, pms = [], []
        for pname, img in images:
            g = to_gray(img)
            t = time.perf_counter()
            per.append((pname, len(det.detect(img, g))))
            pms.append((time.perf_counter() - t) * 1000)
        row["photos"] = dict(per)
        row["photo_ms_median"] = float(np.median(pms)) if pms else None
        rows.append(row)
        print(f"  {name:<6} bundled clip: face in {row['clip_frames_with_face'] * 100:.1f}% of {len(frames)} frames, "
              f"{row['clip_faces_per_frame']:.2f} faces/frame, {row['clip_ms_median']:.1f} ms/frame (median) | "
              f"load {load()}", flush=True)
        if per:
            print(f"  {name:<6} {len(per)} sample photos: {sum(n for _, n in per)} boxes "
                  f"({', '.join(f'{p} {n}' for p, n in per)}), {row['photo_ms_median']:.0f} ms/photo (median)", flush=True)


# -- 3. pipeline -------------------------------------------------------------------------------

class _Draw:
    """A sink that draws each frame's results once, as ``ferlab video -o`` and the window do."""

    def open(self, ctx: Any) -> None:
        self.ctx = ctx

    def write(self, frame: np.ndarray, result: Any) -> None:
        self.ctx.annotated(frame, result)

    def close(self) -> None:
        pass


def run_pipeline(rec: Any, video: Path, frames: int, **session: Any) -> dict[str, float]:
    """The frame loop every command uses (``Recognizer.stream``), with drawing attached."""
    t, c = time.perf_counter(), time.process_time()
    summary = rec.stream(video, max_frames=frames, sinks=[_Draw()], **session).run(handle_sigint=False)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    n = summary.frames
    return {"fps": n / wall, "cpu_ms_per_frame": cpu / n * 1000, "faces_per_frame": summary.faces / n}


def bench_pipeline(ckpt_path: Path, int8: Path | None, videos: dict[int, Path], frames: int,
                   rows: list[dict[str, Any]], threads: int | None, repeats: int = 2) -> None:
    from ferlab.inference import Recognizer

    h = {"detector": "haar"}
    ladder: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("thesis: torch, Haar full frame, every frame", {"backend": "torch", **h}, {}),
        ("Haar + ONNX Runtime (backend auto)", {"backend": "auto", **h}, {}),
        ("Haar + --detect-scale 0.5", {"backend": "auto", "detect_scale": 0.5, **h}, {}),
        ("Haar + --detect-scale 0.5 --detect-every 3", {"backend": "auto", "detect_scale": 0.5, **h},
         {"detect_every": 3}),
        ("defaults (YuNet, ORT, every frame)", {}, {}),
        ("defaults + --detect-scale 0.5", {"detect_scale": 0.5}, {}),
        ("defaults + --detect-scale 0.5 --detect-every 2", {"detect_scale": 0.5}, {"detect_every": 2}),
        ("defaults + --tta flip", {"tta": "flip"}, {}),
    ]
    if int8 is not None:
        ladder.append(("defaults + INT8 model", {"path": int8}, {}))
    recs: dict[str, Any] = {}
    for label, opts, sess in ladder:
        opts = dict(opts)
        path = opts.pop("path", ckpt_path)
        recs[label] = Recognizer.from_pretrained(path, threads=threads, **opts)
    for n_faces, video in videos.items():
        for label, _, sess in ladder:
            best: dict[str, float] | None = None
            for _ in range(repeats):  # best of N runs
                r = run_pipeline(recs[label], video, frames, **sess)
                if best is None:
                    best = r
                else:  # best wall-clock fps and best CPU time, each over the runs
                    best = {**r, "fps": max(best["fps"], r["fps"]),
                            "cpu_ms_per_frame": min(best["cpu_ms_per_frame"], r["cpu_ms_per_frame"])}
            assert best is not None
            rows.append({"faces": n_faces, "config": label, **best})
            print(f"  {n_faces} face(s) | {label:<46} {best['fps']:6.1f} fps  (cpu {best['cpu_ms_per_frame']:5.1f} "
                  f"ms/frame, {best['faces_per_frame']:.2f} faces/frame)", flush=True)


# -- 4. faces at every size in video -------------------------------------------------------------

PREVIOUS_POLICY = {"detect_side": 0, "min_face": 0, "max_detect_side": 1920}  # one pass, <= 1920 px
CLOSEUP_SHOT = (82, 211)  # the sample clip's frontal close-up of the performer (bench_tracking.py)


def build_closeup(clip: Path, path: Path) -> tuple[Path, int]:
    """The close-up shot, a fixed 16:9 window twice the median face height around the mean face
    centre, upscaled (bicubic) to 1920x1080: the face fills half the frame's height."""
    from ferlab.inference.detector import YuNetDetector, square_boxes

    det = YuNetDetector()
    cap = cv2.VideoCapture(str(clip))
    frames, sides, centres = [], [], []
    i = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if CLOSEUP_SHOT[0] <= i < CLOSEUP_SHOT[1]:
            frames.append(f)
            rows = det.detect_faces(f)
            if len(rows):
                b = square_boxes(rows[np.argmax(rows[:, 2] * rows[:, 3])][None])[0]
                sides.append(b[2])
                centres.append((b[0] + b[2] / 2, b[1] + b[3] / 2))
        i += 1
    cap.release()
    h = 2 * float(np.median(sides))
    w = h * 16 / 9
    cx, cy = np.mean(centres, axis=0)
    fh, fw = frames[0].shape[:2]
    x0, y0 = float(np.clip(cx - w / 2, 0, fw - w)), float(np.clip(cy - h / 2, 0, fh - h))
    m = np.float32([[1920 / w, 0, -x0 * 1920 / w], [0, 1080 / h, -y0 * 1080 / h]])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (1920, 1080))
    for f in frames:
        writer.write(cv2.warpAffine(f, m, (1920, 1080), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    print(f"  close-up: frames {CLOSEUP_SHOT[0]}-{CLOSEUP_SHOT[1] - 1} of the sample clip, window {w:.0f}x{h:.0f} px "
          f"-> 1920x1080 (x{1080 / h:.2f}), face {np.median(sides) * 1080 / h:.0f} px high (median) in "
          f"{len(frames)} frames", flush=True)
    return path, len(frames)


def _flags(opts: dict[str, Any]) -> list[str]:
    return [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def bench_scale_video(ckpt: Path | None, videos: dict[int, Path], frames: int, rows: list[dict[str, Any]],
                      threads: int | None, work: Path, repeats: int = 2) -> None:
    """Section 4 (module docstring): the close-up through the real ``ferlab video``, then the
    fps of both detection policies side by side."""
    import subprocess

    from ferlab.inference import Recognizer
    from ferlab.inference.sinks import JsonlSink

    closeup, n = build_closeup(SHARED / "samples" / "short_hamilton_clip.mp4", work / "closeup1080.avi")
    policies = {"default": {}, "previous (one pass, --max-detect-side 1920)": PREVIOUS_POLICY}
    for label, opts in policies.items():
        out = work / "closeup.jsonl"
        cmd = [sys.executable, "-m", "ferlab", "video", str(closeup), "--jsonl", str(out), "--no-window", "--quiet",
               *(["--model", str(ckpt)] if ckpt else []), *_flags(opts)]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO)
        wall = time.perf_counter() - t
        per = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        tracked = [[f["track_id"] for f in r["faces"] if f["track_id"] is not None] for r in per]
        ids = sorted({i for t in tracked for i in t})
        with_face = sum(1 for t in tracked if t)
        extra = sum(1 for t in tracked if len(t) > 1)
        main = max(ids, key=lambda i: sum(i in t for t in tracked)) if ids else None
        with_main = sum(1 for t in tracked if main in t)
        rows.append({"section": "closeup", "policy": label, "frames": len(per), "frames_tracked": with_face,
                     "frames_with_main_id": with_main, "ids": ids, "frames_with_more_than_one": extra,
                     "wall_s": wall})
        print(f"  close-up 1920x1080 | {label:<44} face tracked in {with_face}/{len(per)} frames "
              f"({with_face / max(1, len(per)) * 100:.1f}%), with one id ({main}) in {with_main} "
              f"({with_main / max(1, len(per)) * 100:.1f}%); ids {ids}, frames with a second face {extra} | "
              f"`ferlab video {' '.join(_flags(opts)) or '(defaults)'}` {wall:.1f} s", flush=True)
    recs = {label: Recognizer.from_pretrained(ckpt, threads=threads, **opts) for label, opts in policies.items()}
    for name, video, n_frames in (("640x480, 4 faces", videos[4], frames), ("640x480, 1 face", videos[1], frames),
                                  ("1920x1080 close-up", closeup, n)):
        best: dict[str, dict[str, float]] = {}
        for _ in range(repeats):  # interleaved, so both see the same machine
            for label, rec in recs.items():
                t, c = time.perf_counter(), time.process_time()
                summary = rec.stream(video, max_frames=n_frames, sinks=[JsonlSink(work / "out.jsonl")]).run(
                    handle_sigint=False)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                r = {"fps": summary.frames / wall, "cpu_ms_per_frame": cpu / summary.frames * 1000,
                     "faces_per_frame": summary.faces / summary.frames}
                if label not in best or r["fps"] > best[label]["fps"]:
                    best[label] = r
        line = f"  {name:<19} | JSONL only |"
        for label, r in best.items():
            rows.append({"section": "fps", "video": name, "policy": label, **r})
            line += (f" {label.split(' (')[0]}: {r['fps']:5.1f} fps (cpu {r['cpu_ms_per_frame']:5.1f} ms/frame, "
                     f"{r['faces_per_frame']:.2f} faces/frame) |")
        first, second = list(best.values())
        print(line + f" default/previous {first['fps'] / second['fps']:.2f}x", flush=True)


def bench_models(names: list[str], video: Path, frames: int, rows: list[dict[str, Any]], threads: int | None,
                 work: Path, repeats: int) -> None:
    from ferlab.inference import Recognizer
    from ferlab.inference.sinks import JsonlSink

    faces = calibration_faces(4, seed=2, split="test", prefix="PublicTest_", balanced=False)
    if faces is None:  # no FER2013 here: any 48x48 gray faces time the same
        faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    recs = {n: Recognizer.from_pretrained(n, threads=threads) for n in names}
    best: dict[str, dict[str, float]] = {}
    for name, rec in recs.items():
        for bs in (1, 4):
            wall, cpu = timeit(lambda: rec.classify_crops(faces[:bs]), 50, repeats=3)
            best.setdefault(name, {})[f"ms_per_face_b{bs}"] = wall / bs
    for _ in range(repeats):  # interleaved
        for name, rec in recs.items():
            t, c = time.perf_counter(), time.process_time()
            summary = rec.stream(video, max_frames=frames, sinks=[JsonlSink(work / "out.jsonl")]).run(
                handle_sigint=False)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            if summary.frames / wall > best[name].get("fps", 0.0):
                best[name].update(fps=summary.frames / wall, cpu_ms_per_frame=cpu / summary.frames * 1000,
                                  faces_per_frame=summary.faces / summary.frames)
    for name, r in best.items():
        rows.append({"model": name, **r})
        print(f"  {name:<22} {r['ms_per_face_b1']:6.2f} ms/face (batch 1), {r['ms_per_face_b4']:6.2f} (batch 4) | "
              f"640x480 4 faces, JSONL only: {r['fps']:5.1f} fps (cpu {r['cpu_ms_per_frame']:5.1f} ms/frame, "
              f"{r['faces_per_frame']:.2f} faces/frame)", flush=True)


LIVE = "live view"  # annotated, not saved, no read-ahead: `ferlab live` minus cv2.imshow


def bench_outputs(ckpt_path: Path, videos: dict[int, Path], frames: int, rows: list[dict[str, Any]],
                  threads: int | None, work: Path, repeats: int = 2) -> None:
    """``ferlab video`` as users run it: the same stream with its real file sinks, the annotated
    video encoded (mp4v) or only the per-frame JSONL, defaults against the thesis settings and
    against the previous default (YuNet through OpenCV's DNN module, no read-ahead or
    background encoding), in the same run."""
    from ferlab.inference import Recognizer
    from ferlab.inference.detector import ScaledDetector, YuNetDetector
    from ferlab.inference.sinks import JsonlSink, VideoSink

    previous = "previous default (YuNet in OpenCV DNN, inline I/O)"
    recs = {"defaults": Recognizer.from_pretrained(ckpt_path, threads=threads),
            previous:
                Recognizer.from_pretrained(ckpt_path, threads=threads,
                                           detector=ScaledDetector(YuNetDetector(engine="opencv"))),
            "thesis (Haar + torch)": Recognizer.from_pretrained(ckpt_path, backend="torch", detector="haar")}
    outputs = {"video + JSONL": lambda bg: [VideoSink(work / "out.mp4", background=bg), JsonlSink(work / "out.jsonl")],
               "JSONL only": lambda bg: [JsonlSink(work / "out.jsonl")],
               LIVE: lambda bg: [_Draw()]}
    for n_faces, video in videos.items():
        for out_name, make_sinks in outputs.items():
            for label, rec in recs.items():
                if out_name == LIVE and label != "defaults":
                    continue
                inline = label == previous or out_name == LIVE  # a camera is never read ahead
                best: dict[str, float] | None = None
                for _ in range(repeats):
                    t, c = time.perf_counter(), time.process_time()
                    # the previous loop decoded and encoded inline
                    summary = rec.stream(video, max_frames=frames, sinks=make_sinks(not inline),
                                         read_ahead=0 if inline else 4).run(handle_sigint=False)
                    wall, cpu = time.perf_counter() - t, time.process_time() - c
                    r = {"fps": summary.frames / wall, "cpu_ms_per_frame": cpu / summary.frames * 1000,
                         "faces_per_frame": summary.faces / summary.frames}
                    best = r if best is None or r["fps"] > best["fps"] else best
                assert best is not None
                rows.append({"faces": n_faces, "output": out_name, "config": label, **best})
                print(f"  {n_faces} face(s) | {out_name:<13} | {label:<50} {best['fps']:6.1f} fps  (cpu "
                      f"{best['cpu_ms_per_frame']:5.1f} ms/frame, {best['faces_per_frame']:.2f} faces/frame)", flush=True)
        for out_name in outputs:
            if out_name == LIVE:
                continue
            got = {r["config"]: r["fps"] for r in rows if r["faces"] == n_faces and r["output"] == out_name}
            print(f"  {n_faces} face(s) | {out_name:<13} | defaults vs thesis {got['defaults'] / got['thesis (Haar + torch)']:.2f}x, "
                  f"vs previous default {got['defaults'] / got[previous]:.2f}x",
                  flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=120, help="frames per pipeline run")
    ap.add_argument("--model", default=None,
                    help="also benchmark this trained checkpoint and use it for the pipeline "
                         "(default: the shipped fernet when installed, else random-weight FerNet)")
    ap.add_argument("--repeats", type=int, default=2, help="pipeline runs per setting (best is kept)")
    ap.add_argument("--no-resnet", action="store_true", help="skip ResNet-18")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: classifier,detector,pipeline,outputs,"
                                                "scale")
    ap.add_argument("--models", default="", help="section 5: comma list of models to compare (default: the "
                                                  "models in the box)")
    ap.add_argument("--json", default=None, help="write all numbers here")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for OpenCV, torch and ONNX Runtime (default: library defaults = all cores); "
                         "1 makes CPU time a clean measure on a machine shared with other jobs")
    ap.add_argument("--work", default=None, help="folder for exported models and test videos (default: temp)")
    args = ap.parse_args()

    import torch

    from ferlab.research.nets import create, load_checkpoint, save_checkpoint
    from ferlab.research.nets.checkpoint import Checkpoint

    skip = set(filter(None, args.skip.split(",")))
    user_model = args.model  # section 4 runs `ferlab video` as users do: the default model unless given
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ferlab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"ferlab inference benchmark | {os.cpu_count()} CPUs | torch {torch.__version__} | OpenCV "
          f"{cv2.__version__} | threads {args.threads or 'library default'} | load average {load()}", flush=True)
    print(f"CPU {cpu_flags()}", flush=True)
    torch.manual_seed(0)
    models: dict[str, Any] = {"fernet": Checkpoint(create("fernet").eval(), {"model": {"name": "fernet"}})}
    if not args.no_resnet:
        models["resnet18"] = Checkpoint(create("resnet18").eval(), {"model": {"name": "resnet18"}})
    from ferlab.models.hub import resolve_model, shipped_models

    if args.model is None and any(m.name == "fernet" for m in shipped_models()):
        args.model = "fernet"  # the shipped, trained FerNet: INT8 agreement then means something
    if args.model:
        models["trained"] = load_checkpoint(resolve_model(args.model))
        print(f"trained model: {resolve_model(args.model)}", flush=True)
    results: dict[str, Any] = {"load_start": load()}

    int8: dict[str, Path] = {}
    if "classifier" not in skip:
        print("\n1. classifier, ms per face (best of 3)", flush=True)
        results["classifier"] = []
        int8 = bench_classifier(models, work, results["classifier"], args.threads)

    videos: dict[int, Path] = {}
    if not {"detector", "pipeline", "outputs", "scale", "models"} <= skip:
        clip = SHARED / "samples" / "short_hamilton_clip.mp4"
        frames, centres = face_track(clip)
        videos = {k: build_video(frames, centres, k, work / f"faces{k}.avi", max(args.frames, 150)) for k in (1, 2, 4)}
    if "detector" not in skip:
        print("\n2. detector, ms per 640x480 frame (4-face video, 30 frames, best of 3)", flush=True)
        results["detector"] = []
        bench_detectors(videos[4], results["detector"])
        print("\n2b. detection on real footage: the bundled clip and the sample photos", flush=True)
        results["detection_real"] = []
        bench_detection_real(results["detection_real"])
    if "pipeline" not in skip:
        print(f"\n3. end-to-end, 640x480, decode+detect+classify+track+smooth+draw, {args.frames} frames, "
              f"best of {args.repeats}",
              flush=True)
        name = "trained" if args.model else "fernet"
        ckpt_path = work / f"{name}.safetensors"
        if args.model:
            ckpt_path = resolve_model(args.model)
        else:
            save_checkpoint(ckpt_path, models[name].model, {"model": {"name": name}})
        os.environ.setdefault("FERLAB_CACHE", str(work / "cache"))
        results["pipeline"] = []
        bench_pipeline(ckpt_path, int8.get(name), videos, args.frames, results["pipeline"], args.threads,
                       args.repeats)
    if "outputs" not in skip:
        print(f"\n3c. ferlab video end to end with its outputs (decode+detect+classify+track+smooth+draw+encode), "
              f"640x480, {max(args.frames, 150)} frames, best of {args.repeats}", flush=True)
        results["outputs"] = []
        ckpt = resolve_model(args.model) if args.model else work / "fernet.safetensors"
        bench_outputs(ckpt, videos, max(args.frames, 150), results["outputs"], args.threads, work, args.repeats)
    if "scale" not in skip:
        print(f"\n4. faces at every size in video: a 1920x1080 close-up, and the fps of the default detection policy "
              f"beside the previous one (JSONL only, {max(args.frames, 150)} frames, best of {args.repeats})",
              flush=True)
        results["scale"] = []
        ckpt = resolve_model(user_model) if user_model else None
        bench_scale_video(ckpt, videos, max(args.frames, 150), results["scale"], args.threads, work, args.repeats)
    if "models" not in skip:
        from ferlab.models.hub import shipped_models

        names = [n for n in args.models.split(",") if n] or [m.name for m in shipped_models()]
        print(f"\n5. models side by side: ms per face and 640x480 4-face fps (JSONL only, {max(args.frames, 150)} "
              f"frames, best of {args.repeats})", flush=True)
        results["models"] = []
        bench_models(names, videos[4], max(args.frames, 150), results["models"], args.threads, work, args.repeats)
    results["load_end"] = load()
    print(f"\nload average at the end: {load()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
