"""Decoding ahead and encoding behind the frame loop, each on one background thread.

A 640x480 frame costs the loop about a millisecond to decode and several to encode, while
detection and classification leave the second core partly idle (ONNX Runtime's threads do not
busy-wait). OpenCV releases the GIL while it decodes and encodes, so overlapping those with
the next frame's detection is nearly free throughput (``ferlab video -o`` against the previous
inline loop: maintainers/benchmarks/results-cpu.md, section 3c). Both queues are short and bounded, so memory stays
flat whatever the video length, and errors raised on a thread are re-raised in the loop.

Only files are read ahead: a camera or network stream would show frames that are several
frames old, and live sources must show the newest frame instead.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_DONE = object()


class ReadAhead(Generic[T]):
    """Iterate ``source`` on a thread, ``depth`` items ahead of the consumer.

    :meth:`close` (also called when the consumer's iteration ends early) stops the thread and
    waits for it, so whatever ``source`` reads from can be released right after.
    """

    def __init__(self, source: Iterator[T], depth: int = 4) -> None:
        self._source = source
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferlab-read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(exc)

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


class BackgroundWriter(Generic[T]):
    """Hand items to ``consume`` on a thread, at most ``depth`` waiting.

    :meth:`put` re-raises the first error the thread met (so a full disk stops the run at the
    next frame, not at the end); :meth:`close` writes what is queued and waits;
    :meth:`abort` drops what is queued.
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 4) -> None:
        self._consume = consume
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name="ferlab-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is not None or self._dropping:
                continue
            try:
                self._consume(item)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the loop by put/close
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._dropping = True
            raise error

    def put(self, item: T) -> None:
        self._raise()
        self._queue.put(item)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        self._dropping = True
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._error = None
