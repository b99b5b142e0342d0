"""``ferlab run SOURCE``: one command, one set of flags, for every kind of source.

A user should not have to know which of ``live``, ``video``, ``predict`` or ``demo`` fits their
input. ``run`` looks at the source and takes the right path:

* a number (``0``, ``1``) is a camera;
* image files and folders of images are photos (each one on its own: no tracking, no smoothing);
* anything else (a video file, ``rtsp://``/``http://`` streams) is a video, tracked and smoothed.

The flags mean the same thing for every source: ``-o`` is the annotated copy (a video file for
a camera or video, a folder for photos), ``--jsonl`` one JSON object per frame (per photo),
``--csv`` one row per face. The older commands stay as shortcuts with their own flags.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import FerlabError
from ..fileio import write_text
from . import options as inference_options
from .preprocess import IMAGE_EXTS

KIND_CAMERA, KIND_PHOTOS, KIND_VIDEO = "camera", "photos", "video"


def source_kind(sources: list[str]) -> str:
    """Which pipeline a list of sources takes (see the module docstring); mixed lists are refused."""
    kinds = set()
    for s in sources:
        p = Path(s)
        if s.isdigit():
            kinds.add(KIND_CAMERA)
        elif p.is_dir() or p.suffix.lower() in IMAGE_EXTS:
            kinds.add(KIND_PHOTOS)
        else:
            kinds.add(KIND_VIDEO)
    if len(kinds) > 1 or (len(sources) > 1 and kinds != {KIND_PHOTOS}):
        raise FerlabError("give one camera or one video, or any number of photos and folders, not a mix: "
                          + " ".join(sources))
    return kinds.pop()


def _photo_csv(records: list[dict[str, Any]], class_names: list[str]) -> str:
    from .sinks import csv_header

    buf = io.StringIO()
    out = csv.writer(buf)
    # no frame/time/track for a photo; rotation: degrees the photo was turned to read the face
    out.writerow(["file"] + csv_header(class_names)[3:] + ["rotation"])
    for r in records:
        for f in r.get("faces", []):
            out.writerow([r["file"], *f["box"], f["label"], f["confidence"], *f["probs"].values(),
                          *([""] * len(class_names)), "" if f["uncertain"] is None else int(f["uncertain"]),
                          "" if f["uncertainty"] is None else f["uncertainty"], f.get("rotation", 0)])
    return buf.getvalue()


def _run_photos(args: argparse.Namespace) -> int:
    from .cli import _recognizer
    from .photos import predict_images
    from .preprocess import list_images

    files = list_images(args.source)
    rec = _recognizer(args)
    to_stdout = args.jsonl == "-"
    echo = to_stdout or not (args.jsonl or args.csv)

    def show(record: dict[str, Any]) -> None:
        if "error" in record:
            print(f"ferlab run: error: {record['error']}", file=sys.stderr)
        elif echo:
            print(json.dumps(record), flush=True)

    records = predict_images(files, rec, annotate=args.output, on_record=show)
    if args.jsonl and not to_stdout:
        write_text(args.jsonl, "".join(json.dumps(r) + "\n" for r in records))
    if args.csv:
        write_text(args.csv, _photo_csv(records, list(rec.class_names)))
    failed = sum("error" in r for r in records)
    if not args.quiet:
        faces = sum(len(r.get("faces", [])) for r in records)
        outputs = [o for o in (args.output, args.jsonl, args.csv) if o and o != "-"]
        print(f"{len(records) - failed} photo(s), {faces} face(s)" + (f" -> {', '.join(outputs)}" if outputs else ""),
              file=sys.stderr)
    if failed:
        if len(records) == 1:
            raise FerlabError(records[0]["error"])
        print(f"ferlab run: {failed} of {len(records)} photo(s) could not be read", file=sys.stderr)
        return 2
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .capture import gui_available
    from .cli import _stream

    kind = source_kind(args.source)
    if kind == KIND_PHOTOS:
        if args.plot:
            raise FerlabError("--plot draws emotion over time: it needs a camera or a video")
        return _run_photos(args)
    source = args.source[0]
    show = not args.no_window and gui_available()
    jsonl: Any = args.jsonl
    if not (args.output or args.jsonl or args.csv or args.plot or show):
        jsonl = sys.stdout  # headless and no file: the per-frame records are the visible result
    return _stream(args, source, jsonl=jsonl, show=show, progress=not args.quiet and jsonl is not sys.stdout,
                   window_title="ferlab (q quits)", plot=args.plot)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="emotions of every face in a camera, video, stream, photo or folder",
                       description="Any source: a camera index (0), a video file or URL (rtsp://, http://), "
                                   "photos or folders of photos. Without an output flag the results are shown "
                                   "in a window, or printed as JSON lines where there is no display.")
    p.add_argument("source", nargs="+", metavar="SOURCE", help="camera index, video file/URL, photos or folders")
    out = p.add_argument_group("outputs")
    out.add_argument("-o", "--output", default=None, metavar="PATH",
                     help="annotated copy: a video file (.mp4) for a camera or video, a folder for photos")
    out.add_argument("--jsonl", default=None, metavar="F", help="one JSON object per frame (per photo); - = stdout")
    out.add_argument("--csv", default=None, metavar="F", help="one row per face")
    out.add_argument("--plot", default=None, metavar="PNG", help="per-face emotion over time (camera/video)")
    out.add_argument("--no-window", action="store_true", help="never open a preview window")
    out.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    out.add_argument("--quiet", action="store_true", help="no progress or summary")
    inference_options.add_arguments(p, ("model",), title="model (rarely needed)")
    inference_options.add_arguments(p, ("detector",), title="face detection (rarely needed)")
    inference_options.add_arguments(p, ("stream",), title="tracking and smoothing, camera/video (rarely needed)")
    p.set_defaults(func=cmd_run, outputs={"output": ("-o", "any"), "jsonl": ("--jsonl", "file"),
                                          "csv": ("--csv", "file"), "plot": ("--plot", "file")})
