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
- ``--jobs K`` runs K trainings as subprocesses (``python -m ferlab.research.experiments.runner TASK``):
  small models leave most of a GPU idle, and separate processes also keep a crash or a kill
  local to one run;
- ``--time-limit`` stops runs *between* epochs (a trainer callback, run after all of an
  epoch's files are written), so a stopped run is evaluated from its best checkpoint so far
  (marked partial) and a later call without the limit resumes it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import settings_difference, validate_config
from ..config_schema import Config
from ...errors import FerlabError
from ...fileio import write_json
from .exp15 import run_exp15
from .table import RESULT, ROWS, configs_of, write_tables

HARD_KILL_GRACE_S = 120.0  # after the deadline, a run still inside a (long) epoch is killed
CONFIGS_DIR = Path(__file__).resolve().with_name("configs")  # one YAML per row, installed with the package


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
                raise FerlabError(f"--only: there is no Experiment {n} (1-{max(r.exp for r in ROWS)})")
            chosen |= {r.config for r in rows if r.config}
        elif item.removesuffix(".yaml") in all_configs:
            chosen.add(item.removesuffix(".yaml"))
        else:
            last = max(r.exp for r in ROWS)
            raise FerlabError(f"--only: {item!r} is neither an experiment number (1-{last}) nor a config "
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


def effective_config(stem: str, seed: int, opts: SuiteOptions) -> Config:
    from ..config import make_config

    path = (opts.configs_dir or CONFIGS_DIR) / f"{stem}.yaml"
    cfg = make_config(path, list(opts.overrides))
    cfg.seed = seed
    if opts.epochs is not None:
        cfg.train.epochs = opts.epochs
    if opts.subset is not None:
        cfg.data.train_subset = opts.subset
    if opts.val_subset is not None:
        cfg.data.val_subset = opts.val_subset
    if opts.pretrained is not None and cfg.pretrained != "none":
        cfg.model = cfg.model | {"pretrained": opts.pretrained}  # scratch models stay "none"
    cfg.data.root = opts.data
    return cfg


def check_pretrained(configs: list[Config]) -> None:
    """Fail before any training starts, not after an hour of scratch runs."""
    from ..nets.resnet import find_imagenet_weights

    checked: set[tuple[str, str]] = set()
    for cfg in configs:
        key = (cfg.arch, cfg.pretrained)
        if key in checked or key[1] == "none" or not key[0].startswith("resnet"):
            continue
        checked.add(key)
        try:
            find_imagenet_weights(cfg.arch, None if key[1] == "imagenet" else key[1])
        except FerlabError as exc:
            raise FerlabError(f"{exc}\nFor a reduced suite without ImageNet weights pass --pretrained none "
                              f"(recorded in results.md).") from None


# ----------------------------------------------------------------------------- data

_DATA_CACHE: dict[tuple[str, bool], Any] = {}


def load_data(root: str, skip_bad: bool = False) -> Any:
    """FER2013 from a folder, CSV or pack, decoded once per process: every run of an
    in-process suite is handed the same copy (``train(data=...)``)."""
    from ..data import load_fer2013

    key = (str(Path(root).resolve()), bool(skip_bad))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_fer2013(root, skip_bad=skip_bad)
    return _DATA_CACHE[key]


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _train_summary(cfg: Config, history: list[dict[str, Any]], stopped_early: bool) -> dict[str, Any]:
    select = cfg.train.select_metric
    sign = -1.0 if select == "val_loss" else 1.0
    best = max(history, key=lambda r: sign * r[select])
    return {"best_epoch": int(best["epoch"]), "epochs_run": len(history), "epochs_planned": cfg.train.epochs,
            "stopped_early": bool(stopped_early), "select_metric": select, "best_val": float(best[select]),
            "train_seconds": round(sum(float(r["seconds"]) for r in history), 1)}


def _training_finished(run_dir: Path, cfg: Config) -> bool:
    path = run_dir / "summary.json"
    if not path.is_file():
        return False
    s = json.loads(path.read_text())
    return bool(s.get("stopped_early")) or int(s.get("epochs_run", 0)) >= cfg.train.epochs


def _compact(m: dict[str, Any]) -> dict[str, Any]:
    cal = m.get("calibration", {})
    return {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_avg"]["f1"],
            "disgust_f1": m["per_class"].get("disgust", {}).get("f1"),
            "mean_conf_correct": cal.get("mean_confidence_correct"), "ece": cal.get("ece"), "nll": cal.get("nll")}


def _compact_ferplus(block: dict[str, Any]) -> dict[str, Any]:
    unc = block["uncertainty"]
    return {"ferplus_n": block["n_majority7"], "ferplus_acc": block["accuracy"],
            "nll_votes": block["raw"]["nll_votes"], "ece_votes": block["raw"]["ece_votes"],
            "auroc_unreadable": unc["auroc_unreadable"], "acc_at_80": unc["accuracy_at_coverage"]["80%"]["ferplus"]}


def evaluate_run(run_dir: Path, cfg: Config, data: Any, device: str,
                 eval_subset: int | None) -> dict[str, dict[str, Any]]:
    """The best-on-val checkpoint on val (the subset selection used), test and test-all.

    Where FER+ votes are found (``data.ferplus`` or beside the data), val and test also get the
    FER+ numbers of ``ferlab evaluate`` (temperature and threshold fitted on the val faces),
    also written to ``metrics_<split>_ferplus.json``.
    """
    from ..data import split_votes
    from ..evaluation.metrics import compute_metrics, round_floats
    from ..evaluation.predict import predict_logits, probs_from_logits
    from ..evaluation.run import find_votes
    from ..evaluation.uncertainty import ferplus_metrics, fit_calibration
    from ..nets.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run_dir / "best.safetensors", map_location=device)
    votes = find_votes(data, cfg.data.ferplus)
    out: dict[str, dict[str, Any]] = {}
    calib = None
    for split in ("val", "test", "test-all"):
        sp = data.split(split)
        # val: the faces selection saw; test splits: one fixed subset for every run (seed 0)
        sp = sp.subset(cfg.data.val_subset, cfg.seed) if split == "val" else sp.subset(eval_subset, 0)
        logits = predict_logits(ckpt.model, sp.images, ckpt.mean, ckpt.std, batch_size=512, device=device)
        probs = probs_from_logits(logits).cpu().numpy()
        full = round_floats(compute_metrics(sp.labels, probs, ckpt.class_names))
        write_json(run_dir / f"metrics_{split}.json", full)
        out[split] = _compact(full)
        if votes is not None and split != "test-all":
            sv = split_votes(sp, votes)
            if calib is None:  # val comes first: the calibration is fitted on the selection faces
                calib = fit_calibration(logits.cpu().numpy(), sp.labels, sv)
            block = round_floats(ferplus_metrics(logits.cpu().numpy(), sp.labels, sv, calib))
            write_json(run_dir / f"metrics_{split}_ferplus.json", block)
            out[split] |= _compact_ferplus(block)
    return out


def run_task(task: dict[str, Any], data: Any | None = None) -> dict[str, Any]:
    """Train (or resume) one (config, seed) and evaluate it; returns and writes ``result.json``.

    A ``deadline`` in the task stops training between epochs (a callback of the trainer, run
    after all of an epoch's files are written), so a stopped run resumes exactly later. The
    task's ``cfg`` is a :class:`Config`, or its JSON form in a worker's ``task.json``.
    """
    from ..device import resolve_device
    from ..training.callbacks import StopAtDeadline
    from ..training.trainer import train

    cfg, run_dir = validate_config(task["cfg"]), Path(task["run_dir"])
    device = str(resolve_device(task.get("device")))
    data = data if data is not None else load_data(cfg.data.root, cfg.data.skip_bad)
    stopped_early, complete, stop_reason = False, True, None
    if not _training_finished(run_dir, cfg):
        resume = (run_dir / "last_state.pt").is_file()
        deadline = StopAtDeadline(task["deadline"]) if task.get("deadline") is not None else None
        summary = train(cfg, out=run_dir, device=device, resume=resume, progress=task.get("progress", False),
                        data=data, callbacks=[deadline] if deadline else [])
        stopped_early = bool(summary.get("stopped_early"))
        finished = stopped_early or int(summary["epochs_run"]) >= cfg.train.epochs
        if deadline is not None and deadline.reached and not finished:
            complete, stop_reason = False, deadline.reason
    else:
        stopped_early = bool(json.loads((run_dir / "summary.json").read_text()).get("stopped_early"))
    history = _history(run_dir)
    if not history:
        raise FerlabError(f"{run_dir}: training produced no epoch")
    metrics = evaluate_run(run_dir, cfg, data, device, task.get("eval_subset"))
    result = {"config": task["config"], "seed": cfg.seed, "complete": complete, "stop_reason": stop_reason,
              "pretrained": cfg.pretrained, "model": cfg.arch,
              "mode": task.get("mode", ""), "device": device,
              "train": _train_summary(cfg, history, stopped_early), "metrics": metrics,
              "checkpoint": "best.safetensors"}
    write_json(run_dir / RESULT, result)
    return result


# ----------------------------------------------------------------------------- the suite

def _status(run_dir: Path, cfg: Config) -> str:
    """done | resume | new, refusing a folder that holds a run of other settings."""
    stored = run_dir / "config.json"
    if stored.is_file():
        diff = settings_difference(json.loads(stored.read_text()), cfg)
        if diff:
            raise FerlabError(f"{run_dir} holds a run with other settings ({diff}); use another --out or "
                              f"delete that folder")
    res = run_dir / RESULT
    if res.is_file() and json.loads(res.read_text()).get("complete"):
        return "done"
    return "resume" if (run_dir / "last_state.pt").is_file() else "new"


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
    from ..data import resolve_root

    opts.data = resolve_root(opts.data)
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
            _say(f"[{i}/{len(tasks)}] {task['status']} {task['config']} seed {task['cfg'].seed}")
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
                _say(f"not started (time limit): {task['config']} seed {task['cfg'].seed}")
                continue
            if not task["cfg"].train.threads and not str(task["device"]).startswith("cuda"):
                task["cfg"].train.threads = cpu_threads  # K jobs share the cores instead of fighting
            run_dir = Path(task["run_dir"])
            run_dir.mkdir(parents=True, exist_ok=True)
            task_file = run_dir / "task.json"
            write_json(task_file, task | {"cfg": task["cfg"].model_dump()})
            log = open(run_dir / "log.txt", "ab")
            proc = subprocess.Popen([sys.executable, "-m", "ferlab.research.experiments.runner", str(task_file)],
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            _say(f"started {task['status']} {task['config']} seed {task['cfg'].seed} on {task['device']} "
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
                    _say(f"killed {task['config']} seed {task['cfg'].seed}: still in an epoch "
                         f"{HARD_KILL_GRACE_S:.0f}s after the time limit (rerun to resume)")
                    failed.append(f"{task['config']}/seed{task['cfg'].seed}")
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
                _say(f"FAILED {task['config']} seed {task['cfg'].seed} (exit {rc}); see {task['run_dir']}/log.txt")
                failed.append(f"{task['config']}/seed{task['cfg'].seed}")
        running = still
    return done, failed


# ----------------------------------------------------------------------------- worker

def _worker(argv: list[str]) -> int:
    """Subprocess entry: run one task file written by :func:`_run_subprocesses`."""
    ap = argparse.ArgumentParser(prog="python -m ferlab.research.experiments.runner")
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
