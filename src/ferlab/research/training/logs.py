"""The files a run leaves besides checkpoints: metrics.jsonl/.csv, summary.json, curves.png,
and the metadata written into each checkpoint's JSON sidecar."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..config_schema import Config
from ...constants import CLASS_NAMES
from ..data import FerSplit
from ...fileio import write_text, write_with
from .state import TrainState


def checkpoint_meta(cfg: Config, row: dict[str, Any], train_split: FerSplit,
                    val_split: FerSplit, val_ferplus: Any = None) -> dict[str, Any]:
    """Sidecar: what to rebuild the model from, its normalisation, and the val metrics it was
    selected on (the same numbers ``ferlab evaluate --split val`` gives on these faces).
    ``val_ferplus``: the val faces' FER+ majorities (-1 = none) when the run loaded votes."""
    meta = {"model": cfg.model | {"pretrained": "none"}, "config": cfg.model_dump(), "epoch": row["epoch"],
            "mean": cfg.data.mean, "std": cfg.data.std, "class_names": list(CLASS_NAMES),
            "metrics": {"val": {"accuracy": row["val_acc"], "loss": row["val_loss"],
                                "balanced_accuracy": row["val_balanced_acc"], "split": "PublicTest",
                                "n": len(val_split)}},
            "train_images": len(train_split)}
    if "val_ferplus_acc" in row and val_ferplus is not None:
        meta["metrics"]["val"] |= {"ferplus_accuracy": row["val_ferplus_acc"],
                                   "ferplus_n": int((val_ferplus >= 0).sum())}
    return meta


def summarise(state: TrainState) -> dict[str, Any]:
    history, select, sign = state.history, state.select, state.sign
    best_row = max(history, key=lambda r: sign * r[select]) if history else {}
    return {"best": best_row, "last": history[-1] if history else {}, "epochs_run": len(history),
            "stopped_early": state.stopped_early, "select_metric": select,
            "train_seconds": round(sum(r["seconds"] for r in history), 1),
            "checkpoint": str(state.out_dir / "best.safetensors")}


def write_logs(out_dir: Path, history: list[dict[str, Any]]) -> None:
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
