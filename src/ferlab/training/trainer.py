"""One training loop for every model and experiment (thesis section 4 and Table 6).

Design choices that matter for results:
- the whole split lives on the device as uint8 and batches are augmented there (augment.py);
- every epoch is a pure function of (seed, epoch, weights, optimizer state): its data order,
  augmentation and dropout come from generators seeded with (seed, epoch). ``--resume``
  therefore reproduces an uninterrupted run exactly without saving RNG states;
- checkpoints are selected on PublicTest ("val") only; the test splits are never looked at
  here (the thesis early-stopped on its test set; we do not, see docs);
- the backbone is frozen (``requires_grad=False`` and its BatchNorm in eval mode, so its
  ImageNet statistics are not overwritten either) for the first ``freeze_epochs`` epochs.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..constants import CLASS_NAMES, NUM_CLASSES
from ..errors import FerlabError
from ..fileio import write_json, write_text, write_with
from ..models.checkpoint import save_checkpoint
from ..models.factory import create_from_config
from ..preprocessing import normalise, standardise, to_unit
from .augment import augment_batch
from .loss import WeightedLabelSmoothingCE
from .schedule import lr_at

STATE_FILE = "last_state.pt"


# ----------------------------------------------------------------------------- helpers

def pick_device(spec: str | None) -> torch.device:
    spec = spec or "auto"
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise FerlabError("--device cuda asked for, but no CUDA device is available (use --device cpu)")
    return torch.device(spec)


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return
    for p in backbone.parameters():
        p.requires_grad_(not frozen)


def _set_train_mode(model: nn.Module, frozen: bool) -> None:
    model.train()
    if frozen and getattr(model, "backbone", None) is not None:
        model.backbone.eval()  # keep pretrained BN statistics while the backbone is frozen


def _epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed * 100_003 + epoch)
    return g


class _Dist:
    """torchrun/DDP context; a no-op for single-process runs."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model)  # re-wrapped at unfreezing: DDP fixes its parameter set at construction

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@torch.no_grad()
def evaluate_split(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, criterion: nn.Module,
                   mean: float, std: float, batch_size: int, channels_last: bool,
                   amp: bool) -> dict[str, float]:
    """Loss (training criterion) and accuracy of one split, without augmentation."""
    model.eval()
    logits = []
    for i in range(0, len(images), batch_size):
        x = normalise(images[i:i + batch_size], mean, std).unsqueeze(1)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
            logits.append(model(x).float())
    out = torch.cat(logits)
    pred = out.argmax(1)
    recall = [float((pred[labels == c] == c).float().mean()) if (labels == c).any() else float("nan")
              for c in range(NUM_CLASSES)]
    return {"loss": float(criterion(out, labels)), "acc": float((pred == labels).float().mean()),
            "balanced_acc": float(np.nanmean(recall))}


# ----------------------------------------------------------------------------- training

