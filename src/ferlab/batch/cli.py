"""``ferlab batch INPUTS... --out DIR``: a whole archive of videos and photos, on Ray.

The inference flags are generated from :class:`~ferlab.inference.options.InferenceOptions`,
as for ``ferlab video``; ``--threads`` here is per worker (default 1). Ray is imported only
when the command runs: without the ``cluster`` extra it says so in one line.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..inference import options as inference_options

MAX_TABLE_ROWS = 25


def _short(path: str) -> str:
    if "://" in path:
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path


def format_table(result: Any) -> str:
    """The final table: failed inputs first, then those done (at most 25 rows), then totals."""
    rows = sorted(result.rows, key=lambda r: r["status"] == "done")
    shown = rows[:MAX_TABLE_ROWS]
    head = ["status", "frames", "faces", "tracks", "seconds", "input"]
    lines = [head]
    for r in shown:
        status = "skipped" if r.get("skipped") else r["status"]
        text = _short(r["input"]) + (f"  ({r['error']})" if r.get("error") else "")
        lines.append([status, str(r.get("frames", 0)), str(r.get("faces", 0)), str(r.get("tracks", 0)),
                      f"{float(r.get('seconds') or 0):.1f}", text])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    out = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))) + "  " + line[-1]
           for line in lines]
    if len(rows) > len(shown):
        out.append(f"... {len(rows) - len(shown)} more in {result.manifest}")
    fps = result.frames / result.seconds if result.seconds > 0 else 0.0
    out.append(f"{len(result.done)} done, {len(result.skipped)} skipped (done before), {len(result.failed)} failed"
               + (f", {result.pending} not finished" if result.pending else "")
               + f" | {result.frames} frames in {result.seconds:.1f} s ({fps:.1f} frames/s)"
               + (f" on {result.workers} worker(s)" if result.workers else "")
               + (f" at {result.address}" if result.address else ""))
    if result.manifest is not None:
        out.append(f"manifest: {result.manifest} | summary: {result.summary}")
    return "\n".join(out)


def cmd_batch(args: argparse.Namespace) -> int:
    from .runner import run_batch

    opts = inference_options.from_args(args)  # bad option values fail before Ray starts
    result = run_batch(args.inputs, args.out, workers=args.workers, address=args.address, video=args.video,
                       max_frames=args.max_frames, force=args.force, progress=not args.quiet,
                       gpus_per_worker=args.gpus_per_worker, segment_seconds=args.segment_seconds,
                       batch_frames=args.batch_frames, options=opts)
    print(format_table(result))
    if result.interrupted:
        print(f"ferlab batch: interrupted: {len(result.rows)} input(s) recorded, {result.pending} left; "
              "run the same command again to continue", file=sys.stderr)
        return 130
    if result.failed or result.pending:
        print(f"ferlab batch: {len(result.failed)} of {len(result.rows) + result.pending} input(s) failed "
              f"(see {Path(result.manifest or args.out)}); a rerun retries them", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "batch", help="emotions for many videos and photos, on local cores or a Ray cluster",
        description="Process every video and photo named by INPUTS (files, folders searched recursively, "
                    ".txt/.csv lists of paths or URLs) with Ray: locally with one worker per core, or on a cluster "
                    "(--address or RAY_ADDRESS). Per input, results/<name>.jsonl and .csv (and an annotated "
                    ".mp4 with --video) under --out, plus manifest.csv and summary.csv (+ summary.parquet). A rerun skips inputs "
                    "done with the same model and settings and retries failed ones. Needs the cluster extra: "
                    'pip install "ferlab[cluster]".')
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video, photo, folder, .txt/.csv list, or URL")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (created; reruns resume in it)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="Ray workers, each with its own model (default: one per core, or what the cluster has)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="run on this Ray cluster (default: $RAY_ADDRESS, else a local Ray started for this run)")
    p.add_argument("--video", action="store_true", help="also write annotated videos (and photo copies)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="only the first N frames of each video")
    p.add_argument("--force", action="store_true", help="redo inputs already done with the same settings")
    p.add_argument("--segment-seconds", type=float, default=None, metavar="S",
                   help="split long videos into segments of at most S seconds, one task each, track ids "
                        "restarted at every border (default: automatic, only when that balances the load: "
                        "segments of at least 60 s, about two tasks per worker; 0 = never; never with --video)")
    p.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                   help="GPUs each worker reserves (default 1 with --device cuda, else 0)")
    p.add_argument("--batch-frames", type=int, default=None, metavar="N",
                   help="classify the faces of N consecutive frames in one network call (same results; "
                        "default 16 with --device cuda, else 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    group = inference_options.add_arguments(p, inference_options.SCOPES)
    for action in group._group_actions:
        if action.dest == "threads":
            action.default = 1
            action.help = "ONNX Runtime (and OpenCV) threads per worker, and the CPUs each worker reserves (default 1)"
    p.set_defaults(func=cmd_batch, outputs={"out": ("-o", "folder")})
