"""``ferlab demo``: the first thing a new user runs, so it must work everywhere.

With a camera (and a display) it is the live window; on a headless machine with no camera
(a server, CI, a fresh laptop VM) it processes the clip bundled with ferlab instead, so a
fresh install always shows something real: an annotated video, per-frame JSONL/CSV, an
emotion-over-time plot and a one-screen summary.
"""
from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any

from ..errors import FerlabError
from .capture import gui_available, open_capture
from .options import InferenceOptions

SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "assets" / "sample_clip.mp4"
CAMERA_FRAMES = 600  # a headless camera demo records ~20 s, then stops by itself


def _camera_works(index: int) -> bool:
    try:
        cap, _ = open_capture(index)
    except FerlabError:
        return False
    ok, frame = cap.read()
    cap.release()
    return bool(ok) and frame is not None


def demo(model: str | None = None, *, camera: int | None = None, source: str | os.PathLike[str] | None = None,
         out: str | os.PathLike[str] = "ferlab-demo", window: bool = True, progress: bool = True,
         options: InferenceOptions | None = None) -> dict[str, Any]:
    """Run the pipeline on ``source``, else the camera, else the bundled clip, writing
    ``demo.mp4``, ``demo.jsonl``, ``demo.csv`` and ``emotions.png`` to ``out``. ``window``:
    show it when a display is there; ``options``: how to build the recognizer."""
    from .recognizer import Recognizer
    from .sinks import ProgressSink, WindowSink, file_sinks

    rec = Recognizer.from_pretrained(model, options=options)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if source is not None:
        src: str | int = str(source)
        what = f"video {source}"
    elif _camera_works(camera if camera is not None else 0):
        src = camera if camera is not None else 0
        what = f"camera {src}"
    else:
        if camera is not None:
            print(f"camera {camera} could not be opened; using the bundled sample clip instead")
        if not SAMPLE_CLIP.is_file():
            raise FerlabError(f"bundled sample clip missing: {SAMPLE_CLIP} (reinstall ferlab)")
        src = str(SAMPLE_CLIP)
        what = "the bundled sample clip (no camera found)"
    show = window and gui_available() and (os.name == "nt" or bool(os.environ.get("DISPLAY")))
    is_camera = isinstance(src, int)
    outputs = {"video": out_dir / "demo.mp4", "jsonl": out_dir / "demo.jsonl", "csv": out_dir / "demo.csv",
               "plot": out_dir / "emotions.png"}
    print(f"ferlab demo: model {rec.info.name or Path(rec.source or '?').stem} on {what}")
    sinks: list[Any] = file_sinks(output=outputs["video"], jsonl=outputs["jsonl"], csv_path=outputs["csv"],
                                  plot=outputs["plot"])
    sinks.append(ProgressSink(enabled=progress))
    if show:
        sinks.append(WindowSink("ferlab demo (q quits)"))
    summary = rec.stream(src, sinks=sinks, allow_empty=False,
                         max_frames=CAMERA_FRAMES if is_camera and not show else None).run()
    report = _summarise(outputs["jsonl"])
    print(f"\nprocessed {summary.frames} frames in {summary.seconds:.1f}s ({summary.fps:.1f} fps), "
          f"{summary.faces} face detections, {summary.tracks} tracked faces")
    for tid, info in sorted(report["tracks"].items(), key=lambda kv: -kv[1]["frames"])[:8]:
        mix = ", ".join(f"{k} {v:.0%}" for k, v in info["labels"].items())
        print(f"  face #{tid}: {info['frames']} frames, mostly {info['top']} ({mix})")
    if not report["tracks"]:
        print("  no face was detected")
    print("outputs:")
    for name, path in outputs.items():
        if Path(path).exists():
            print(f"  {name:<5} {Path(path).resolve()}")
    return {"frames": summary.frames, "faces": summary.faces, "tracks": report["tracks"],
            "outputs": {k: str(v) for k, v in outputs.items()}}


def _summarise(jsonl: Path) -> dict[str, Any]:
    """Per track: frame count and the share of frames per (smoothed) label."""
    counts: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    if jsonl.exists():
        with open(jsonl, encoding="utf-8") as fh:
            for line in fh:
                for face in json.loads(line)["faces"]:
                    tid = face.get("track_id")
                    counts[-1 if tid is None else int(tid)][face["label"]] += 1
    tracks = {}
    for tid, c in counts.items():
        total = sum(c.values())
        tracks[tid] = {"frames": total, "top": c.most_common(1)[0][0],
                       "labels": {k: v / total for k, v in c.most_common(3)}}
    return {"tracks": tracks}
