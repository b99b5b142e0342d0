"""What a batch has done, kept in its output folder so that a rerun picks up where it stopped.

* ``.ferlab-batch/journal.jsonl``: one JSON line appended (and flushed to disk) as each input
  finishes: the source of truth. A line is written whole or not at all (a write cut short by
  a full disk is truncated away); a line torn by a crash is dropped when the next run opens
  the journal; the latest line of an input wins.
* ``manifest.csv``: one row per input (input, status, error, frames, faces, tracks, seconds,
  outputs, settings, ..., segments: the time segments a long video was split into, see
  :mod:`.segments`), rewritten atomically from the journal every few seconds and at the end.
  Neither table is written while no input has a row (a batch that failed before starting
  leaves no header-only files).
* ``summary.csv``: per input (``track`` empty) and per track: frames, faces, first and last
  second, the mean distribution (``p_<class>``) and the dominant emotion, for inputs done;
  ``summary.parquet`` is the same table, typed, when pyarrow is installed.

An input is skipped on a rerun when its latest row is ``done`` with the same settings hash
(:func:`settings_hash`: the model file's content and every option that changes results), its
outputs are all there, and the file (when local) has the size and time it had then.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import FerlabError
from ..fileio import naming, output_error, sha256_file, write_text, write_with
from .inputs import BatchInput

STATE_DIR = ".ferlab-batch"
JOURNAL = "journal.jsonl"
MANIFEST = "manifest.csv"
SUMMARY = "summary.csv"
SUMMARY_PARQUET = "summary.parquet"  # the same table, typed, when pyarrow is installed ([cluster])
MANIFEST_COLUMNS = ["input", "status", "error", "frames", "faces", "tracks", "seconds", "kind", "outputs",
                    "settings", "finished", "worker", "node", "peak_rss_mb", "segments"]
# options that do not change a result (how fast it is computed) are left out of the hash
_NOT_SETTINGS = {"threads"}




def _last_line_start(fh: Any, size: int, block: int = 1 << 16) -> int:
    """Offset just after the last newline of a binary file of ``size`` bytes (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - block)
        fh.seek(start)
        chunk = fh.read(end - start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def _whole_row(line: bytes) -> bool:
    try:
        row = json.loads(line)
    except ValueError:  # torn mid-line (JSONDecodeError, or bytes cut inside a UTF-8 character)
        return False
    return isinstance(row, dict) and "key" in row


def model_identity(spec: str | None) -> str:
    """The content hash of the model a spec resolves to (shipped name, checkpoint, .onnx), or
    the spec itself when the driver cannot read the file (it may exist on the cluster only)."""
    if spec is not None and str(spec).lower().endswith(".onnx"):
        path = Path(spec)
        return sha256_file(path) if path.is_file() else f"spec:{spec}"
    from ..models.hub import resolve_model

    return sha256_file(resolve_model(spec))  # a model that is not there fails here, before Ray starts


def settings_hash(options: dict[str, Any], max_frames: int | None) -> str:
    """12 hex digits naming the model (by content) and every setting that changes a result."""
    opts = {k: v for k, v in options.items() if k not in _NOT_SETTINGS}
    opts["model"] = model_identity(opts.get("model"))
    if not isinstance(opts.get("detector"), str):
        opts["detector"] = repr(type(opts["detector"]))
    if opts.get("detector_model"):
        with contextlib.suppress(OSError):
            opts["detector_model"] = sha256_file(Path(opts["detector_model"]))
    blob = json.dumps({"options": opts, "max_frames": max_frames}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def file_stamp(item: BatchInput) -> list[float] | None:
    """(size, mtime) of a local input, to notice that a file changed since it was done."""
    if item.is_url:
        return None
    try:
        st = os.stat(item.source)
    except OSError:
        return None
    return [st.st_size, round(st.st_mtime, 3)]


class Journal:
    """The append-only record of finished inputs, and the latest row of each."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.dir = out / STATE_DIR
        self.path = self.dir / JOURNAL
        self.rows: dict[str, dict[str, Any]] = {}  # key -> latest row (insertion order = first seen)
        self.lines = 0
        if self.path.exists():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    self.lines += 1
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # torn by a crash
                        continue
                    if isinstance(row, dict) and "key" in row:
                        self.rows[row["key"]] = row
        self._fd: int | None = None

    def open(self) -> None:
        """Open for appending. A last line without its newline was torn by a crash or a full
        disk: it is dropped (cut off at the last newline), unless it holds a whole row, which
        only lacked the newline and then gets it, so every line in the file is a whole row."""
        with naming(self.path):
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            size = os.fstat(self._fd).st_size
            if size:
                with open(self.path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        start = _last_line_start(fh, size)
                        fh.seek(start)
                        if _whole_row(fh.read()):
                            os.write(self._fd, b"\n")
                        else:
                            os.ftruncate(self._fd, start)

    def append(self, row: dict[str, Any]) -> None:
        """One whole line, or none: a write cut short (a full disk) is truncated away before
        the error (an :class:`~ferlab.fileio.OutputError` naming the journal) goes up."""
        if self._fd is None:
            self.open()
        data = (json.dumps(row, separators=(",", ":"), default=str) + "\n").encode("utf-8")
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise output_error(exc, self.path) from None
        self.rows[row["key"]] = row
        self.lines += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.lines > 2 * len(self.rows) + 100:  # many reruns: keep the latest row of each input only
            write_text(self.path, "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n"
                                          for r in self.rows.values()))
            self.lines = len(self.rows)

    def is_done(self, item: BatchInput, settings: str, video: bool) -> bool:
        from .tasks import output_names

        row = self.rows.get(item.key)
        if not row or row.get("status") != "done" or row.get("settings") != settings:
            return False
        stamp = file_stamp(item)
        if stamp is not None and row.get("stamp") is not None and list(row["stamp"]) != stamp:
            return False
        return all((self.out / n).exists() for n in output_names(item, video))


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """One ``ferlab batch`` at a time per output folder (POSIX advisory lock)."""
    state = out / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    fh = open(state / "lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FerlabError(f"another ferlab batch is writing to {out}; wait for it or choose another "
                              "--out") from None
        yield
    finally:
        fh.close()


def clean_stale_temporaries(out: Path) -> int:
    """Temporary files a killed worker left in ``results/`` (``.NAME.XXXX.tmp[.mp4]``), or a
    killed driver beside the manifest, and segments' parts not merged (their inputs are not
    done: a rerun redoes them whole); safe to delete while the folder is locked."""
    from .tasks import PARTS, RESULTS

    shutil.rmtree(out / PARTS, ignore_errors=True)
    n = 0
    stale = list((out / RESULTS).glob(".*.tmp*")) if (out / RESULTS).is_dir() else []
    stale += [p for name in (MANIFEST, SUMMARY, SUMMARY_PARQUET) for p in out.glob(f".{name}.*.tmp")]  # a killed driver's
    for p in stale:
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


def _csv_text(header: list[str], rows: Iterable[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def manifest_row(row: dict[str, Any]) -> list[Any]:
    values = {**row, "outputs": ";".join(row.get("outputs") or [])}
    return ["" if values.get(c) is None else values.get(c, "") for c in MANIFEST_COLUMNS]


def write_manifest(out: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path = out / MANIFEST
    write_text(path, _csv_text(MANIFEST_COLUMNS, (manifest_row(r) for r in rows)))
    return path


def summary_columns(class_names: list[str]) -> list[str]:
    return ["input", "track", "frames", "faces", "start", "end", *[f"p_{c}" for c in class_names], "dominant"]


def write_summary(out: Path, rows: Iterable[dict[str, Any]], class_names: list[str]) -> Path:
    lines = []
    for row in rows:
        if row.get("status") != "done":
            continue
        for s in row.get("summary") or []:
            mean = s.get("mean") or [""] * len(class_names)
            lines.append([row["input"], s["track"], s["frames"], s["faces"], s["start"], s["end"], *mean,
                          s["dominant"]])
    path = out / SUMMARY
    write_text(path, _csv_text(summary_columns(class_names), lines))
    write_summary_parquet(out / SUMMARY_PARQUET, summary_columns(class_names), lines)
    return path


def write_summary_parquet(path: Path, columns: list[str], lines: list[list[Any]]) -> Path | None:
    """``summary.csv`` as a typed Parquet table (frames/faces int64, times and probabilities
    float64, an empty per-input track as null), written atomically; skipped without pyarrow,
    which ``pip install "ferlab[cluster]"`` brings (Ray Data reads it directly)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    ints, texts = {"frames", "faces"}, {"input", "track", "dominant"}
    arrays = []
    for i, name in enumerate(columns):
        values = [None if row[i] == "" else row[i] for row in lines]
        kind = pa.int64() if name in ints else pa.string() if name in texts else pa.float64()
        arrays.append(pa.array([None if v is None else (str(v) if name in texts else v) for v in values], type=kind))
    write_with(path, lambda tmp: pq.write_table(pa.Table.from_arrays(arrays, names=columns), str(tmp)))
    return path


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))
