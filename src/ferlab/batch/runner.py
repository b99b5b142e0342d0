"""Run a batch on Ray: an embedded local Ray by default, or an existing cluster.

:func:`run_batch` expands the inputs, skips those done before with the same settings, starts
``workers`` Ray actors (:class:`~ferlab.batch.tasks.Worker`, one model each, ``threads``
CPUs each), hands every worker one task at a time (an input, or a time segment of a long
video: :mod:`~ferlab.batch.segments`; photos one queued behind, so it never waits for the
driver) and records each input's row in the journal the moment it (all its segments) is
done. A worker that dies
(killed, out of memory) fails the input it was on; a fresh worker takes its place. Ctrl-C
stops at once: everything finished is on disk, the inputs in flight are redone by a rerun.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FerlabError, missing_extra
from .inputs import BatchInput, expand_inputs
from ..fileio import naming
from .manifest import (JOURNAL, STATE_DIR, Journal, clean_stale_temporaries, file_stamp, locked, settings_hash,
                       write_manifest, write_summary)
from .segments import Segment, plan_segments

Task = tuple[BatchInput, Segment | None]  # an input, or one segment of it

IN_FLIGHT = 2  # calls per worker when photos are next: the next one is there when one ends
MANIFEST_EVERY_S = 5.0
READY_TIMEOUT_S = float(os.environ.get("FERLAB_BATCH_READY_TIMEOUT", 300))
GPU_BATCH_FRAMES = 16  # frames whose faces a --device cuda worker classifies in one call


@dataclass
class BatchResult:
    """What :func:`run_batch` did. ``rows``: one per input of this run, in input order, as in
    the manifest (``skipped`` True for those done by an earlier run); inputs not finished
    because of Ctrl-C are absent (``pending`` counts them)."""

    out: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    manifest: Path | None = None
    summary: Path | None = None
    workers: int = 0
    address: str | None = None  # the cluster's, or None for an embedded Ray (or none needed)
    interrupted: bool = False
    pending: int = 0
    seconds: float = 0.0
    settings: str = ""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "done" and not r.get("skipped")]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("skipped")]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "done"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and not self.pending

    @property
    def frames(self) -> int:
        return sum(int(r.get("frames") or 0) for r in self.done)


class Progress:
    """Frame counts the workers report (a Ray actor; the driver polls it)."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0

    def start(self, expected: int) -> None:
        self.total += expected

    def add(self, n: int) -> None:
        self.done += n

    def finish(self, expected: int, frames: int) -> None:
        self.total += frames - expected  # the real count replaces the header's promise

    def get(self) -> tuple[int, int]:
        return self.done, self.total


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as exc:
        err = missing_extra(exc, "batch processing")
        raise (err or exc) from None
    if ray is None:  # sys.modules["ray"] = None
        raise missing_extra(ModuleNotFoundError(name="ray"), "batch processing")  # type: ignore[misc]
    return ray


def local_cores() -> int:
    """The cores this process may use (a container's or taskset's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def _check_reachable(address: str) -> None:
    """A HOST:PORT (or ray://HOST:PORT) nobody listens on fails in seconds, with a hint,
    instead of Ray's minutes of reconnect attempts."""
    import re
    import socket

    m = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address.strip())
    if m is None:
        return  # "auto", or a form Ray knows and we do not
    try:
        with socket.create_connection((m.group(1), int(m.group(2))), timeout=5):
            pass
    except OSError as exc:
        raise FerlabError(f"no Ray cluster answers at {address} ({exc.strerror or exc}): is its head running? "
                          "`ray start --head` prints the address to use") from None


