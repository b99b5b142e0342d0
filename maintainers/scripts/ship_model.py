#!/usr/bin/env python3
"""Put a trained checkpoint into the model zoo (maintainers/zoo/NAME.safetensors + NAME.json) with its measured metrics.

    .venv/bin/python maintainers/scripts/ship_model.py --checkpoint runs/fernet/best.safetensors --name fernet \
        --eval val=runs/eval-fernet-val --eval test=runs/eval-fernet-test \
        --eval test-all=runs/eval-fernet-test-all --eval test-tta=runs/eval-fernet-test-tta [--half]
    .venv/bin/python maintainers/scripts/ship_model.py --name fernet --metrics-only --eval val=DIR ... \
        [--calibration runs/shipped-eval/fernet.calibration.json] \
        [--calibration-tta runs/shipped-eval/fernet.calibration-tta.json]

Validation metrics start from the checkpoint's own sidecar (measured during training on
PublicTest, with the same prediction code as ``ferlab evaluate``); every ``--eval KEY=DIR``
replaces or adds a split with the numbers of ``ferlab evaluate``'s metrics.json - nothing is
typed in by hand. Writes maintainers/zoo/NAME.safetensors + NAME.json; ``--metrics-only`` rewrites only
the JSON sidecar of a zoo model, leaving its weights (and so every ``ferlab evaluate`` hash)
untouched. maintainers/scripts/evaluate_shipped.sh runs the evaluations and this script for zoo models;
maintainers/scripts/export_shipped_onnx.py puts a zoo model in the box.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from ferlab.fileio import sha256_file, write_json  # noqa: E402
from ferlab.research.nets.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

ZOO = REPO / "maintainers" / "zoo"


def ferplus_summary(block: dict) -> dict:
    """The FER+ numbers of ``ferlab evaluate``'s metrics_ferplus.json that the docs show."""
    unc, raw, cal = block["uncertainty"], block["raw"], block["calibrated"]
    cov = unc.get("accuracy_at_coverage", {})
    return {"accuracy": block["accuracy"], "n_majority7": block["n_majority7"],
            "fer2013_accuracy_same_faces": block["fer2013_accuracy_same_faces"],
            "nll_votes": raw["nll_votes"], "ece_votes": raw["ece_votes"],
            "nll_votes_calibrated": cal["nll_votes"], "ece_votes_calibrated": cal["ece_votes"],
            "auroc_unreadable": unc.get("auroc_unreadable"), "flagged": unc.get("flagged"),
            "accuracy_at_80": cov.get("80%", {}).get("ferplus"), "accuracy_at_90": cov.get("90%", {}).get("ferplus")}


def summarise(m: dict, folder: Path | None = None) -> dict:
    cal = m.get("calibration", {})
    extra = {}
    fp = None if folder is None else folder / "metrics_ferplus.json"
    if fp is not None and fp.is_file():
        extra["ferplus"] = ferplus_summary(json.loads(fp.read_text())["ferplus"])
    return {**extra, "accuracy": m["accuracy"], "macro_f1": m["macro_avg"]["f1"], "weighted_f1": m["weighted_avg"]["f1"],
            "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()}, "n": m["n"], "tta": m.get("tta"),
            "ece": cal.get("ece"), "nll": cal.get("nll"),
            "mean_confidence_correct": cal.get("mean_confidence_correct"),
            "mean_confidence_wrong": cal.get("mean_confidence_wrong")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="trained checkpoint to ship (not with --metrics-only)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--eval", action="append", default=[], metavar="KEY=DIR")
    ap.add_argument("--half", action="store_true", help="store weights as float16")
    ap.add_argument("--note", action="append", default=[], help="provenance notes kept in the JSON")
    ap.add_argument("--metrics-only", action="store_true", help="update the shipped NAME.json only")
    ap.add_argument("--calibration", metavar="FILE",
                    help="`ferlab calibrate` output for these weights: temperature and 'uncertain' threshold "
                         "fitted on PublicTest, kept in the sidecar for the inference outputs")
    ap.add_argument("--calibration-tta", metavar="FILE",
                    help="`ferlab calibrate --tta flip` output: the same fitted on the flip-averaged outputs, "
                         "used by inference with --tta flip")
    args = ap.parse_args()
    target = ZOO / f"{args.name}.safetensors"
    if args.metrics_only == bool(args.checkpoint):
        ap.error("give either --checkpoint (ship a model) or --metrics-only (update a shipped sidecar)")
    meta = json.loads(target.with_suffix(".json").read_text()) if args.metrics_only \
        else dict(load_checkpoint(args.checkpoint).meta)
    metrics = dict(meta.get("metrics", {}))
    weights = target if args.metrics_only else Path(args.checkpoint)
    digest = sha256_file(weights)  # what every --eval and --calibration* must have measured
    for item in args.eval:
        key, folder = item.split("=", 1)
        measured = json.loads((Path(folder) / "metrics.json").read_text())
        if args.metrics_only and measured["model"]["sha256"] != digest:
            ap.error(f"{folder} evaluated other weights than {target}")
        metrics[key] = {**(metrics.get(key, {}) if key == "val" else {}), **summarise(measured, Path(folder))}
    meta["metrics"] = metrics
    for key, file, tta in (("calibration", args.calibration, None), ("calibration_tta", args.calibration_tta, "flip")):
        if not file:
            continue
        cal = json.loads(Path(file).read_text())
        if cal["model"]["sha256"] != digest:
            ap.error(f"{file} was fitted for other weights than {weights}")
        if cal.get("tta") != tta:
            ap.error(f"{file} was fitted with tta {cal.get('tta')}, --{key.replace('_', '-')} needs {tta}")
        meta[key] = {k: v for k, v in cal.items() if k != "out"}
    meta["notes"] = list(meta.get("notes", [])) + args.note
    if args.metrics_only:
        write_json(target.with_suffix(".json"), meta)
        print(f"updated {target.with_suffix('.json')} with metrics for {', '.join(metrics)}")
        return 0
    path = save_checkpoint(target, load_checkpoint(args.checkpoint).model, meta, half=args.half)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) with metrics for {', '.join(metrics)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
