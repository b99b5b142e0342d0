#!/usr/bin/env python3
"""PublicTest accuracy of shipped models alone and averaged: why distillation has teachers worth it.

    .venv/bin/python maintainers/scripts/ensemble_publictest.py [--data ../shared/data/fer2013] [MODEL ...]

Each model's flip-averaged softmax on PublicTest (the split every choice is made on), then the
mean of those distributions for every pair and for all of them: the accuracy an ensemble
would have, at the cost of one network per member per face. ``maintainers/configs/fernet_distill.yaml``
takes its teachers from this table. PrivateTest is never read.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402

from ferlab.research.data import resolve_data  # noqa: E402
from ferlab.research.training.teachers import teacher_probs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="FER2013 folder or CSV (default $FERLAB_DATA)")
    ap.add_argument("models", nargs="*", default=["fernet", "fernet_votesmooth", "resnet18"])
    args = ap.parse_args(argv)
    val = resolve_data(args.data).split("val")
    probs = {m: teacher_probs([m], val, tta=True).astype(np.float64) for m in args.models}
    print(f"PublicTest ({len(val)} faces), flip-averaged softmax; an ensemble is the mean of its members'")
    for r in range(1, len(args.models) + 1):
        for members in itertools.combinations(args.models, r):
            p = sum(probs[m] for m in members) / r
            print(f"  {' + '.join(members):<45} {100 * float((p.argmax(1) == val.labels).mean()):6.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
