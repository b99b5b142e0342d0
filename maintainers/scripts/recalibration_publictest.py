#!/usr/bin/env python3
"""Which shipped FER2013 model gains most from vector scaling? Measured on PublicTest only (issue 12).

    .venv/bin/python maintainers/scripts/recalibration_publictest.py [--data ../shared/data/fer2013] [MODEL ...]

For each model, without and with flip TTA: accuracy, ECE and NLL against FER2013's labels on
held-out halves of PublicTest (``ferlab.research.evaluation.recalibration.cross_fitted``: the map is
fitted on one random half and scored on the other, both ways, 10 seeds), without and with
vector scaling. ``ferlab calibrate --method vector`` prints the same estimate for one model; this table is
what chose the model it was run on. PrivateTest is never read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from ferlab.research.data import resolve_data  # noqa: E402
from ferlab.research.evaluation.predict import predict_logits  # noqa: E402
from ferlab.research.evaluation.recalibration import cross_fitted  # noqa: E402
from ferlab.research.nets import load_checkpoint  # noqa: E402
from ferlab.models.hub import fer2013_models, resolve_model  # noqa: E402

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="FER2013 folder or CSV (default $FERLAB_DATA)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("models", nargs="*", help="default: every shipped FER2013 model as trained (hub.fer2013_models)")
    args = ap.parse_args(argv)
    args.models = args.models or fer2013_models()
    val = resolve_data(args.data).split("val")
    print(f"PublicTest ({len(val)} faces), held-out halves ({args.seeds} seeds x 2 ways): vector scaling fitted on "
          "one half (plain view), scored on the other against FER2013 labels")
    print(f"  {'model':<18} {'TTA':<5} {'accuracy':>17}   {'ECE':>15}   {'NLL':>15}")
    print(f"  {'':<18} {'':<5} {'without -> with':>17}   {'without -> with':>15}   {'without -> with':>15}")
    for name in args.models:
        ckpt = load_checkpoint(resolve_model(name))
        for tta in (False, True):
            z = predict_logits(ckpt.model, val.images, ckpt.mean, ckpt.std, tta=tta).numpy()
            cf = cross_fitted(z, val.labels, seeds=args.seeds)
            a, b = cf["without"], cf["with"]
            print(f"  {name:<18} {'flip' if tta else 'none':<5} {100 * a['accuracy']:7.2f} -> {100 * b['accuracy']:5.2f}"
                  f"   {a['ece']:.4f} -> {b['ece']:.4f}   {a['nll']:.4f} -> {b['nll']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
