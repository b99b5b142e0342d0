"""``ferlab live | video | predict | export``.

Heavy imports (OpenCV, torch, onnxruntime) happen inside the commands so that ``ferlab --help``
and the other subcommands stay fast.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import FerlabError


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, metavar="NAME|CKPT",
                   help="shipped model name, checkpoint .safetensors, run folder, or exported .onnx "
                        "(default: the best shipped model)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto = ONNX Runtime on CPU when available (faster), else PyTorch")
    p.add_argument("--device", default="cpu", help="torch device for --backend torch (e.g. cuda)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--detector", choices=("haar", "yunet"), default="haar",
                   help="face detector: haar = Viola-Jones as in the thesis (default); yunet = OpenCV's CNN detector")
    p.add_argument("--detector-model", default=None, metavar="PATH", help="YuNet .onnx file (needed for --detector yunet)")
    p.add_argument("--detect-scale", type=float, default=1.0, metavar="S",
                   help="run the detector on the frame shrunk by S (0.5 = ~2-3x faster detection; "
                        "faces below ~48 px are then missed)")


def _stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smoothing", choices=("window", "ema", "none", "shared"), default="window",
                   help="window = per-face mean of the last N frames (Eq. 26); ema = per-face exponential "
                        "average; none = raw; shared = the thesis's Algorithm 1 (ONE buffer for all faces, "
                        "mixes people; for comparison with Exp. 15)")
    p.add_argument("--window", type=int, default=10, metavar="N", help="smoothing window N (default 10, Table 5)")
    p.add_argument("--ema-alpha", type=float, default=None, metavar="A", help="EMA weight of the new frame (default 2/(N+1))")
    p.add_argument("--detect-every", type=int, default=1, metavar="K",
                   help="detect faces every K-th frame and track in between (K=2-3 nearly halves the cost)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _recognizer(args: argparse.Namespace) -> Any:
    from .recognizer import Recognizer

    kwargs: dict[str, Any] = dict(backend=args.backend, detector=args.detector, detector_model=args.detector_model,
                                  detect_scale=args.detect_scale, device=args.device, threads=args.threads)
    for key in ("smoothing", "window", "ema_alpha", "detect_every"):
        if hasattr(args, key):
            kwargs[key] = getattr(args, key)
    rec = Recognizer.from_pretrained(args.model, **kwargs)
    if not getattr(args, "quiet", False):
        print(f"model {Path(rec.source or '?').name} | backend {rec.backend.name} | detector {args.detector}"
              + (f" at scale {args.detect_scale}" if args.detect_scale != 1 else ""), file=sys.stderr)
    return rec


def _report(summary: Any, quiet: bool = False) -> int:
    if summary.truncated:
        print(f"warning: {summary.source} ended after {summary.frames} of {summary.expected_frames} frames "
              "(truncated or damaged file); outputs cover the frames that were read", file=sys.stderr)
    if not quiet:
        print(f"{summary.frames} frames, {summary.faces} faces, {summary.tracks} tracks, "
              f"{summary.fps:.1f} fps" + (f" -> {', '.join(summary.outputs)}" if summary.outputs else ""),
              file=sys.stderr)
    if summary.interrupted:
        print(f"interrupted: outputs hold the first {summary.frames} frames", file=sys.stderr)
        return 130
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from .video import run_stream

    if args.window < 1 or args.detect_every < 1:
        raise FerlabError("--window and --detect-every must be >= 1")
    show = not args.no_window
    rec = _recognizer(args)
    # Headless runs still need a visible result: JSON lines on stdout unless a file is given.
    jsonl = args.jsonl if args.jsonl else (None if show else sys.stdout)
    summary = run_stream(rec, args.camera, jsonl=jsonl, csv_path=args.csv, output=args.output, show=show,
                         progress=not args.quiet and show, max_frames=args.max_frames, window_title="ferlab live (q quits)",
                         smoothing=args.smoothing, window=args.window, ema_alpha=args.ema_alpha,
                         detect_every=args.detect_every)
    return _report(summary, quiet=args.quiet)


def cmd_video(args: argparse.Namespace) -> int:
    from .video import gui_available, run_stream

    if not (args.output or args.jsonl or args.csv or args.plot) and args.no_window:
        raise FerlabError("nothing to do: give -o OUT.mp4, --jsonl, --csv or --plot (or drop --no-window)")
    rec = _recognizer(args)
    show = not args.no_window and gui_available()  # a preview only: skipped silently when headless
    summary = run_stream(rec, args.input, output=args.output, jsonl=args.jsonl, csv_path=args.csv, plot=args.plot,
                         show=show, progress=not args.quiet, max_frames=args.max_frames,
                         smoothing=args.smoothing, window=args.window, ema_alpha=args.ema_alpha,
                         detect_every=args.detect_every)
    return _report(summary, quiet=args.quiet)


def cmd_predict(args: argparse.Namespace) -> int:
    import cv2

    from ..fileio import write_json
    from .overlay import annotate
    from .preprocess import list_images, load_image

    files = list_images(args.paths)
    rec = _recognizer(args)
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    used_names: set[str] = set()
    for path in files:
        try:
            image = load_image(path)
            faces = rec.predict(image)
        except FerlabError as exc:
            failed.append(str(exc))
            print(f"ferlab predict: error: {exc}", file=sys.stderr)
            results.append({"file": str(path), "error": str(exc)})
            continue
        entry = {"file": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                 "faces": [f.to_dict() for f in faces]}
        results.append(entry)
        if not args.out or args.print:
            print(json.dumps(entry), flush=True)
        if args.annotate:
            out_dir = Path(args.annotate)
            out_dir.mkdir(parents=True, exist_ok=True)
            ext = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".png"
            name = path.stem + ext
            i = 1
            while name in used_names:  # same file name in two input folders
                name, i = f"{path.stem}_{i}{ext}", i + 1
            used_names.add(name)
            drawn = annotate(image, faces)
            ok, buf = cv2.imencode(ext, drawn)
            if not ok:
                raise FerlabError(f"could not encode annotated image for {path}")
            from ..fileio import write_bytes

            write_bytes(out_dir / name, buf.tobytes())
    if args.out:
        write_json(args.out, results)
    n_faces = sum(len(r.get("faces", [])) for r in results)
    print(f"{len(files) - len(failed)} image(s), {n_faces} face(s)"
          + (f" -> {args.out}" if args.out else "") + (f", annotated in {args.annotate}" if args.annotate else ""),
          file=sys.stderr)
    if failed:
        if len(files) == 1:
            raise FerlabError(failed[0])
        print(f"ferlab predict: {len(failed)} of {len(files)} image(s) could not be read", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np

    from ..models.hub import resolve_model
    from ..models.checkpoint import load_checkpoint
    from .backends import OnnxBackend, TorchBackend, softmax
    from .export import export_onnx, load_calibration_faces, normalise_faces

    if not args.onnx:
        raise FerlabError("choose an export format: --onnx (the only one so far)")
    if str(args.output).lower().endswith(".safetensors"):
        raise FerlabError(f"output {args.output} should end in .onnx")
    ckpt = load_checkpoint(resolve_model(args.model))
    calib = None
    if args.int8:
        if not args.calib:
            raise FerlabError("--int8 needs --calib DIR: a folder of face images to calibrate on "
                              "(e.g. FER2013's train/ folder; a few hundred are used)")
        calib = load_calibration_faces(args.calib, args.calib_count, seed=0)
    path = export_onnx(ckpt, args.output, opset=args.opset, int8=args.int8, calibration=calib)
    onnx_be = OnnxBackend(path)
    torch_be = TorchBackend(ckpt.model)
    # Check the file against the PyTorch model it came from, on real faces when we have them.
    if args.calib:
        check = normalise_faces(load_calibration_faces(args.calib, 256, seed=1), ckpt.mean, ckpt.std)
    else:
        check = np.random.default_rng(0).standard_normal((64, 1, 48, 48)).astype(np.float32)
    ref, got = torch_be(check), onnx_be(check)
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    dprob = float(np.abs(softmax(ref) - softmax(got)).max())
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB, {'INT8' if args.int8 else 'fp32'}, opset {args.opset}); "
          f"vs PyTorch on {len(check)} {'faces' if args.calib else 'random inputs'}: "
          f"top-1 agreement {agree * 100:.1f}%, max |prob diff| {dprob:.2e}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("live", help="emotion recognition on a webcam (window; q quits)",
                       description="Live webcam recognition. Without a window (--no-window) JSON lines go to stdout.")
    p.add_argument("--camera", default="0", help="camera index (default 0) or stream URL")
    p.add_argument("--no-window", action="store_true", help="do not open a window")
    p.add_argument("-o", "--output", default=None, help="also record the annotated video (.mp4)")
    p.add_argument("--jsonl", default=None, help="per-frame results as JSON lines")
    p.add_argument("--csv", default=None, help="per-face results as CSV")
    _model_args(p)
    _stream_args(p)
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("video", help="annotate a video file or stream (RTSP/HTTP URL)",
                       description="Process a video frame by frame: annotated video, per-frame JSONL, "
                                   "per-face CSV and a per-track emotion-over-time plot.")
    p.add_argument("input", help="video file, or any URL OpenCV opens (rtsp://...)")
    p.add_argument("-o", "--output", default=None, metavar="OUT.mp4", help="annotated video (.mp4 or .avi)")
    p.add_argument("--jsonl", default=None, metavar="F", help="one JSON object per frame")
    p.add_argument("--csv", default=None, metavar="F", help="one row per face")
    p.add_argument("--plot", default=None, metavar="PNG", help="per-track emotion-over-time plot")
    p.add_argument("--no-window", action="store_true", help="no preview window")
    _model_args(p)
    _stream_args(p)
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("predict", help="faces and emotions in photos (files or folders)",
                       description="Print one JSON line per image (faces with box, label, probabilities).")
    p.add_argument("paths", nargs="+", metavar="IMG|DIR")
    p.add_argument("--out", default=None, metavar="JSON", help="write all results as one JSON list")
    p.add_argument("--print", action="store_true", help="print JSON lines even with --out")
    p.add_argument("--annotate", default=None, metavar="DIR", help="write annotated copies of the images here")
    _model_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a model to ONNX (optionally INT8-quantised)",
                       description="ONNX with input N x 1 x 48 x 48 normalised by Eq. (27), 7 logits out, dynamic "
                                   "batch; class names, mean and std in the model metadata.")
    p.add_argument("--onnx", action="store_true", help="export to ONNX")
    p.add_argument("--model", default=None, metavar="NAME|CKPT", help="shipped model name, checkpoint or run folder")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output .onnx file")
    p.add_argument("--int8", action="store_true", help="static INT8 quantisation (needs --calib)")
    p.add_argument("--calib", default=None, metavar="DIR", help="folder of face images for INT8 calibration")
    p.add_argument("--calib-count", type=int, default=300, metavar="N", help="calibration faces (default 300)")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=cmd_export)
