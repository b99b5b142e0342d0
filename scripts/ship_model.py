#!/usr/bin/env python3
"""Put a trained checkpoint into the package as a shipped model, with its measured metrics.

    .venv/bin/python scripts/ship_model.py --checkpoint runs/fernet/best.safetensors --name fernet \
        --eval test=runs/eval-fernet-test --eval test-all=runs/eval-fernet-test-all \
        --eval test-tta=runs/eval-fernet-test-tta [--half]

Validation metrics come from the checkpoint's own sidecar (measured during training on
PublicTest); test metrics are copied from ``ferlab evaluate`` outputs (metrics.json) - nothing
is typed in by hand. Writes src/ferlab/pretrained/NAME.safetensors + NAME.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ferlab.models.hub import PRETRAINED_DIR  # noqa: E402
from ferlab.models import load_checkpoint, save_checkpoint  # noqa: E402


def summarise(m: dict) -> dict:
    cal = m.get("calibration", {})
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_avg"]["f1"], "weighted_f1": m["weighted_avg"]["f1"],
            "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()}, "n": m["n"], "tta": m.get("tta"),
            "ece": cal.get("ece"), "nll": cal.get("nll"),
            "mean_confidence_correct": cal.get("mean_confidence_correct"),
            "mean_confidence_wrong": cal.get("mean_confidence_wrong")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--eval", action="append", default=[], metavar="KEY=DIR")
    ap.add_argument("--half", action="store_true", help="store weights as float16")
    ap.add_argument("--note", action="append", default=[], help="provenance notes kept in the JSON")
    args = ap.parse_args()
    ck = load_checkpoint(args.checkpoint)
    meta = dict(ck.meta)
    metrics = dict(meta.get("metrics", {}))
    for item in args.eval:
        key, folder = item.split("=", 1)
        metrics[key] = summarise(json.loads((Path(folder) / "metrics.json").read_text()))
    meta["metrics"] = metrics
    meta["notes"] = list(meta.get("notes", [])) + args.note
    path = save_checkpoint(PRETRAINED_DIR / f"{args.name}.safetensors", ck.model, meta, half=args.half)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) with metrics for {', '.join(metrics)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
