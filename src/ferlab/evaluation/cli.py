"""``ferlab evaluate``."""
from __future__ import annotations

import argparse

from ..data.fer2013 import SPLITS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy, per-class F1, confusion matrix and calibration of a model",
                       description="Evaluate a checkpoint on a FER2013 split: writes metrics.json (reproducible: "
                                   "no timestamps), report.md, confusion_matrix.png and reliability.png.")
    p.add_argument("--model", help="shipped model name, checkpoint file or run folder (default: best shipped)")
    p.add_argument("--data", help="FER2013 folder (train/, test/) or fer2013.csv; default $FERLAB_DATA")
    p.add_argument("--split", default="test", choices=[s for s in SPLITS if s != "train"],
                   help="val = PublicTest, test = PrivateTest (default), test-all = both (7,178 faces)")
    p.add_argument("--tta", choices=["flip"], help="test-time augmentation: average with the mirrored face")
    p.add_argument("--out", help="output folder (default runs/eval-<model>-<split>)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="auto", help="auto (default: cuda if available, else cpu), cpu or cuda[:N]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import FerlabError
    from .report import summary_table
    from .run import evaluate

    if args.batch_size < 1:
        raise FerlabError("--batch-size must be at least 1")
    result = evaluate(args.model, args.data, split=args.split, tta=args.tta == "flip", out=args.out,
                      batch_size=args.batch_size, device=args.device)
    tta = " (flip TTA)" if args.tta else ""
    print(f"{result['model']['name']} on {args.split}{tta}: {result['n']} faces")
    print(summary_table(result))
    print(f"\nwrote {result['out']}/{{metrics.json, report.md, confusion_matrix.png, reliability.png}}")
    return 0
