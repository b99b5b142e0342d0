"""What ``ferlab batch`` is given, expanded into one :class:`BatchInput` per video or photo.

An argument is a file, a folder (searched recursively for videos and photos; hidden files
and the output folder are left out), a URL (``rtsp://``, ``http://...``: a stream or video,
or a photo when the name ends in an image extension), or a list file: ``.txt`` / ``.lst``
(one path or URL a line, ``#`` comments) or ``.csv`` (the column named path, input, file,
url or source, else the first column). Relative entries of a list are relative to the list.

A path that does not exist is not an error here: it becomes an input that fails with a clear
message, so one typo in a list of a thousand files does not stop the other 999.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import FerlabError
from ..inference.preprocess import IMAGE_EXTS

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts",
              ".mts", ".m2ts", ".ogv"}
LIST_EXTS = {".txt", ".lst", ".list", ".csv"}
_CSV_COLUMNS = ("path", "input", "file", "url", "source", "video", "image")


@dataclass(frozen=True)
class BatchInput:
    """One unit of work: ``source`` is what the worker opens (an absolute path or a URL),
    ``kind`` is ``"video"`` or ``"image"``, ``key`` names its outputs (stable across runs:
    the file stem plus a hash of the source, so two ``clip.mp4`` in different folders differ)."""

    source: str
    kind: str
    key: str

    @property
    def is_url(self) -> bool:
        return "://" in self.source


def is_url(s: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s))


def _kind(name: str) -> str:
    suffix = Path(name.split("?", 1)[0]).suffix.lower()
    return "image" if suffix in IMAGE_EXTS else "video"  # unknown: let the video reader decide


def make_key(source: str) -> str:
    stem = Path(source.split("?", 1)[0].rstrip("/")).name or "input"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "input"
    return f"{stem[:60]}_{hashlib.sha1(source.encode('utf-8')).hexdigest()[:8]}"


def make_input(source: str | os.PathLike[str]) -> BatchInput:
    s = str(source)
    if not is_url(s):
        s = str(Path(s).expanduser().absolute())
    return BatchInput(s, _kind(s), make_key(s))


def _read_list(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FerlabError(f"cannot read list file {path}: {exc}") from None
    entries: list[str] = []
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if not rows:
            return []
        header = [c.strip().lower() for c in rows[0]]
        col = next((header.index(c) for c in _CSV_COLUMNS if c in header), None)
        if col is not None:
            rows = rows[1:]
        entries = [r[col or 0].strip() for r in rows if len(r) > (col or 0) and r[col or 0].strip()]
    else:
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(line)
    out = []
    for e in entries:
        if is_url(e):
            out.append(e)
        else:
            p = Path(e).expanduser()
            out.append(str(p if p.is_absolute() else path.parent / p))
    return out


def _walk(folder: Path, skip: Path | None) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        r = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (skip is None or (r / d).absolute() != skip))
        for f in sorted(files):
            if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTS | IMAGE_EXTS:
                found.append(r / f)
    return found


def expand_inputs(items: Iterable[str | os.PathLike[str]], *, out: str | os.PathLike[str] | None = None,
                  ) -> list[BatchInput]:
    """Every video and photo named by ``items`` (see the module docstring), each once, in the
    order given (folders sorted). ``out``: the output folder, never searched. An empty result
    is an error (nothing to do); a folder without videos or photos is one too, naming it."""
    skip = Path(out).expanduser().absolute() if out is not None else None
    inputs: list[BatchInput] = []
    seen: set[str] = set()

    def add(source: str | os.PathLike[str]) -> None:
        item = make_input(source)
        if item.source not in seen:
            seen.add(item.source)
            inputs.append(item)

    def expand(entry: str, from_list: bool) -> None:
        if is_url(entry):
            add(entry)
            return
        p = Path(entry).expanduser()
        if p.is_dir():
            found = _walk(p, skip)
            if not found:
                raise FerlabError(f"no videos or photos found in folder {p}")
            for f in found:
                add(f)
        elif not from_list and p.suffix.lower() in LIST_EXTS and p.is_file():
            for e in _read_list(p):
                expand(e, True)
        else:
            add(p)  # a file, or a missing path that will fail with its own message

    items = list(items)
    if not items:
        raise FerlabError("no inputs given: name video or photo files, folders, or a .txt/.csv list")
    for item in items:
        expand(str(item), False)
    if not inputs:
        raise FerlabError("the inputs name no videos or photos")
    return inputs
