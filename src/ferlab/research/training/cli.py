"""``ferlab train``."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on FER2013",
                       description="Train a model. Config = built-in thesis defaults <- --config YAML <- key=value "
                                   "overrides (dotted keys, e.g. train.epochs=1 or just epochs=1).")
    p.add_argument("--config", help="YAML config (e.g. maintainers/configs/thesis.yaml)")
    p.add_argument("--data", help="FER2013 folder (train/, test/) or fer2013.csv; default $FERLAB_DATA")
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--device", default=None, help="auto (default: cuda if available, else cpu) | cpu | cuda[:N]")
    p.add_argument("--pretrained", help="imagenet | none | PATH (shortcut for model.pretrained=...)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--ferplus", help="FER+ votes folder or file for train.targets=ferplus-* (default: a ferplus/ "
                                     "folder beside the data); shortcut for data.ferplus=PATH")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable/wrong-size images, counting them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run, outputs={"out": ("--out", "folder")})


def run(args: argparse.Namespace) -> int:
    from ..config import make_config
    from ..data import resolve_root
    from .trainer import train

    overrides = list(args.overrides)
    if args.pretrained:
        overrides.append(f"model.pretrained={args.pretrained}")
    if args.ferplus:
        overrides.append(f"data.ferplus={args.ferplus}")
    cfg = make_config(args.config, overrides)
    cfg.data.root = resolve_root(args.data, default=cfg.data.root)  # --data, $FERLAB_DATA, config
    if args.skip_bad:
        cfg.data.skip_bad = True
    train(cfg, out=args.out, device=args.device, resume=args.resume, progress=not args.quiet)
    return 0
