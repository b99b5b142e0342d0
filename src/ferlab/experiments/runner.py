"""Run thesis section 5 as a suite: train, select on PublicTest, evaluate, tabulate.

Why it is built this way:

- one folder per (config, seed), ``OUT/<config>/seed<N>/``, holding the trainer's files plus
  ``result.json``. ``result.json`` with ``complete: true`` marks a finished run, so re-running
  the suite skips it; a run that has ``last_state.pt`` but no complete result is resumed with
  ``train(resume=True)``, which reproduces an uninterrupted run exactly. Rows that share a
  config (Exp. 9 is also a row of Exp. 11-14) share the run;
- a folder is never reused for different settings: its ``config.json`` must equal the new
  effective config (data path and thread count aside), otherwise the runner stops and says so
  instead of silently mixing a 1-epoch smoke run into a 50-epoch table;
- ``--jobs K`` runs K trainings as subprocesses (``python -m ferlab.experiments.runner TASK``):
  small models leave most of a GPU idle, and separate processes also keep a crash or a kill
  local to one run;
- ``--time-limit`` stops runs *between* epochs, after all of an epoch's files are written,
  so a stopped run is evaluated from its best checkpoint so far (marked partial) and a later
  call without the limit resumes it.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FerlabError
from ..fileio import write_json
from .table import EXP15_WINDOWS, FINAL, ROWS, configs_of, write_tables

RESULT = "result.json"
EXP15_DIR = "exp15_smoothing"
DEFAULT_VIDEO_NAME = "short_hamilton_clip.mp4"
HARD_KILL_GRACE_S = 120.0  # after the deadline, a run still inside a (long) epoch is killed


def default_configs_dir() -> Path:
    """``configs/experiments`` of the source tree (editable install) or of the working directory."""
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        d = base / "configs" / "experiments"
        if d.is_dir():
            return d
    return Path("configs/experiments")


@dataclass
class SuiteOptions:
    data: str | None = None
    out: Path = Path("experiments")
    only: list[str] | None = None
    seeds: list[int] = field(default_factory=lambda: [42])
    epochs: int | None = None
    subset: int | None = None
    val_subset: int | None = None
    eval_subset: int | None = None
    jobs: int = 1
    device: str = "auto"
    pretrained: str | None = None
    time_limit: float | None = None
    overrides: list[str] = field(default_factory=list)
    configs_dir: Path | None = None
    progress: bool = False
    exp15_model: str | None = None
    exp15_video: str | None = None


# ----------------------------------------------------------------------------- planning

def select(only: list[str] | None) -> tuple[list[str], bool]:
    """``--only`` items (experiment numbers or config stems) -> (configs in table order, Exp. 15?)."""
    all_configs = configs_of()
    if not only:
        return all_configs, True
    chosen: set[str] = set()
    exp15 = False
    for item in only:
        item = item.strip()
        if not item:
            continue
        if item.isdigit():
            n = int(item)
            if n == 15:
                exp15 = True
                continue
            rows = [r for r in ROWS if r.exp == n]
            if not rows:
                raise FerlabError(f"--only: there is no Experiment {n} (1-15)")
            chosen |= {r.config for r in rows if r.config}
        elif item.removesuffix(".yaml") in all_configs:
            chosen.add(item.removesuffix(".yaml"))
        else:
            raise FerlabError(f"--only: {item!r} is neither an experiment number (1-15) nor a config "
                              f"({', '.join(all_configs)})")
    return [c for c in all_configs if c in chosen], exp15


def describe_mode(opts: SuiteOptions) -> str:
    """What makes these runs differ from the thesis recipe, recorded with every result."""
    parts = []
    if opts.epochs is not None:
        parts.append(f"epochs={opts.epochs}")
    for name in ("subset", "val_subset", "eval_subset"):
        if getattr(opts, name) is not None:
            parts.append(f"{name}={getattr(opts, name)}")
    if opts.pretrained not in (None, "imagenet"):
        parts.append(f"pretrained={opts.pretrained}")
    parts += opts.overrides
    return ("reduced: " + ", ".join(parts)) if parts else "full"


def effective_config(stem: str, seed: int, opts: SuiteOptions) -> dict[str, Any]:
    from ..config import make_config

    path = (opts.configs_dir or default_configs_dir()) / f"{stem}.yaml"
    cfg = make_config(path, list(opts.overrides))
    cfg["seed"] = int(seed)
    if opts.epochs is not None:
        cfg["train"]["epochs"] = int(opts.epochs)
    if opts.subset is not None:
        cfg["data"]["train_subset"] = int(opts.subset)
    if opts.val_subset is not None:
        cfg["data"]["val_subset"] = int(opts.val_subset)
    if opts.pretrained is not None and str(cfg["model"].get("pretrained", "none")) != "none":
        cfg["model"]["pretrained"] = opts.pretrained  # scratch models stay "none"
    cfg["data"]["root"] = opts.data
    return cfg


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config that define a run's result (not where the data lies or how many
    CPU threads it used)."""
    c = copy.deepcopy(cfg)
    c.get("data", {}).pop("root", None)
    c.get("data", {}).pop("skip_bad", None)
    c.get("train", {}).pop("threads", None)
    c.get("train", {}).pop("device", None)
    return c


