"""One training loop for every model and experiment (thesis section 4 and Table 6).

``train`` only orchestrates; the parts are: the build step (:mod:`.build`, with the loss,
optimizer and schedule factories of :mod:`.factory`), :func:`.engine.train_one_epoch`,
:func:`.engine.evaluate` (the same prediction function as ``ferlab evaluate``), the resume
state (:mod:`.state`), the logs (:mod:`.logs`) and callbacks (:mod:`.callbacks`).

Design choices that matter for results:
- checkpoints are selected on PublicTest ("val") only; the test splits are never looked at
  here (the thesis early-stopped on its test set; we do not, see docs);
- every epoch is a pure function of (seed, epoch, weights, optimizer state), so ``--resume``
  reproduces an uninterrupted run exactly;
- each epoch's files are written atomically in a fixed order (best, last, state, logs), and
  callbacks run only after all of them.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import settings_difference, validate_config
from ..config_schema import Config
from ...constants import CLASS_NAMES
from ..data import FerData
from ..device import resolve_device
from ...errors import FerlabError
from ...fileio import write_json
from ..nets.checkpoint import save_checkpoint
from .build import Run, build_run
from .callbacks import Callback, CallbackList
from .distributed import Dist
from .engine import evaluate, train_one_epoch
from .logs import checkpoint_meta, plot_curves, summarise, write_logs
from .state import TrainState, clean_run_folder, load_state, plan_start, save_state


def _epoch(run: Run, epoch: int, progress: bool) -> dict[str, Any]:
    """Train one epoch, evaluate on val; the row that metrics.jsonl gets."""
    t0 = time.perf_counter()
    tr = train_one_epoch(run, epoch, progress=progress)
    val = evaluate(run.eval_model(), run.x_val, run.y_val, run.mean, run.std, loss_targets=run.val_loss_targets,
                   batch_size=run.cfg.train.eval_batch_size, ferplus_labels=run.y_val_ferplus)
    row = {"epoch": epoch + 1, "lr": run.schedule.epoch_lr(epoch), "frozen": tr["frozen"],
           "train_loss": tr["train_loss"], "train_acc": tr["train_acc"],
           "val_loss": val["loss"], "val_acc": val["acc"], "val_balanced_acc": val["balanced_acc"]}
    if "ferplus_acc" in val:  # only when FER+ votes were loaded: default runs log what they always did
        row["val_ferplus_acc"] = val["ferplus_acc"]
    return row | {"seconds": round(time.perf_counter() - t0, 2),
                  "train_images_per_s": round(tr["seen"] * run.dist.world / tr["seconds"], 1)}


def _save_epoch(run: Run, state: TrainState, row: dict[str, Any], improved: bool, cbs: CallbackList) -> None:
    """best (if improved), last, resume state, logs: in this order, each written atomically."""
    meta = checkpoint_meta(run.cfg, row, run.train_split, run.val_split, run.y_val_ferplus)
    for kind in (["best"] if improved else []) + ["last"]:
        path = state.out_dir / f"{kind}.safetensors"
        save_checkpoint(path, run.model, meta)
        cbs.on_checkpoint(state, path, kind)
    save_state(run, state)
    write_logs(state.out_dir, state.history)


def _say_start(run: Run) -> None:
    cfg = run.cfg
    freeze = cfg.train.freeze_epochs
    if freeze > 0 and cfg.pretrained == "none":
        print(f"warning: freezing a randomly initialised backbone for {freeze} epoch(s) only trains the "
              "head on random features; pass freeze_epochs=0 when training from scratch")
    t = run.targets
    if t.kind != "fer2013":
        print(f"targets {t.kind}: {int(t.keep.sum()):,} training faces" + (
            f", {t.dropped:,} dropped (no 7-class FER+ {'majority' if t.kind == 'ferplus-majority' else 'votes'})"
            if t.dropped else ""))
    weights = run.class_weights
    if weights is not None:
        print("class weights (Eq. 1): " + ", ".join(f"{c}={float(w):.2f}" for c, w in zip(CLASS_NAMES, weights)))


def train(cfg: Config | Mapping[str, Any], *, out: str | Path | None = None, device: str | None = None,
          resume: bool = False, progress: bool = True, data: FerData | None = None,
          callbacks: Iterable[Callback] = ()) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the summary (also written to ``OUT/summary.json``).

    ``cfg``: a :class:`~ferlab.research.config_schema.Config` (:func:`ferlab.research.config.make_config`) or a
    mapping such as a run's ``config.json``; either is checked against the schema first and
    copied, so changing it afterwards does not reach the run. ``data``: an already loaded
    FER2013 (default: ``cfg.data.root``, else ``$FERLAB_DATA``). ``callbacks`` see every epoch
    and may stop the run (:mod:`.callbacks`).
    """
    from tqdm.auto import tqdm

    cfg = validate_config(cfg)
    cbs = CallbackList(callbacks)
    dist = Dist(resolve_device(device))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    out_dir = Path(out or Path("runs") / cfg.name)
    load, note = plan_start(out_dir, resume)  # resumable or restartable, wherever a kill landed
    if resume and (out_dir / "config.json").is_file():
        # resuming with other settings would mix two recipes in one checkpoint, silently
        diff = settings_difference(json.loads((out_dir / "config.json").read_text()), cfg)
        if diff:
            raise FerlabError(f"{out_dir} holds a run with other settings ({diff}); resume it with the "
                              f"settings it was started with, or choose another --out")
    run = build_run(cfg, dist, data)
    state = TrainState(cfg, out_dir, main=dist.main)
    if load:
        load_state(run, state)
    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        clean_run_folder(out_dir)
        write_json(out_dir / "config.json", cfg.model_dump())
        if progress:
            if note:
                print(note)
            _say_start(run)
    cbs.on_train_start(state)
    bar = tqdm(range(state.start_epoch, state.epochs), desc="epochs", disable=not (progress and dist.main),
               initial=state.start_epoch, total=state.epochs)
    for epoch in bar:
        row = _epoch(run, epoch, progress)
        improved = state.record(row)
        if dist.main:
            _save_epoch(run, state, row, improved, cbs)
            bar.set_postfix(val_acc=f"{row['val_acc']:.4f}", best=f"{state.sign * state.best:.4f}")
        stop = dist.any(bool(cbs.on_epoch_end(state, row)))
        if state.out_of_patience:
            state.stopped_early = True
            break
        if stop:
            break
    bar.close()
    summary = summarise(state)
    if dist.main:
        _finish(state, summary, progress)
    cbs.on_train_end(state, summary)
    dist.close()
    return summary


def _finish(state: TrainState, summary: dict[str, Any], progress: bool) -> None:
    if state.history:  # a resumed finished run: the logs of a kill between state and logs catch up
        write_logs(state.out_dir, state.history)
    write_json(state.out_dir / "summary.json", summary)
    try:
        plot_curves(state.history, state.out_dir / "curves.png")
    except Exception as exc:  # a plot must never cost the run
        print(f"warning: could not draw curves.png: {exc}")
    if progress:
        select = state.select
        print(f"done: best {select} {summary['best'][select]:.4f} at epoch {summary['best']['epoch']}"
              f" of {len(state.history)}; {summary['train_seconds']:.0f}s; checkpoint "
              f"{state.out_dir / 'best.safetensors'}")
