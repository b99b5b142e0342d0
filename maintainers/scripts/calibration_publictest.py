#!/usr/bin/env python3
"""Can re-calibration bring a FER2013 model's ECE to 0.03? Measured on PublicTest only (issue 12).

    .venv/bin/python maintainers/scripts/calibration_publictest.py [--data ../shared/data/fer2013] [MODEL ...]

ECE against FER2013's labels (15 bins, ``ferlab.research.evaluation.calibration``) of each shipped FER2013
model, without and with flip TTA, for three temperatures: none (T = 1, what ``ferlab evaluate``
reports as ECE), T fitted to FER+'s vote distribution (what the shipped ``calibration`` uses for
``uncertain``) and T fitted to FER2013's labels. A temperature fitted and scored on the same
faces would flatter itself, so PublicTest is split in two halves (fixed seed): T is fitted on
one half and scored on the other, both ways, and the two scores are averaged. PrivateTest is
never read. Each half has ~1,800 faces, so an ECE here carries more sampling noise than one on
PrivateTest's 3,589 (ECE is biased upwards on small samples).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402

from ferlab.research.data import load_ferplus, resolve_data, split_votes  # noqa: E402
from ferlab.research.evaluation.calibration import calibration_metrics  # noqa: E402
from ferlab.research.evaluation.predict import predict_logits  # noqa: E402
from ferlab.research.evaluation.uncertainty import calibrated_probs, fit_temperature  # noqa: E402
from ferlab.research.nets import load_checkpoint  # noqa: E402
from ferlab.models.hub import fer2013_models, resolve_model  # noqa: E402

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="FER2013 folder or CSV (default $FERLAB_DATA)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split into halves")
    ap.add_argument("models", nargs="*", help="default: every shipped FER2013 model as trained (hub.fer2013_models)")
    args = ap.parse_args(argv)
    args.models = args.models or fer2013_models()
    fer = resolve_data(args.data)
    val = fer.split("val")
    votes = split_votes(val, load_ferplus(fer))
    has, dist = votes.has_votes7, votes.distribution()
    perm = np.random.default_rng(args.seed).permutation(len(val))
    halves = (perm[::2], perm[1::2])
    print(f"PublicTest ({len(val)} faces) in two halves (seed {args.seed}): T fitted on one, ECE vs FER2013 labels "
          "on the other, mean of both ways")
    print(f"  {'model':<18} {'TTA':<5} {'accuracy':>8}   {'T = 1':>6}   {'T votes':>14}   {'T labels':>14}")
    for name in args.models:
        ckpt = load_checkpoint(resolve_model(name))
        for tta in (False, True):
            z = predict_logits(ckpt.model, val.images, ckpt.mean, ckpt.std, tta=tta).numpy().astype(np.float64)
            acc = float((calibrated_probs(z).argmax(1) == val.labels).mean())
            scores: dict[str, list[tuple[float, float]]] = {"one": [], "votes": [], "labels": []}
            for fit, score in (halves, halves[::-1]):
                fv = fit[has[fit]]
                temps = {"one": 1.0, "votes": fit_temperature(z[..., fv, :], dist[fv]),
                         "labels": fit_temperature(z[..., fit, :], val.labels[fit])}
                for key, t in temps.items():
                    p = calibrated_probs(z[..., score, :], t)
                    scores[key].append((t, calibration_metrics(val.labels[score], p)["ece"]))

            def cell(key: str) -> str:
                t = np.mean([s[0] for s in scores[key]])
                e = np.mean([s[1] for s in scores[key]])
                return f"{e:.4f}" if key == "one" else f"{e:.4f} (T {t:.2f})"

            print(f"  {name:<18} {'flip' if tta else 'none':<5} {100 * acc:7.2f}%   {cell('one'):>6}   "
                  f"{cell('votes'):>14}   {cell('labels'):>14}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
