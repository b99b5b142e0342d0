"""Hooks into the training loop (as Keras/Lightning callbacks, kept to what ferlab needs).

A callback sees the run at fixed points. ``on_epoch_end`` is called after all of the epoch's
files (best/last checkpoints, ``last_state.pt``, metrics logs) are written, the one point at
which they agree, so a run stopped there resumes exactly; returning True ends the run there.
Under DDP every rank calls the hooks and the run stops if any rank asks, so ranks never
disagree about the number of epochs. ``on_checkpoint`` runs only on the rank that writes.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .state import TrainState


class Callback:
    """Base class: override the hooks you need; all default to doing nothing."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first epoch of this call (after a resume, ``state`` holds the loaded run)."""

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> bool | None:
        """After epoch ``row['epoch']`` and its files; return True to stop the run here."""
        return None

    def on_checkpoint(self, state: TrainState, path: Path, kind: str) -> None:
        """A checkpoint was written: ``kind`` is ``best`` or ``last``."""

    def on_train_end(self, state: TrainState, summary: dict[str, Any]) -> None:
        """After the last epoch of this call, with what ``train`` returns."""


class CallbackList(Callback):
    """Several callbacks as one; stops if any of them asks to, and records which did."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, state: TrainState) -> None:
        for cb in self.callbacks:
            cb.on_train_start(state)

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> bool | None:
        stop = False
        for cb in self.callbacks:
            if cb.on_epoch_end(state, row):
                stop = True
                state.stopped_by = state.stopped_by or getattr(cb, "reason", type(cb).__name__)
        return stop

    def on_checkpoint(self, state: TrainState, path: Path, kind: str) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(state, path, kind)

    def on_train_end(self, state: TrainState, summary: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(state, summary)


class StopAfter(Callback):
    """End this call after ``epochs`` epochs of it, as if the process were killed there."""

    reason = "stop_after"

    def __init__(self, epochs: int) -> None:
        self.epochs = int(epochs)
        self.done = 0

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> bool:
        self.done += 1
        return self.done >= self.epochs


class StopAtDeadline(Callback):
    """Stop between epochs once the next one (as long as the last) would end after ``deadline``
    (a ``time.time()`` value); ``reached`` tells the caller that it did."""

    reason = "time limit"

    def __init__(self, deadline: float) -> None:
        self.deadline = float(deadline)
        self.reached = False

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> bool:
        self.reached = time.time() + float(row.get("seconds", 0.0)) > self.deadline
        return self.reached