def _start_ray(ray: Any, address: str | None, workers: int | None, threads: int) -> tuple[bool, str | None]:
    """(whether this call started Ray, the cluster address or None for a local one)."""
    if ray.is_initialized():
        return False, None
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False,
             "configure_logging": True}
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            n = workers or max(1, local_cores() // threads)
            ray.init(address="local", num_cpus=n * threads, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"connect to the Ray cluster at {address}" if address else "start a local Ray"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cause = exc.__cause__
        if cause is not None and "auth" in type(cause).__name__.lower() + str(cause).lower():
            msg += (" (the cluster wants its authentication token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN, "
                    "or copy the head's ~/.ray/auth_token here)")
        elif cause is not None and str(cause).strip():
            msg += f" ({str(cause).strip().splitlines()[0][:200]})"
        raise FerlabError(f"could not {where}: {msg}") from None
    return True, address


def _row_failed(item: BatchInput, error: str) -> dict[str, Any]:
    return {"key": item.key, "input": item.source, "kind": item.kind, "status": "failed", "error": error,
            "frames": 0, "faces": 0, "tracks": 0, "seconds": 0.0, "outputs": [], "summary": []}


def _bar(enabled: bool, n_inputs: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=n_inputs, unit="input", desc="batch", disable=not enabled, dynamic_ncols=True,
                file=sys.stderr, smoothing=0.1)


def run_batch(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], out: str | os.PathLike[str], *,
              workers: int | None = None, address: str | None = None, video: bool = False,
              max_frames: int | None = None, force: bool = False, progress: bool = False,
              gpus_per_worker: float | None = None, segment_seconds: float | None = None,
              batch_frames: int | None = None, options: Any = None, **option_kwargs: Any) -> BatchResult:
    """Emotions for every video and photo of ``inputs`` (files, folders, .txt/.csv lists,
    URLs), written under ``out``: ``results/<key>.jsonl|.csv`` per input (``.mp4`` or an
    annotated image too with ``video``), ``manifest.csv`` and ``summary.csv`` (and ``summary.parquet`` with pyarrow).

    ``workers``: Ray actors (default: one per core of a local Ray, or as many as the
    cluster's CPUs allow); ``address`` (or ``RAY_ADDRESS``): a Ray cluster to run on (``out``
    and the inputs must then be paths every node sees, or URLs). ``options`` / keyword
    arguments: :class:`~ferlab.inference.InferenceOptions` (``model``, ``detector``, ...);
    ``threads`` (default 1) is the ONNX Runtime threads and CPUs of each worker. Inputs done by
    an earlier run with the same model and settings are skipped unless ``force``. If Ray is
    already initialised in this process it is used as it is.

    ``segment_seconds``: long videos are split into time segments, one task each, with track
    ids restarted at every border (:mod:`ferlab.batch.segments`): None = when that balances
    the load, S > 0 = segments of at most S seconds, 0 = never. How a video was split is not a
    setting: a rerun with another value skips what is done.

    ``batch_frames``: each worker classifies the faces of that many consecutive frames in one
    network call (:meth:`ferlab.inference.Session.process_many`: the same results as frame by
    frame); default 16 with ``device`` cuda, where one call per frame leaves the GPU idle, else 1.
    """
    ray = import_ray()
    from ..inference.options import InferenceOptions
    from ..inference.preprocess import max_image_pixels

    opts = options or InferenceOptions()
    if option_kwargs:
        opts = opts.replace(**option_kwargs)
    threads = int(opts.threads or 1)
    opts = opts.replace(threads=threads)
    if workers is not None and workers < 1:
        raise FerlabError(f"--workers must be >= 1, got {workers}")
    if max_frames is not None and max_frames < 1:
        raise FerlabError(f"--max-frames must be >= 1, got {max_frames}")
    if batch_frames is not None and batch_frames < 1:
        raise FerlabError(f"--batch-frames must be >= 1, got {batch_frames}")
    if segment_seconds is not None and not segment_seconds >= 0:
        raise FerlabError(f"--segment-seconds must be >= 0 (0 = never split), got {segment_seconds}")
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise FerlabError(f"--out {out} is a file, not a folder")
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    batch = expand_inputs(items, out=out)
    settings = settings_hash(opts.to_dict(), max_frames)
    cuda = str(opts.device).startswith("cuda")
    gpus = gpus_per_worker if gpus_per_worker is not None else (1.0 if cuda else 0.0)
    if batch_frames is None:  # a GPU wants big batches; on a CPU one frame's faces already keep it busy
        batch_frames = GPU_BATCH_FRAMES if cuda else 1
    t0 = time.perf_counter()
    result = BatchResult(out, settings=settings)
    max_pixels = max_image_pixels()  # the driver's limit, handed to every worker (remote ones too)
    created = not out.exists()
    with naming(out):
        out.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out):
            journal = Journal(out)
            clean_stale_temporaries(out)
            todo = [i for i in batch if force or not journal.is_done(i, settings, video)]
            skipped = {i.key for i in batch} - {i.key for i in todo}
            try:
                if todo:
                    owns, result.address = _start_ray(ray, address, workers, threads)
                    try:
                        run = RunSettings(out, opts, threads, gpus, workers, video, max_frames, settings, progress,
                                          segment_seconds, batch_frames, max_pixels)
                        _run(ray, run, todo, journal, result, batch)
                    finally:
                        if owns:
                            ray.shutdown()
            finally:
                journal.close()
                clean_stale_temporaries(out)  # what workers stopped mid-input left
                result.manifest, result.summary = _write_tables(out, journal, batch)
                result.rows = []
                for i in batch:
                    row = journal.rows.get(i.key)
                    if row is None:
                        continue
                    if i.key in skipped:
                        row = {**row, "skipped": True}
                    elif row.get("run") != result.run_id:
                        continue  # not finished in this run (Ctrl-C): its old row is not this run's
                    result.rows.append(row)
                result.pending = len(batch) - len(result.rows)
                result.seconds = time.perf_counter() - t0
    finally:
        if created and result.manifest is None:
            _remove_if_empty(out)  # nothing ran: no output folder holding only ferlab's bookkeeping
    return result