def check_pretrained(configs: list[dict[str, Any]]) -> None:
    """Fail before any training starts, not after an hour of scratch runs."""
    from ..models.resnet import find_imagenet_weights

    checked: set[tuple[str, str]] = set()
    for cfg in configs:
        m = cfg["model"]
        key = (m["name"], str(m.get("pretrained", "none")))
        if key in checked or key[1] == "none" or not key[0].startswith("resnet"):
            continue
        checked.add(key)
        try:
            find_imagenet_weights(m["name"], None if key[1] == "imagenet" else key[1])
        except FerlabError as exc:
            raise FerlabError(f"{exc}\nFor a reduced suite without ImageNet weights pass --pretrained none "
                              f"(recorded in results.md).") from None


# ----------------------------------------------------------------------------- data

_DATA_CACHE: dict[str, Any] = {}


def load_data(root: str) -> Any:
    """FER2013 from a folder, CSV or pack, decoded once per process (every run of an in-process
    suite reuses it)."""
    from ..data import load_fer2013
    from ..data.packed import is_packed, load_packed

    key = str(Path(root).resolve())
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_packed(root) if is_packed(root) else load_fer2013(root)
    return _DATA_CACHE[key]


@contextlib.contextmanager
def packed_data_support() -> Iterator[None]:
    """Let the trainer read a ``.npz`` pack even before ``load_fer2013`` learns about packs
    (one hook line in data/fer2013.py); harmless once it has, and it also gives the trainer
    the per-process decoded copy."""
    import ferlab.data as data_pkg
    from ..data.packed import is_packed

    original = data_pkg.load_fer2013

    def load(root: Any, **kwargs: Any) -> Any:
        if is_packed(root) and not kwargs.get("skip_bad"):
            return load_data(str(root))
        return original(root, **kwargs)

    data_pkg.load_fer2013 = load  # type: ignore[assignment]
    try:
        yield
    finally:
        data_pkg.load_fer2013 = original  # type: ignore[assignment]


# ----------------------------------------------------------------------------- one run

class DeadlineReached(Exception):
    """Raised between epochs when the next epoch would end after the suite's time limit."""


