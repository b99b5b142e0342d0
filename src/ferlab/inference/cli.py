"""``ferlab live | video | predict | export | demo``: parse arguments, call the library, print.

The inference flags come from :mod:`ferlab.inference.options` (declared once, shared with
``ferlab serve``). Heavy imports (OpenCV, torch, onnxruntime) happen inside the commands so
that ``ferlab --help`` and the other subcommands stay fast.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import FerlabError
from . import options as inference_options

PHOTO_SCOPES = ("model", "detector")  # a photo has no tracking or smoothing
STREAM_SCOPES = inference_options.SCOPES  # live, video, demo (and serve) take every option
# Output flags, checked writable before any work (ferlab.cli.check_outputs): dest -> (flag, kind).
STREAM_OUTPUTS = {"output": ("-o", "file"), "jsonl": ("--jsonl", "file"), "csv": ("--csv", "file"),
                  "plot": ("--plot", "file")}


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _recognizer(args: argparse.Namespace) -> Any:
    from .recognizer import Recognizer

    rec = Recognizer.from_pretrained(options=inference_options.from_args(args))
    if not getattr(args, "quiet", False):
        opts = rec.options
        print(f"model {Path(rec.source or '?').name} | backend {rec.backend.name} | detector {opts.detector}"
              + (f" at scale {opts.detect_scale}" if opts.detect_scale != 1 else ""), file=sys.stderr)
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


def _stream(args: argparse.Namespace, source: str, *, jsonl: Any, show: bool, progress: bool,
            window_title: str, plot: str | None = None) -> int:
    from .sinks import ProgressSink, WindowSink, file_sinks

    inference_options.from_args(args)  # bad option values fail before anything is opened
    window = WindowSink(window_title) if show else None
    sinks: list[Any] = file_sinks(output=args.output, jsonl=jsonl, csv_path=args.csv, plot=plot)
    sinks.append(ProgressSink(enabled=progress))
    if window is not None:
        sinks.append(window)
    rec = _recognizer(args)
    summary = rec.stream(source, sinks=sinks, max_frames=args.max_frames, allow_empty=False).run()
    return _report(summary, quiet=args.quiet)


def cmd_live(args: argparse.Namespace) -> int:
    show = not args.no_window
    # Headless runs still need a visible result: JSON lines on stdout unless a file is given.
    jsonl = args.jsonl if args.jsonl else (None if show else sys.stdout)
    return _stream(args, args.camera, jsonl=jsonl, show=show, progress=not args.quiet and show,
                   window_title="ferlab live (q quits)")


def cmd_video(args: argparse.Namespace) -> int:
    from .capture import gui_available

    if not (args.output or args.jsonl or args.csv or args.plot) and args.no_window:
        raise FerlabError("nothing to do: give -o OUT.mp4, --jsonl, --csv or --plot (or drop --no-window)")
    show = not args.no_window and gui_available()  # a preview only: skipped silently when headless
    return _stream(args, args.input, jsonl=args.jsonl, show=show, progress=not args.quiet,
                   window_title="ferlab", plot=args.plot)


def cmd_predict(args: argparse.Namespace) -> int:
    from .photos import predict_images
    from .preprocess import list_images

    files = list_images(args.paths)  # a missing path is an error before the model loads
    rec = _recognizer(args)
    echo = not args.out or args.print

    def show(record: dict[str, Any]) -> None:
        if "error" in record:
            print(f"ferlab predict: error: {record['error']}", file=sys.stderr)
        elif echo:
            print(json.dumps(record), flush=True)

    records = predict_images(files, rec, out=args.out, annotate=args.annotate, on_record=show)
    failed = [r["error"] for r in records if "error" in r]
    n_faces = sum(len(r.get("faces", [])) for r in records)
    print(f"{len(records) - len(failed)} image(s), {n_faces} face(s)"
          + (f" -> {args.out}" if args.out else "") + (f", annotated in {args.annotate}" if args.annotate else ""),
          file=sys.stderr)
    if failed:
        if len(records) > 1:  # one image: its error line above says it all
            print(f"ferlab predict: {len(failed)} of {len(records)} image(s) could not be read", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    if not args.onnx:
        raise FerlabError("choose an export format: --onnx (the only one so far)")
    if args.int8 and not args.calib:
        raise FerlabError("--int8 needs --calib DIR: a folder of face images to calibrate on "
                          "(e.g. FER2013's train/ folder; a few hundred are used)")
    path = export_onnx(args.model, args.output, opset=args.opset, int8=args.int8, calibration=args.calib,
                       calibration_count=args.calib_count, check=args.check)
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB, {'INT8' if args.int8 else 'fp32'}, opset {args.opset}); "
          f"{path.verification}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    camera, source = args.camera, args.source
    if camera is not None and not str(camera).isdigit():  # a stream URL, as `live --camera` takes
        if source:
            raise FerlabError("give --camera URL or --source, not both")
        camera, source = None, camera
    demo(camera=None if camera is None else int(camera), source=source, out=args.out, window=not args.no_window,
         options=inference_options.from_args(args))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    add = inference_options.add_arguments
    p = sub.add_parser("live", help="emotion recognition on a webcam (window; q quits)",
                       description="Live webcam recognition. Without a window (--no-window) JSON lines go to stdout.")
    p.add_argument("--camera", default="0", help="camera index (default 0) or stream URL")
    p.add_argument("--no-window", action="store_true", help="do not open a window")
    p.add_argument("-o", "--output", default=None, help="also record the annotated video (.mp4)")
    p.add_argument("--jsonl", default=None, help="per-frame results as JSON lines")
    p.add_argument("--csv", default=None, help="per-face results as CSV")
    _run_args(p)
    add(p, STREAM_SCOPES)
    p.set_defaults(func=cmd_live, outputs=STREAM_OUTPUTS)

    p = sub.add_parser("video", help="annotate a video file or stream (RTSP/HTTP URL)",
                       description="Process a video frame by frame: annotated video, per-frame JSONL, "
                                   "per-face CSV and a per-track emotion-over-time plot.")
    p.add_argument("input", help="video file, or any URL OpenCV opens (rtsp://...)")
    p.add_argument("-o", "--output", default=None, metavar="OUT.mp4", help="annotated video (.mp4 or .avi)")
    p.add_argument("--jsonl", default=None, metavar="F", help="one JSON object per frame")
    p.add_argument("--csv", default=None, metavar="F", help="one row per face")
    p.add_argument("--plot", default=None, metavar="PNG", help="per-track emotion-over-time plot")
    p.add_argument("--no-window", action="store_true", help="no preview window")
    _run_args(p)
    add(p, STREAM_SCOPES)
    p.set_defaults(func=cmd_video, outputs=STREAM_OUTPUTS)

    p = sub.add_parser("predict", help="faces and emotions in photos (files or folders)",
                       description="Print one JSON line per image (faces with box, label, probabilities).")
    p.add_argument("paths", nargs="+", metavar="IMG|DIR")
    p.add_argument("--out", default=None, metavar="JSON", help="write all results as one JSON list")
    p.add_argument("--print", action="store_true", help="print JSON lines even with --out")
    p.add_argument("--annotate", default=None, metavar="DIR", help="write annotated copies of the images here")
    add(p, PHOTO_SCOPES)
    p.set_defaults(func=cmd_predict, outputs={"out": ("--out", "file"), "annotate": ("--annotate", "folder")})

    p = sub.add_parser("export", help="export a model to ONNX (optionally INT8-quantised)",
                       description="ONNX with input N x 1 x 48 x 48 normalised by Eq. (27), 7 logits out, dynamic "
                                   "batch; class names, mean and std in the model metadata. The file is checked "
                                   "against PyTorch before it is written.")
    p.add_argument("--onnx", action="store_true", help="export to ONNX")
    p.add_argument("--model", default=None, metavar="NAME|CKPT", help="shipped model name, checkpoint or run folder")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output .onnx file")
    p.add_argument("--int8", action="store_true", help="static INT8 quantisation, 7-bit weights so it is right on "
                                                       "CPUs with and without VNNI (needs --calib)")
    p.add_argument("--calib", default=None, metavar="DIR", help="folder of face images for INT8 calibration")
    p.add_argument("--calib-count", type=int, default=2000, metavar="N", help="calibration faces (default 2000)")
    p.add_argument("--check", default=None, metavar="DIR",
                   help="faces to check INT8 against fp32 on (default: FER2013 PublicTest faces beside --calib, "
                        "else other --calib faces); an INT8 model agreeing on < 98%% is not written")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=cmd_export, outputs={"output": ("-o", "file")})

    p = sub.add_parser("demo", help="run live recognition on the webcam, or on the bundled clip without one",
                       description="Runs the live pipeline with the best shipped model: on the webcam when one "
                                   "is present (and a display), otherwise on a sample clip bundled with ferlab. "
                                   "Writes the annotated video + per-frame JSONL and prints a summary.")
    p.add_argument("--camera", default=None, help="camera index to try first (default 0) or stream URL")
    p.add_argument("--source", help="video file or URL instead of camera/sample clip")
    p.add_argument("--out", default="ferlab-demo", help="output folder (default ./ferlab-demo)")
    p.add_argument("--no-window", action="store_true", help="never open a window")
    add(p, STREAM_SCOPES)
    p.set_defaults(func=cmd_demo, outputs={"out": ("--out", "folder")})

