"""Atomic writes: a crash or Ctrl-C mid-write must never leave a half-written output or
destroy the previous checkpoint, so everything is written to a temp file in the same
folder and then renamed over the target (rename is atomic on POSIX and Windows).

A write that fails (read-only folder, a file where a folder should be, a full disk) raises
:class:`OutputError`, which names the output, not the temporary file, and leaves nothing
behind; :func:`check_writable` finds the first two before a command does any work.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import FerlabError

TMP_GLOB = ".*.tmp"  # what atomic_path leaves if the process is killed between create and rename


class OutputError(FerlabError, OSError):
    """An output that could not be written. Still an ``OSError`` (code that catches those
    keeps working), and a :class:`~ferlab.errors.FerlabError`, so the CLI prints it as one
    line: ``cannot write runs/x/metrics.json: No space left on device``."""

    exit_code = 1

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def output_error(exc: OSError, target: str | os.PathLike[str]) -> OutputError:
    """``exc`` as an :class:`OutputError` naming ``target`` (itself if it already is one)."""
    if isinstance(exc, OutputError):
        return exc
    return OutputError(exc.errno or errno.EIO, exc.strerror or str(exc), os.fspath(target))


@contextlib.contextmanager
def naming(target: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into an :class:`OutputError` naming ``target``."""
    try:
        yield
    except OSError as exc:
        raise output_error(exc, target) from None


def check_writable(target: str | os.PathLike[str], kind: str = "file", what: str | None = None) -> Path:
    """Fail now, with one line, if ``target`` could not be created: its nearest existing
    ancestor is a file, is read-only or is not ours to write, or it exists as the wrong kind
    (``kind``: "file", "folder" to write into, or "any"). Creates nothing: a temporary file
    is made and removed in that ancestor to ask the file system itself (its permissions, a
    read-only mount), which ``os.access`` does not answer for root or for network mounts. A
    full disk only shows when writing; :class:`OutputError` covers that."""
    path = Path(target).expanduser()
    label = f"{what} {path}" if what else str(path)
    folder = kind == "folder"
    if path.exists():
        if folder and not path.is_dir():
            raise OutputError(errno.ENOTDIR, "it is a file, not a folder", label)
        if kind == "file" and path.is_dir():
            raise OutputError(errno.EISDIR, "it is a folder, not a file", label)
        folder = path.is_dir()
    probe_dir = path if folder else path.parent
    ancestor = probe_dir
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise OutputError(errno.ENOTDIR, f"{ancestor} is a file, not a folder", label)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ferlab-probe-", suffix=".tmp", dir=ancestor)
    except OSError as exc:
        raise OutputError(exc.errno or errno.EACCES, exc.strerror or str(exc), label) from None
    os.close(fd)
    os.unlink(tmp)
    return path


def clean_stale_temporaries(folder: str | os.PathLike[str], pattern: str = TMP_GLOB) -> list[Path]:
    """Remove the temporary files a killed process left in ``folder`` (atomic_path's
    ``.NAME.XXXX.tmp``): they are never anyone's output, only disk space. Only for folders
    one process writes at a time (a run folder, a batch folder under its lock)."""
    folder = Path(folder)
    removed = []
    for p in folder.glob(pattern) if folder.is_dir() else []:
        with contextlib.suppress(OSError):
            if p.is_file():
                p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``. An
    ``OSError`` on the way (making the folder or the temporary file, writing it, renaming
    it) becomes an :class:`OutputError` naming ``target``; the temporary file is removed."""
    target = Path(target)
    with naming(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise output_error(exc, target) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_with(target: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Atomically create ``target`` with a function that writes to a given path
    (e.g. ``safetensors.torch.save_file`` or ``matplotlib`` ``savefig``)."""
    with atomic_path(target) as tmp:
        writer(tmp)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Content hash of a file, read in 1 MiB blocks: names weights in metrics.json and
    manifests by what they are, not by a path that differs between machines."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