@contextlib.contextmanager
def stop_between_epochs(deadline: float | None) -> Iterator[None]:
    """Stop training at an epoch boundary once the time limit would be overrun.

    The trainer writes best/last checkpoints, optimizer state and logs, in that order, then
    calls ``_write_logs``; raising right after it is the one point where all of an epoch's
    files agree, so the run can be resumed exactly. (A ``should_stop`` hook in ``train()``
    would make this independent of a private name; the test suite catches a rename.)
    """
    if deadline is None:
        yield
        return
    from ..training import trainer

    original = trainer._write_logs

    def write_then_check(out_dir: Path, history: list[dict[str, Any]]) -> None:
        original(out_dir, history)
        last_epoch_s = float(history[-1].get("seconds", 0.0)) if history else 0.0
        if time.time() + last_epoch_s > deadline:
            raise DeadlineReached

    trainer._write_logs = write_then_check
    try:
        yield
    finally:
        trainer._write_logs = original


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _train_summary(cfg: dict[str, Any], history: list[dict[str, Any]], stopped_early: bool) -> dict[str, Any]:
    select = cfg["train"]["select_metric"]
    sign = -1.0 if select == "val_loss" else 1.0
    best = max(history, key=lambda r: sign * r[select])
    return {"best_epoch": int(best["epoch"]), "epochs_run": len(history), "epochs_planned": int(cfg["train"]["epochs"]),
            "stopped_early": bool(stopped_early), "select_metric": select, "best_val": float(best[select]),
            "train_seconds": round(sum(float(r["seconds"]) for r in history), 1)}


def _training_finished(run_dir: Path, cfg: dict[str, Any]) -> bool:
    path = run_dir / "summary.json"
    if not path.is_file():
        return False
    s = json.loads(path.read_text())
    return bool(s.get("stopped_early")) or int(s.get("epochs_run", 0)) >= int(cfg["train"]["epochs"])


def _compact(m: dict[str, Any]) -> dict[str, Any]:
    cal = m.get("calibration", {})
    return {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_avg"]["f1"],
            "disgust_f1": m["per_class"].get("disgust", {}).get("f1"),
            "mean_conf_correct": cal.get("mean_confidence_correct"), "ece": cal.get("ece"), "nll": cal.get("nll")}


def evaluate_run(run_dir: Path, cfg: dict[str, Any], data: Any, device: str,
                 eval_subset: int | None) -> dict[str, dict[str, Any]]:
    """The best-on-val checkpoint on val (the subset selection used), test and test-all."""
    from ..evaluation import compute_metrics, predict_probs
    from ..evaluation.metrics import round_floats
    from ..models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run_dir / "best.safetensors", map_location=device)
    out: dict[str, dict[str, Any]] = {}
    for split in ("val", "test", "test-all"):
        sp = data.split(split)
        # val: the faces selection saw; test splits: one fixed subset for every run (seed 0)
        sp = sp.subset(cfg["data"].get("val_subset"), cfg["seed"]) if split == "val" else sp.subset(eval_subset, 0)
        probs = predict_probs(ckpt.model, sp.images, ckpt.mean, ckpt.std, batch_size=512, device=device)
        full = round_floats(compute_metrics(sp.labels, probs, ckpt.class_names))
        write_json(run_dir / f"metrics_{split}.json", full)
        out[split] = _compact(full)
    return out


def run_task(task: dict[str, Any], data: Any | None = None) -> dict[str, Any]:
    """Train (or resume) one (config, seed) and evaluate it; returns and writes ``result.json``."""
    from ..training.trainer import pick_device, train

    cfg, run_dir = task["cfg"], Path(task["run_dir"])
    device = str(pick_device(task.get("device")))
    stopped_early, complete, stop_reason = False, True, None
    with packed_data_support():
        if not _training_finished(run_dir, cfg):
            resume = (run_dir / "last_state.pt").is_file()
            try:
                with stop_between_epochs(task.get("deadline")):
                    summary = train(cfg, out=run_dir, device=device, resume=resume, progress=task.get("progress", False))
                stopped_early = bool(summary.get("stopped_early"))
            except DeadlineReached:
                complete, stop_reason = False, "time limit"
        else:
            stopped_early = bool(json.loads((run_dir / "summary.json").read_text()).get("stopped_early"))
        history = _history(run_dir)
        if not history:
            raise FerlabError(f"{run_dir}: training produced no epoch")
        data = data if data is not None else load_data(cfg["data"]["root"])
        metrics = evaluate_run(run_dir, cfg, data, device, task.get("eval_subset"))
    result = {"config": task["config"], "seed": int(cfg["seed"]), "complete": complete, "stop_reason": stop_reason,
              "pretrained": str(cfg["model"].get("pretrained", "none")), "model": cfg["model"]["name"],
              "mode": task.get("mode", ""), "device": device,
              "train": _train_summary(cfg, history, stopped_early), "metrics": metrics,
              "checkpoint": "best.safetensors"}
    write_json(run_dir / RESULT, result)
    return result