def _remove_if_empty(out: Path) -> None:
    """Remove ``out`` when it holds nothing but an empty journal folder (its lock file)."""
    state = out / STATE_DIR
    if (state / JOURNAL).exists() and (state / JOURNAL).stat().st_size:
        return
    shutil.rmtree(state, ignore_errors=True)
    with contextlib.suppress(OSError):
        out.rmdir()  # only if empty


def _write_tables(out: Path, journal: Journal, batch: list[BatchInput]) -> tuple[Path | None, Path | None]:
    """manifest.csv and summary.csv of this run's inputs, or (None, None) while none has a
    row: a batch that failed before any input finished leaves no header-only tables."""
    from ..constants import CLASS_NAMES

    # this run's inputs only: rows of inputs no longer given stay in the journal (skipped if they return)
    keys = [i.key for i in batch if i.key in journal.rows]
    rows = [journal.rows[k] for k in keys]
    if not rows:
        return None, None
    classes = next((r["classes"] for r in rows if r.get("status") == "done" and r.get("classes")), list(CLASS_NAMES))
    return write_manifest(out, rows), write_summary(out, rows, classes)


@dataclass(frozen=True)
class RunSettings:
    """How one batch run processes its inputs, fixed before the first worker starts."""

    out: Path
    options: Any  # InferenceOptions, threads included
    threads: int  # ONNX Runtime threads and Ray CPUs of each worker
    gpus: float  # Ray GPUs of each worker
    workers: int | None  # None = as many as the cluster's CPUs allow
    video: bool  # write the annotated video / image too
    max_frames: int | None
    settings: str  # the settings hash every journal row carries
    progress: bool  # show the progress bar
    segment_seconds: float | None
    batch_frames: int
    max_pixels: int | None  # the driver's image size limit, handed to every worker


def _run(ray: Any, run: RunSettings, todo: list[BatchInput], journal: Journal, result: BatchResult,
         batch: list[BatchInput]) -> None:
    """Process ``todo`` on Ray workers, recording each input in ``journal`` as it is done."""
    tasks, workers = _plan_tasks(ray, run, todo)
    result.workers = workers
    pool = _WorkerPool(ray, run)
    try:
        result.workers = pool.start(workers)
        _Dispatcher(ray, run, pool, tasks, journal, result, batch, len(todo)).run()
    finally:
        pool.kill_all()


def _plan_tasks(ray: Any, run: RunSettings, todo: list[BatchInput]) -> tuple[list[Task], int]:
    """Every task (an input, or a segment of a long video) and how many workers they need."""
    workers = run.workers
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1) // run.threads))
    plan = {} if run.video else plan_segments(todo, workers, run.segment_seconds, max_frames=run.max_frames,
                                              options=run.options)
    tasks: list[Task] = [(i, s) for i in todo for s in plan.get(i.key, [None])]
    return tasks, min(workers, len(tasks))


