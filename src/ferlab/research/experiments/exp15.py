"""Exp. 15 (thesis Table 5): how the smoothing window N trades label flips for lag, measured
on a video through the public frame engine (``Recognizer.stream``), the same loop as
``ferlab video``, rather than a capture loop of its own.

``opts`` is the suite's :class:`~ferlab.research.experiments.runner.SuiteOptions` (``exp15_model``,
``exp15_video``, ``seeds``, ``device`` are read). The default video is the clip ferlab ships
for ``ferlab demo`` (``ferlab/assets/sample_clip.mp4``, see its ATTRIBUTION.md), so the
experiment runs from an installed package as it does from a checkout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...fileio import write_json
from ...inference.demo import SAMPLE_CLIP as DEFAULT_VIDEO
from .table import EXP15_DIR, EXP15_WINDOWS, FINAL, RESULT

DEFAULT_FPS = 30.0  # only if the clip has a single frame


def _say(msg: str) -> None:
    print(msg, flush=True)


def _find_exp15_model(out: Path, opts: Any) -> str | None:
    if opts.exp15_model:
        return opts.exp15_model
    for seed in opts.seeds:
        p = out / FINAL / f"seed{seed}" / "best.safetensors"
        if p.is_file():
            return str(p)
    from ...models.hub import DEFAULT_MODEL

    return DEFAULT_MODEL


def run_onset(raw_labels: Any, c: int, since: int, t: int) -> int | None:
    """The onset of the raw run of class ``c`` that a shown switch to ``c`` at observation
    ``t`` follows: the earliest f in [since, t] where the raw label is c and c is the most
    frequent raw label over [f, t] (ties included). ``since`` is the first observation inside
    the window that decided the switch (a window of N frames cannot follow anything older).
    None when c never leads the raw labels there.

    Measuring from the latest raw switch instead under-reports lag on a flickering signal:
    a one-frame flicker to c just before the shown label finally follows c's run would count
    as lag 0, so a longer window could look faster than a shorter one.
    """
    import numpy as np

    raw = np.asarray(raw_labels)
    for f in range(max(since, 0), t + 1):
        if raw[f] != c:
            continue
        counts = np.bincount(raw[f:t + 1], minlength=int(raw.max()) + 1)
        if counts[c] == counts.max():
            return f
    return None


def smoothing_metrics(raw: list[Any], fps: float, windows: tuple[int, ...] = EXP15_WINDOWS,
                      frames: list[int] | None = None) -> list[dict[str, Any]]:
    """Flips per second and lag of the shown label for each window N, from one track's raw
    per-frame probabilities (frames where the track was seen, in order; ``frames`` their frame
    indices, so the window is over frames as Eq. 26 says, not over observations).

    Lag: for every switch of the shown label to class c at frame t, the frames since the onset
    of the raw run of c it follows (:func:`run_onset`); the median over switches. N = 1 has
    lag 0 by definition.
    """
    import numpy as np

    from ...inference.smoothing import WindowSmoother

    probs = np.asarray(raw, dtype=np.float64)
    idx = np.arange(len(probs)) if frames is None else np.asarray(frames, dtype=np.int64)
    raw_labels = probs.argmax(1)
    rows = []
    span = (int(idx[-1]) - int(idx[0]) + 1) if len(idx) else 0
    seconds = span / fps if fps > 0 else float("nan")
    for n in windows:
        sm = WindowSmoother(n)
        shown = np.array([int(np.argmax(sm.update(0, p, frame=int(f)))) for p, f in zip(probs, idx)])
        switches = np.flatnonzero(shown[1:] != shown[:-1]) + 1
        lags = []
        for t in switches:
            since = int(np.searchsorted(idx, idx[t] - n + 1))  # first observation in the window
            onset = run_onset(raw_labels, int(shown[t]), since, int(t))
            if onset is not None:
                lags.append(int(idx[t]) - int(idx[onset]))
        rows.append({"window": n, "flips": int(len(switches)), "flips_per_s": len(switches) / seconds,
                     "lag_frames": float(np.median(lags)) if lags else (0.0 if n == 1 else None),
                     "switches_matched": len(lags)})
    return rows


def run_exp15(out: Path, opts: Any) -> dict[str, Any] | None:
    """Exp. 15 on the sample video: the live pipeline (default detector, tracker, Eq. 27 crops)
    run once without smoothing; each window N is then applied to the main track's raw
    probabilities exactly as the per-track ``WindowSmoother`` of the live pipeline would."""
    from collections import defaultdict

    from ..device import resolve_device
    from ...inference import Recognizer

    model = _find_exp15_model(out, opts)
    video = Path(opts.exp15_video) if opts.exp15_video else DEFAULT_VIDEO
    if model is None or not video.is_file():
        _say(f"Exp. 15 not measured: {'no model' if model is None else f'video {video} not found'} (TODO row kept)")
        return None
    device = str(resolve_device((opts.device or "auto").split(",")[0].strip() or "auto"))
    rec = Recognizer.from_pretrained(model, backend="torch", device=device, smoothing="none")
    tracks: dict[int, list[Any]] = defaultdict(list)
    seen: dict[int, list[int]] = defaultdict(list)
    frames = with_face = 0
    first_t = last_t = 0.0
    for fr in rec.stream(str(video), smoothing="none"):
        first_t, last_t = (fr.time if frames == 0 else first_t), fr.time
        frames += 1
        with_face += bool(fr.faces)
        for f in fr.faces:
            tracks[int(f.track_id)].append(f.probs)
            seen[int(f.track_id)].append(int(fr.frame))
    # a file's frame times are index / fps, so the engine's own clock gives the rate back
    fps = round((frames - 1) / (last_t - first_t), 6) if frames > 1 and last_t > first_t else DEFAULT_FPS
    if not tracks:
        _say(f"Exp. 15 not measured: no face found in {video}")
        return None
    main_id, main = max(tracks.items(), key=lambda kv: len(kv[1]))
    res = {"video": video.name, "model": str(model), "fps": fps, "frames": frames, "frames_with_face": with_face,
           "main_track": main_id, "main_track_frames": len(main), "tracks": len(tracks),
           "detector": rec.detector.name, "lag_rule": "onset of the raw run the shown label follows",
           "windows": smoothing_metrics(main, fps, frames=seen[main_id])}
    write_json(out / EXP15_DIR / RESULT, res)
    _say("Exp. 15: " + ", ".join(f"N={w['window']}: {w['flips_per_s']:.2f} flips/s" for w in res["windows"]))
    return res