# ----------------------------------------------------------------------------- the suite

def _status(run_dir: Path, cfg: dict[str, Any]) -> str:
    """done | resume | new, refusing a folder that holds a run of other settings."""
    stored = run_dir / "config.json"
    if stored.is_file():
        old = json.loads(stored.read_text())
        if _comparable(old) != _comparable(json.loads(json.dumps(cfg))):
            diff = _first_difference(_comparable(old), _comparable(json.loads(json.dumps(cfg))))
            raise FerlabError(f"{run_dir} holds a run with other settings ({diff}); use another --out or "
                              f"delete that folder")
    res = run_dir / RESULT
    if res.is_file() and json.loads(res.read_text()).get("complete"):
        return "done"
    return "resume" if (run_dir / "last_state.pt").is_file() else "new"


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path}: was {a!r}, now {b!r}"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _line(res: dict[str, Any]) -> str:
    t, m = res["train"], res["metrics"]
    part = "" if res["complete"] else f" [partial: {res['stop_reason']}]"
    return (f"{res['config']} seed {res['seed']}: best epoch {t['best_epoch']}/{t['epochs_run']} "
            f"in {t['train_seconds']:.0f}s, val {m['val']['accuracy']:.4f}, test {m['test']['accuracy']:.4f}, "
            f"test-all {m['test-all']['accuracy']:.4f}{part}")


def run_suite(opts: SuiteOptions) -> dict[str, Any]:
    """Plan, run (in-process or ``jobs`` subprocesses), then write results.md/results.csv."""
    opts.data = opts.data or os.environ.get("FERLAB_DATA")
    if not opts.data:
        raise FerlabError("no data: pass --data PATH (FER2013 folder, fer2013.csv or a .npz pack) or set FERLAB_DATA")
    if not Path(opts.data).exists():
        raise FerlabError(f"data path not found: {opts.data}")
    if opts.jobs < 1:
        raise FerlabError("--jobs must be at least 1")
    configs, exp15 = select(opts.only)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = describe_mode(opts)
    start = time.time()
    deadline = start + opts.time_limit if opts.time_limit else None
    devices = [d.strip() for d in (opts.device or "auto").split(",") if d.strip()] or ["auto"]

    tasks: list[dict[str, Any]] = []
    cfgs = []
    for stem in configs:
        for seed in opts.seeds:
            cfg = effective_config(stem, seed, opts)
            cfgs.append(cfg)
            run_dir = out / stem / f"seed{seed}"
            status = _status(run_dir, cfg)
            if status == "done":
                _say(f"skip {stem} seed {seed}: finished earlier ({run_dir / RESULT})")
                continue
            tasks.append({"config": stem, "cfg": cfg, "run_dir": str(run_dir), "status": status,
                          "device": devices[len(tasks) % len(devices)], "eval_subset": opts.eval_subset,
                          "deadline": deadline, "mode": mode, "progress": opts.progress})
    check_pretrained([t["cfg"] for t in tasks])
    _say(f"{len(tasks)} run(s) to do, {len(configs) * len(opts.seeds) - len(tasks)} already finished; "
         f"mode: {mode}; out: {out}")

    done: list[dict[str, Any]] = []
    failed: list[str] = []
    if opts.jobs == 1 and opts.time_limit is None:
        for i, task in enumerate(tasks, 1):
            _say(f"[{i}/{len(tasks)}] {task['status']} {task['config']} seed {task['cfg']['seed']}")
            res = run_task(task)
            done.append(res)
            _say("  " + _line(res))
    else:
        done, failed = _run_subprocesses(tasks, opts.jobs, deadline)
    if exp15:
        run_exp15(out, opts)
    md, csv_path = write_tables(out)
    _say(f"wrote {md} and {csv_path} ({time.time() - start:.0f}s)")
    return {"results": done, "failed": failed, "markdown": str(md), "csv": str(csv_path)}


