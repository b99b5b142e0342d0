"""The emotion-over-time plot of a video: one panel per tracked face.

:class:`TrackHistory` keeps what the plot needs with bounded memory (a 10-hour video is
decimated, not accumulated); :func:`plot_tracks` draws it with matplotlib's Agg canvas, so no
display is needed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import write_with
from .results import FrameResult


class TrackHistory:
    """Per-track probabilities over time for the plot, bounded: when a track has
    ``max_points`` samples, every second one is dropped and the sampling stride doubles."""

    def __init__(self, max_points: int = 2000, max_tracks: int = 64) -> None:
        self.max_points = max_points
        self.max_tracks = max_tracks
        self.series: dict[int, dict[str, Any]] = {}

    def add(self, result: FrameResult) -> None:
        for f in result.faces:
            if f.track_id is None:
                continue
            s = self.series.get(f.track_id)
            if s is None:
                if len(self.series) >= self.max_tracks:  # keep the longest tracks
                    shortest = min(self.series, key=lambda k: self.series[k]["count"])
                    if self.series[shortest]["count"] > 1:
                        continue
                    del self.series[shortest]
                s = self.series[f.track_id] = {"t": [], "f": [], "p": [], "stride": 1, "count": 0}
            s["count"] += 1
            if (s["count"] - 1) % s["stride"]:
                continue
            s["t"].append(result.time)
            s["f"].append(result.frame)
            s["p"].append(np.asarray(f.display_probs, np.float32))
            if len(s["t"]) >= self.max_points:
                s["t"], s["f"], s["p"], s["stride"] = s["t"][::2], s["f"][::2], s["p"][::2], s["stride"] * 2


def plot_tracks(history: TrackHistory, path: str | os.PathLike[str], class_names: list[str],
                title: str = "", max_panels: int = 8) -> Path:
    """One panel per track (longest first): each emotion's (smoothed) probability over time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .overlay import color_of

    tracks = sorted(history.series.items(), key=lambda kv: -kv[1]["count"])[:max_panels]
    n = max(1, len(tracks))
    fig = Figure(figsize=(10, 2.2 * n + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    if not tracks:
        axes[0].text(0.5, 0.5, "no faces detected", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, (tid, s) in zip(axes, tracks):
        t = np.asarray(s["t"], np.float64)
        p = np.stack(s["p"]).astype(np.float64) if s["p"] else np.zeros((0, len(class_names)))
        if len(t) > 1:  # break the lines where the face was not seen, instead of bridging
            gaps = np.flatnonzero(np.diff(s["f"]) > 2 * s["stride"]) + 1
            t = np.insert(t, gaps, np.nan)
            p = np.insert(p, gaps, np.nan, axis=0)
        for i, name in enumerate(class_names):
            b, g, r = color_of(name, i)
            ax.plot(t, p[:, i] if len(p) else [], color=(r / 255, g / 255, b / 255), lw=1.4, label=name)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {tid}\np")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    if tracks:
        axes[0].legend(ncol=len(class_names), loc="lower left", bbox_to_anchor=(0, 1.02), fontsize=8, frameon=False)
    extra = f" (longest {max_panels} of {len(history.series)} tracks)" if len(history.series) > max_panels else ""
    fig.suptitle((title or "emotion over time") + extra, fontsize=10)
    write_with(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    return Path(path)
