"""Earlier home of video processing, kept so code written against it keeps working.

The pieces now live in modules named after what they do: :mod:`.capture` (opening and
reading sources), :mod:`.stream` (the one frame loop, :class:`RunSummary`),
:mod:`.sinks` (annotated video, JSONL, CSV, plot, window) and :mod:`.plot`.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, TextIO

from .capture import DEFAULT_FPS, SourceInfo, gui_available, iter_frames, open_capture, parse_source
from .plot import TrackHistory, plot_tracks
from .sinks import ProgressSink, WindowSink, csv_header, csv_rows, file_sinks
from .stream import RunSummary, StopFlag

__all__ = ["DEFAULT_FPS", "RunSummary", "SourceInfo", "TrackHistory", "csv_header", "csv_rows", "gui_available",
           "iter_frames", "open_capture", "parse_source", "plot_tracks", "run_stream"]

_StopFlag = StopFlag


def run_stream(recognizer: Any, source: str | int | os.PathLike[str], *, output: str | os.PathLike[str] | None = None,
               jsonl: str | os.PathLike[str] | TextIO | None = None, csv_path: str | os.PathLike[str] | None = None,
               plot: str | os.PathLike[str] | None = None, show: bool = False, progress: bool = True,
               max_frames: int | None = None, window_title: str = "ferlab", **session_options: Any) -> RunSummary:
    """Deprecated: ``recognizer.stream(source, sinks=[...]).run()`` with the sinks of
    :mod:`ferlab.inference.sinks` does the same and takes any other sink too."""
    warnings.warn("ferlab.inference.video.run_stream is deprecated: use Recognizer.stream(source, "
                  "sinks=[...]).run() with ferlab.inference.sinks", DeprecationWarning, stacklevel=2)
    sinks: list[Any] = file_sinks(output=output, jsonl=jsonl, csv_path=csv_path, plot=plot)
    sinks.append(ProgressSink(enabled=progress))
    if show:
        sinks.append(WindowSink(window_title))
    return recognizer.stream(source, sinks=sinks, max_frames=max_frames, allow_empty=False, **session_options).run()