def _run_subprocesses(tasks: list[dict[str, Any]], jobs: int,
                      deadline: float | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Run tasks ``jobs`` at a time in worker processes; (results, names of failed runs)."""
    pending = list(tasks)
    running: list[tuple[subprocess.Popen[bytes], dict[str, Any], Any]] = []
    done: list[dict[str, Any]] = []
    failed: list[str] = []
    cpu_threads = max(1, (os.cpu_count() or 1) // jobs)
    while pending or running:
        while pending and len(running) < jobs:
            task = pending.pop(0)
            if deadline is not None and time.time() >= deadline:
                _say(f"not started (time limit): {task['config']} seed {task['cfg']['seed']}")
                continue
            if not task["cfg"]["train"].get("threads") and not str(task["device"]).startswith("cuda"):
                task["cfg"]["train"]["threads"] = cpu_threads  # K jobs share the cores instead of fighting
            run_dir = Path(task["run_dir"])
            run_dir.mkdir(parents=True, exist_ok=True)
            task_file = run_dir / "task.json"
            write_json(task_file, task)
            log = open(run_dir / "log.txt", "ab")
            proc = subprocess.Popen([sys.executable, "-m", "ferlab.experiments.runner", str(task_file)],
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            _say(f"started {task['status']} {task['config']} seed {task['cfg']['seed']} on {task['device']} "
                 f"(pid {proc.pid}, log {run_dir / 'log.txt'})")
            running.append((proc, task, log))
        time.sleep(0.5)
        still = []
        for proc, task, log in running:
            rc = proc.poll()
            if rc is None:
                if deadline is not None and time.time() > deadline + HARD_KILL_GRACE_S:
                    proc.kill()
                    proc.wait()
                    log.close()
                    _say(f"killed {task['config']} seed {task['cfg']['seed']}: still in an epoch "
                         f"{HARD_KILL_GRACE_S:.0f}s after the time limit (rerun to resume)")
                    failed.append(f"{task['config']}/seed{task['cfg']['seed']}")
                    continue
                still.append((proc, task, log))
                continue
            log.close()
            res_path = Path(task["run_dir"]) / RESULT
            if rc == 0 and res_path.is_file():
                res = json.loads(res_path.read_text())
                done.append(res)
                _say("finished " + _line(res))
            else:
                _say(f"FAILED {task['config']} seed {task['cfg']['seed']} (exit {rc}); see {task['run_dir']}/log.txt")
                failed.append(f"{task['config']}/seed{task['cfg']['seed']}")
        running = still
    return done, failed


# ----------------------------------------------------------------------------- Exp. 15

def _find_exp15_model(out: Path, opts: SuiteOptions) -> str | None:
    if opts.exp15_model:
        return opts.exp15_model
    for seed in opts.seeds:
        p = out / FINAL / f"seed{seed}" / "best.safetensors"
        if p.is_file():
            return str(p)
    from ..models.hub import shipped_models

    models = shipped_models()
    return models[0].name if models else None


def _default_video() -> Path:
    here = Path(__file__).resolve()
    for base in (here.parents[3].parent / "shared" / "samples", Path.cwd().parent / "shared" / "samples"):
        if (base / DEFAULT_VIDEO_NAME).is_file():
            return base / DEFAULT_VIDEO_NAME
    return Path(DEFAULT_VIDEO_NAME)


def smoothing_metrics(raw: list[Any], fps: float, windows: tuple[int, ...] = EXP15_WINDOWS) -> list[dict[str, Any]]:
    """Flips per second and lag of the shown label for each window N, from one track's raw
    per-frame probabilities (frames where the track was seen, in order).

    Lag: for every switch of the smoothed label to class c at frame t, the frames since the
    raw label last switched to c; the median over switches. N = 1 has lag 0 by definition.
    """
    import numpy as np

    from ..inference.smoothing import WindowSmoother

    probs = np.asarray(raw, dtype=np.float64)
    raw_labels = probs.argmax(1)
    rows = []
    seconds = len(probs) / fps if fps > 0 else float("nan")
    for n in windows:
        sm = WindowSmoother(n)
        shown = np.array([int(np.argmax(sm.update(0, p))) for p in probs])
        switches = np.flatnonzero(shown[1:] != shown[:-1]) + 1
        lags = []
        for t in switches:
            c = shown[t]
            starts = [s for s in range(1, t + 1) if raw_labels[s] == c and raw_labels[s - 1] != c]
            if starts:
                lags.append(t - starts[-1])
        rows.append({"window": n, "flips": int(len(switches)), "flips_per_s": len(switches) / seconds,
                     "lag_frames": float(np.median(lags)) if lags else (0.0 if n == 1 else None),
                     "switches_matched": len(lags)})
    return rows


def run_exp15(out: Path, opts: SuiteOptions) -> dict[str, Any] | None:
    """Exp. 15 on the sample video: the live pipeline (Haar detector, tracker, Eq. 27 crops)
    run once without smoothing; each window N is then applied to the main track's raw
    probabilities exactly as the per-track ``WindowSmoother`` of the live pipeline would."""
    from collections import defaultdict

    from ..inference import Recognizer

    model = _find_exp15_model(out, opts)
    video = Path(opts.exp15_video) if opts.exp15_video else _default_video()
    if model is None or not video.is_file():
        _say(f"Exp. 15 not measured: {'no model' if model is None else f'video {video} not found'} (TODO row kept)")
        return None
    device = "cuda" if (opts.device or "").startswith("cuda") else "cpu"
    rec = Recognizer.from_pretrained(model, backend="torch", device=device, smoothing="none")
    import cv2

    cap = cv2.VideoCapture(str(video))
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
    cap.release()
    tracks: dict[int, list[Any]] = defaultdict(list)
    frames = with_face = 0
    for fr in rec.stream(str(video), smoothing="none"):
        frames += 1
        with_face += bool(fr.faces)
        for f in fr.faces:
            tracks[int(f.track_id)].append(f.probs)
    if not tracks:
        _say(f"Exp. 15 not measured: no face found in {video}")
        return None
    main_id, main = max(tracks.items(), key=lambda kv: len(kv[1]))
    res = {"video": video.name, "model": str(model), "fps": fps, "frames": frames, "frames_with_face": with_face,
           "main_track": main_id, "main_track_frames": len(main), "tracks": len(tracks),
           "windows": smoothing_metrics(main, fps)}
    write_json(out / EXP15_DIR / RESULT, res)
    _say("Exp. 15: " + ", ".join(f"N={w['window']}: {w['flips_per_s']:.2f} flips/s" for w in res["windows"]))
    return res


# ----------------------------------------------------------------------------- worker

def _worker(argv: list[str]) -> int:
    """Subprocess entry: run one task file written by :func:`_run_subprocesses`."""
    ap = argparse.ArgumentParser(prog="python -m ferlab.experiments.runner")
    ap.add_argument("task", help="task.json written by the suite")
    args = ap.parse_args(argv)
    task = json.loads(Path(args.task).read_text())
    try:
        res = run_task(task)
    except FerlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_line(res))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