def train(cfg: dict[str, Any], *, out: str | Path | None = None, device: str | None = None,
          resume: bool = False, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the summary (also written to ``OUT/summary.json``).

    ``stop_after`` ends the process's work after that many epochs *of this call* (as if killed),
    which the resume test uses.
    """
    from tqdm.auto import tqdm

    from ..data import class_weights, load_fer2013

    t_cfg, a_cfg, d_cfg = cfg["train"], cfg["augment"], cfg["data"]
    dev = pick_device(device or t_cfg.get("device"))
    dist = _Dist(dev)
    if dist.enabled and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if t_cfg.get("threads"):
        torch.set_num_threads(int(t_cfg["threads"]))
    seed = int(cfg["seed"])
    out_dir = Path(out or Path("runs") / cfg["name"])
    if dist.main and not resume and (out_dir / "last.safetensors").exists():
        raise FerlabError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")

    if d_cfg.get("root") in (None, ""):
        raise FerlabError("no training data given: pass --data PATH (FER2013 folder or fer2013.csv)")
    data = load_fer2013(d_cfg["root"], skip_bad=bool(d_cfg.get("skip_bad")))
    train_split = data.split("train").subset(d_cfg.get("train_subset"), seed)
    val_split = data.split("val").subset(d_cfg.get("val_subset"), seed)
    mean, std = float(d_cfg["mean"]), float(d_cfg["std"])

    x_train = torch.from_numpy(np.ascontiguousarray(train_split.images)).to(dev)
    y_train = torch.from_numpy(train_split.labels).to(dev)
    x_val = torch.from_numpy(np.ascontiguousarray(val_split.images)).to(dev)
    y_val = torch.from_numpy(val_split.labels).to(dev)

    weights = class_weights(train_split.labels) if t_cfg["class_weights"] else None
    criterion = WeightedLabelSmoothingCE(NUM_CLASSES, float(t_cfg["label_smoothing"]),
                                         None if weights is None else torch.tensor(weights)).to(dev)

    torch.manual_seed(seed)
    model = create_from_config(cfg["model"]).to(dev)
    channels_last = t_cfg["channels_last"] in (True, "auto")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = dev.type == "cuda" and t_cfg["amp"] in (True, "auto", "bf16")
    params = [p for p in model.parameters()]
    opt_name = t_cfg["optimizer"]
    if opt_name == "adam":
        opt = torch.optim.Adam(params, lr=float(t_cfg["lr"]), betas=tuple(t_cfg["betas"]),
                               weight_decay=float(t_cfg["weight_decay"]))
    elif opt_name == "adamw":
        opt = torch.optim.AdamW(params, lr=float(t_cfg["lr"]), betas=tuple(t_cfg["betas"]),
                                weight_decay=float(t_cfg["weight_decay"]))
    elif opt_name == "sgd":
        opt = torch.optim.SGD(params, lr=float(t_cfg["lr"]), momentum=float(t_cfg["momentum"]),
                              nesterov=True, weight_decay=float(t_cfg["weight_decay"]))
    else:
        raise FerlabError(f"unknown optimizer {opt_name!r} (adam, adamw, sgd)")

    history: list[dict[str, Any]] = []
    start_epoch, best, bad_epochs = 0, -math.inf, 0
    if resume:
        state_path = out_dir / STATE_FILE
        if not state_path.is_file():
            raise FerlabError(f"nothing to resume in {out_dir} (no {STATE_FILE})")
        from safetensors.torch import load_file

        state = torch.load(state_path, map_location=dev, weights_only=True)
        # weights from the state file itself, so weights and optimizer always come from the same epoch
        model.load_state_dict(state["model"] if "model" in state
                              else load_file(str(out_dir / "last.safetensors"), device=str(dev)))
        opt.load_state_dict(state["optimizer"])
        start_epoch, best, bad_epochs = int(state["epoch"]) + 1, float(state["best"]), int(state["bad_epochs"])
        history = json.loads(state["history"])
        if state.get("finished"):  # early-stopped or complete: resuming must not train more
            start_epoch = int(t_cfg["epochs"])
    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", cfg)

    epochs, bs = int(t_cfg["epochs"]), int(t_cfg["batch_size"])
    local_bs = max(1, bs // dist.world)
    n = len(x_train)
    steps = n // bs if n >= bs else 1  # drop the last partial batch (BN needs > 1 sample)
    freeze_epochs = int(t_cfg["freeze_epochs"])
    if freeze_epochs > 0 and str(cfg["model"].get("pretrained", "none")) == "none" and dist.main and progress:
        print(f"warning: freezing a randomly initialised backbone for {freeze_epochs} epoch(s) only trains the "
              "head on random features; pass freeze_epochs=0 when training from scratch")
    patience = int(t_cfg["early_stopping"] or 0)
    select = t_cfg["select_metric"]
    if select not in ("val_acc", "val_balanced_acc", "val_loss"):
        raise FerlabError(f"select_metric must be val_acc, val_balanced_acc or val_loss, not {select!r}")
    sign = -1.0 if select == "val_loss" else 1.0
    compiled = torch.compile(model) if t_cfg.get("compile") else model
    if dist.main and weights is not None and progress:
        print("class weights (Eq. 1): " + ", ".join(f"{c}={w:.2f}" for c, w in zip(CLASS_NAMES, weights)))

    epoch_bar = tqdm(range(start_epoch, epochs), desc="epochs", disable=not (progress and dist.main),
                     initial=start_epoch, total=epochs)
    stopped_early, run_epochs = False, 0
    wrapped, wrapped_frozen = None, None
    for epoch in epoch_bar:
        frozen = epoch < freeze_epochs
        set_backbone_frozen(model, frozen)
        if wrapped is None or wrapped_frozen != frozen:
            wrapped, wrapped_frozen = dist.wrap(compiled), frozen
        _set_train_mode(model, frozen)
        g = _epoch_generator(seed, epoch, dev)
        torch.manual_seed(seed * 100_003 + epoch)  # dropout
        perm = torch.randperm(n, generator=g, device=dev)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        batch_bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                         disable=not (progress and dist.main))
        for step in batch_bar:
            lr = lr_at(cfg, epoch, step, steps)
            for group in opt.param_groups:
                group["lr"] = lr
            idx = perm[step * bs:(step + 1) * bs][dist.rank * local_bs:(dist.rank + 1) * local_bs]
            x = standardise(augment_batch(to_unit(x_train[idx].unsqueeze(1)), a_cfg, g), mean, std)
            y = y_train[idx]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = wrapped(x)
            loss = criterion(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if float(t_cfg["grad_clip"] or 0) > 0:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                               float(t_cfg["grad_clip"]))
            opt.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if progress and dist.main and step % 20 == 0:
                batch_bar.set_postfix(loss=f"{float(loss):.3f}", lr=f"{lr:.2e}")
        batch_bar.close()
        train_secs = time.perf_counter() - t0
        val = evaluate_split(model, x_val, y_val, criterion, mean, std, int(t_cfg["eval_batch_size"]),
                             channels_last, amp)
        row = {"epoch": epoch + 1, "lr": lr_at(cfg, epoch), "frozen": frozen,
               "train_loss": float(loss_sum) / max(seen, 1), "train_acc": float(correct) / max(seen, 1),
               "val_loss": val["loss"], "val_acc": val["acc"], "val_balanced_acc": val["balanced_acc"],
               "seconds": round(time.perf_counter() - t0, 2),
               "train_images_per_s": round(seen * dist.world / train_secs, 1)}
        history.append(row)
        score = sign * row[select]
        improved = score > best
        if improved:
            best, bad_epochs = score, 0
        else:
            bad_epochs += 1
        if dist.main:
            meta = _meta(cfg, row, epoch, train_split, val_split)
            if improved:
                save_checkpoint(out_dir / "best.safetensors", model, meta)
            save_checkpoint(out_dir / "last.safetensors", model, meta)
            finished = epoch + 1 >= epochs or bool(patience and bad_epochs >= patience)
            state = {"model": getattr(model, "_orig_mod", model).state_dict(), "optimizer": opt.state_dict(),
                     "epoch": epoch, "best": best, "bad_epochs": bad_epochs, "finished": finished,
                     "history": json.dumps(history)}
            write_with(out_dir / STATE_FILE, lambda p: torch.save(state, p))
            _write_logs(out_dir, history)
            epoch_bar.set_postfix(val_acc=f"{row['val_acc']:.4f}", best=f"{sign * best:.4f}")
        run_epochs += 1
        if patience and bad_epochs >= patience:
            stopped_early = True
            break
        if stop_after is not None and run_epochs >= stop_after:
            break
    epoch_bar.close()
    summary = _summary(history, select, sign, stopped_early, out_dir)
    if dist.main:
        write_json(out_dir / "summary.json", summary)
        try:
            plot_curves(history, out_dir / "curves.png")
        except Exception as exc:  # a plot must never cost the run
            print(f"warning: could not draw curves.png: {exc}")
        if progress:
            print(f"done: best {select} {summary['best'][select]:.4f} at epoch {summary['best']['epoch']}"
                  f" of {len(history)}; {summary['train_seconds']:.0f}s; checkpoint {out_dir / 'best.safetensors'}")
    dist.close()
    return summary


def _meta(cfg: dict[str, Any], row: dict[str, Any], epoch: int, train_split: Any, val_split: Any) -> dict:
    return {"model": cfg["model"] | {"pretrained": "none"}, "config": cfg, "epoch": epoch + 1,
            "mean": cfg["data"]["mean"], "std": cfg["data"]["std"], "class_names": list(CLASS_NAMES),
            "metrics": {"val": {"accuracy": row["val_acc"], "loss": row["val_loss"],
                                "balanced_accuracy": row["val_balanced_acc"], "split": "PublicTest",
                                "n": len(val_split)}},
            "train_images": len(train_split)}


def _summary(history: list[dict[str, Any]], select: str, sign: float, stopped_early: bool,
             out_dir: Path) -> dict[str, Any]:
    best_row = max(history, key=lambda r: sign * r[select]) if history else {}
    return {"best": best_row, "last": history[-1] if history else {}, "epochs_run": len(history),
            "stopped_early": stopped_early, "select_metric": select,
            "train_seconds": round(sum(r["seconds"] for r in history), 1),
            "checkpoint": str(out_dir / "best.safetensors")}


def _write_logs(out_dir: Path, history: list[dict[str, Any]]) -> None:
    write_text(out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    write_text(out_dir / "metrics.csv", buf.getvalue())


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [r["train_loss"] for r in history], label="train")
    a.plot(ep, [r["val_loss"] for r in history], label="val (PublicTest)")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend()
    b.plot(ep, [r["train_acc"] for r in history], label="train (augmented)")
    b.plot(ep, [r["val_acc"] for r in history], label="val (PublicTest)")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.legend()
    frozen = [r["epoch"] for r in history if r["frozen"]]
    for ax in (a, b):
        if frozen:
            ax.axvspan(min(frozen) - 0.5, max(frozen) + 0.5, color="grey", alpha=0.15, label="frozen")
    fig.tight_layout()
    write_with(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
