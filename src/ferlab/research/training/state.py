"""What a run carries from epoch to epoch, and the one file that lets it resume exactly.

``last_state.pt`` holds weights and optimizer state of the same epoch together (never from two
files that a kill could leave one epoch apart), plus the selection bookkeeping and history.
RNG states are not needed: every epoch reseeds from (seed, epoch).

A run folder is always either resumable or restartable, wherever a kill lands
(:func:`plan_start`): it is resumable exactly when ``last_state.pt`` is there (written, like
every file of a run, to a temporary file and renamed, so it is whole or absent), and a folder
without it has not finished an epoch, so starting over loses nothing. Checkpoints written
before the state file in epoch 1 therefore no longer block a plain rerun, and ``--resume`` of
such a folder starts from epoch 1. Temporary files a kill left (``.NAME.XXXX.tmp``) are
removed when a run starts.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config_schema import Config
from ...errors import FerlabError
from ...fileio import clean_stale_temporaries, write_with
from .build import Run

STATE_FILE = "last_state.pt"
CONFIG_FILE = "config.json"
RUN_FILES = ("best.safetensors", "last.safetensors", "metrics.jsonl", CONFIG_FILE)  # signs a run started here


def plan_start(out_dir: Path, resume: bool) -> tuple[bool, str | None]:
    """(load the state?, a note for the user or None) for a run starting in ``out_dir``.

    With ``last_state.pt``: ``resume`` loads it; a plain start is refused (it would overwrite
    finished epochs). Without it but with files of an earlier start (it was stopped in its
    first epoch): either way the run starts from epoch 1. An empty or absent folder:
    ``resume`` is an error (nothing was ever started there). No side effects, so every rank
    of a distributed run decides the same."""
    has_state = (out_dir / STATE_FILE).is_file()
    started = any((out_dir / name).exists() for name in RUN_FILES)
    if has_state:
        if not resume:
            raise FerlabError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
        return True, None
    if started:
        return False, (f"{out_dir} holds a run stopped before its first epoch ended (no {STATE_FILE}): "
                       "starting it from epoch 1")
    if resume:
        raise FerlabError(f"nothing to resume in {out_dir} (no {STATE_FILE}); start the run without --resume")
    return False, None


def clean_run_folder(out_dir: Path) -> int:
    """Remove the temporary files a killed run left (only the process writing the folder)."""
    return len(clean_stale_temporaries(out_dir))


@dataclass
class TrainState:
    """The run's progress, as callbacks see it after each epoch."""

    cfg: Config
    out_dir: Path
    main: bool = True  # rank 0 (the process that writes files)
    start_epoch: int = 0  # first epoch (0-based) of this call
    epoch: int = -1  # last finished epoch (0-based)
    best: float = -math.inf  # sign * selection metric of the best epoch
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False  # early stopping (patience) ended the run
    stopped_by: str | None = None  # the callback that ended this call, if one did

    @property
    def select(self) -> str:
        return self.cfg.train.select_metric

    @property
    def sign(self) -> float:
        return -1.0 if self.select == "val_loss" else 1.0

    @property
    def epochs(self) -> int:
        return self.cfg.train.epochs

    @property
    def patience(self) -> int:
        return self.cfg.train.early_stopping or 0

    def record(self, row: dict[str, Any]) -> bool:
        """Append an epoch's row; True if it is the best so far."""
        self.history.append(row)
        self.epoch = int(row["epoch"]) - 1
        score = self.sign * row[self.select]
        if score > self.best:
            self.best, self.bad_epochs = score, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def out_of_patience(self) -> bool:
        return bool(self.patience and self.bad_epochs >= self.patience)

    @property
    def finished(self) -> bool:
        return self.epoch + 1 >= self.epochs or self.out_of_patience


def save_state(run: Run, state: TrainState) -> None:
    model = run.model
    payload = {"model": getattr(model, "_orig_mod", model).state_dict(), "optimizer": run.optimizer.state_dict(),
               "epoch": state.epoch, "best": state.best, "bad_epochs": state.bad_epochs, "finished": state.finished,
               "history": json.dumps(state.history)}
    write_with(state.out_dir / STATE_FILE, lambda p: torch.save(payload, p))


def load_state(run: Run, state: TrainState) -> None:
    """Weights, optimizer and bookkeeping of the last finished epoch into ``run``/``state``."""
    path = state.out_dir / STATE_FILE
    if not path.is_file():
        raise FerlabError(f"nothing to resume in {state.out_dir} (no {STATE_FILE})")
    try:
        saved = torch.load(path, map_location=run.device, weights_only=True)  # never unpickles code
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a damaged file
        raise FerlabError(f"cannot resume from {path}: {str(exc).strip().splitlines()[0][:200]} (delete it "
                          "and the run folder's checkpoints to start again)") from None
    if "model" in saved:
        weights = saved["model"]
    else:  # state files from before weights were stored in them
        from safetensors.torch import load_file

        weights = load_file(str(state.out_dir / "last.safetensors"), device=str(run.device))
    run.model.load_state_dict(weights)
    run.optimizer.load_state_dict(saved["optimizer"])
    state.epoch, state.best, state.bad_epochs = int(saved["epoch"]), float(saved["best"]), int(saved["bad_epochs"])
    state.start_epoch = state.epoch + 1
    state.history = json.loads(saved["history"])
    if saved.get("finished"):  # early-stopped or complete: resuming must not train more
        state.start_epoch = state.epochs
        state.stopped_early = state.out_of_patience