class _WorkerPool:
    """The run's Ray actors: the workers (one model each) and the progress counter; every
    actor made is killed at the end."""

    def __init__(self, ray: Any, run: RunSettings) -> None:
        from .tasks import Worker

        self.ray = ray
        self.run = run
        self.progress = ray.remote(num_cpus=0)(Progress).remote()
        self.created: list[Any] = [self.progress]
        self._actor_cls = ray.remote(Worker).options(num_cpus=run.threads, num_gpus=run.gpus or None,
                                                     max_restarts=0, scheduling_strategy="SPREAD")
        self._options = run.options.to_dict()
        self.actors: list[Any] = []

    def new_worker(self) -> Any:
        run = self.run
        self.created.append(self._actor_cls.remote(self._options, run.threads, self.progress, run.batch_frames,
                                                   run.max_pixels))
        return self.created[-1]

    def start(self, n: int) -> int:
        """Start ``n`` workers and keep those that loaded the model within the timeout; how
        many that is (a refusal if none)."""
        ray, run = self.ray, self.run
        ready_refs = {a.ready.remote(): a for a in (self.new_worker() for _ in range(n))}
        done_refs, not_ready = ray.wait(list(ready_refs), num_returns=len(ready_refs), timeout=READY_TIMEOUT_S)
        if not done_refs:
            raise FerlabError(f"no batch worker started within {READY_TIMEOUT_S:.0f} s: does the Ray cluster have "
                              f"{run.threads} free CPU(s){' and a GPU' if run.gpus else ''} per worker?")
        for ref in done_refs:
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise FerlabError(f"a batch worker could not start: {str(exc).strip().splitlines()[-1]}") from None
            if info["error"]:
                raise FerlabError(f"the model could not be loaded on a worker: {info['error']}")
        for ref in not_ready:
            ray.kill(ready_refs[ref])
        self.actors = [ready_refs[r] for r in done_refs]
        return len(self.actors)

    def replace(self, slot: int) -> None:
        """A fresh worker in place of one that died."""
        self.ray.kill(self.actors[slot])
        self.actors[slot] = self.new_worker()

    def kill_all(self) -> None:
        for a in self.created:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass


class _Dispatcher:
    """Hands the tasks to the workers, one lane of calls per worker, and records what comes
    back: an input's row once it (all its segments) is done."""

    def __init__(self, ray: Any, run: RunSettings, pool: _WorkerPool, tasks: list[Task], journal: Journal,
                 result: BatchResult, batch: list[BatchInput], n_inputs: int) -> None:
        self.ray = ray
        self.run_settings = run
        self.pool = pool
        self.journal = journal
        self.result = result
        self.batch = batch
        self.queue: collections.deque[Task] = collections.deque(tasks)
        self.inflight: dict[int, collections.deque[tuple[Any, Task]]] = {
            i: collections.deque() for i in range(len(pool.actors))}
        self.owner: dict[Any, int] = {}
        self.parts: dict[str, list[dict[str, Any]]] = {}  # key -> rows of its segments done so far
        self.failed_split: set[str] = set()  # split inputs already recorded as failed
        self.bar = _bar(run.progress, n_inputs)

    def run(self) -> None:
        """Until every task is back, or Ctrl-C (``result.interrupted``)."""
        show = self.run_settings.progress
        t_start = time.monotonic()
        last_manifest = last_poll = time.monotonic()
        try:
            for slot in range(len(self.pool.actors)):  # one each first, so every worker gets work
                if self.queue:
                    self.send(slot)
            for slot in range(len(self.pool.actors)):
                self.submit(slot)
            while self.owner:
                ready, _ = self.ray.wait(list(self.owner), num_returns=1, timeout=0.5)
                for ref in ready:
                    self.collect(ref)
                now = time.monotonic()
                if show and now - last_poll >= 0.5:
                    last_poll = now
                    self.show_frames(now - t_start)
                if now - last_manifest >= MANIFEST_EVERY_S:
                    last_manifest = now
                    _write_tables(self.run_settings.out, self.journal, self.batch)
        except KeyboardInterrupt:
            self.result.interrupted = True
        finally:
            self.bar.close()

    def send(self, slot: int) -> None:
        run = self.run_settings
        item, segment = task = self.queue.popleft()
        ref = self.pool.actors[slot].process.remote(item, str(run.out), run.video, run.max_frames, segment)
        self.inflight[slot].append((ref, task))
        self.owner[ref] = slot

    def submit(self, slot: int) -> None:
        # a photo may wait behind the current input (a few ms of work: the worker never idles
        # between photos); a video never does, so no worker idles while another has a queue
        lane, queue = self.inflight[slot], self.queue
        while queue and (not lane or (len(lane) < IN_FLIGHT and queue[0][0].kind == "image")):
            self.send(slot)

    def collect(self, ref: Any) -> None:
        """One call is back: its row, or the failure of the worker it ran on."""
        ray = self.ray
        slot = self.owner.pop(ref)
        lane = self.inflight[slot]
        idx = next(k for k, (r, _) in enumerate(lane) if r == ref)
        _, task = lane[idx]
        item = task[0]
        del lane[idx]
        try:
            row = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if idx != 0:  # queued behind the input that killed the worker: try again
                self.queue.appendleft(task)
                return
            row = self.worker_died(slot, item, exc)
        except ray.exceptions.RayError as exc:
            row = _row_failed(item, f"internal error: {str(exc).strip().splitlines()[-1]}")
        self.finish(task, row)
        self.submit(slot)

    def worker_died(self, slot: int, item: BatchInput, exc: Exception) -> dict[str, Any]:
        """The failed row of the input a worker died on; the calls queued behind it go back
        to the queue and a fresh worker takes the slot."""
        oom = isinstance(exc, getattr(self.ray.exceptions, "OutOfMemoryError", ())) or \
            "out of memory" in str(exc).lower()
        reason = "out of memory" if oom else "killed, or out of memory?"
        lane = self.inflight[slot]
        for r, queued in list(lane):  # the calls queued behind it die with it
            self.owner.pop(r, None)
            self.queue.appendleft(queued)
        lane.clear()
        self.pool.replace(slot)
        return _row_failed(item, f"the worker died while processing it ({reason}); rerun to retry")

    def finish(self, task: Task, row: dict[str, Any]) -> None:
        """Record an input, or keep a segment's row until its input's last one is back."""
        from .tasks import merge_segments

        item, segment = task
        if segment is None:
            self.record(item, row)
        elif item.key not in self.failed_split and row["status"] != "done":
            self.failed_split.add(item.key)  # its other segments are not worth doing
            rest = [t for t in self.queue if t[0].key != item.key]
            self.queue.clear()
            self.queue.extend(rest)
            row = {k: v for k, v in row.items() if k not in ("segment", "partial")}
            self.record(item, {**row, "error": f"{segment.describe()}: {row['error']}", "segments": segment.count})
        elif item.key not in self.failed_split:
            done = self.parts.setdefault(item.key, [])
            done.append(row)
            if len(done) == segment.count:
                try:
                    row = merge_segments(self.run_settings.out, item, self.parts.pop(item.key))
                except OSError as exc:
                    row = _row_failed(item, f"its {segment.count} segments could not be merged: {exc}")
                self.record(item, row)

    def record(self, item: BatchInput, row: dict[str, Any]) -> None:
        row["settings"] = self.run_settings.settings
        row["stamp"] = file_stamp(item)
        row["run"] = self.result.run_id
        self.journal.append(row)
        self.bar.update(1)
        if row["status"] != "done":
            self.bar.write(f"failed: {item.source}: {row['error']}", file=sys.stderr)

    def show_frames(self, elapsed: float) -> None:
        """Frames done so far and the rate, from the workers' progress counter, on the bar."""
        try:
            done, total = self.ray.get(self.pool.progress.get.remote(), timeout=5)
        except self.ray.exceptions.RayError:
            return
        rate = done / max(elapsed, 1e-9)
        self.bar.set_postfix_str(f"frames {done}/{max(total, done)}, {rate:.1f} frames/s", refresh=True)
