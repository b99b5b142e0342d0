"""``ferlab models``: what ships in the box. (``ferlab demo`` lives in :mod:`ferlab.inference.cli`.)"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the trained models shipped with ferlab")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    import json

    from .hub import default_model, shipped_models

    models = shipped_models()
    if args.json:
        print(json.dumps([{"name": m.name, "arch": m.arch, "file": str(m.path), "bytes": m.path.stat().st_size,
                           "metrics": m.meta.get("metrics", {})} for m in models], indent=2))
        return 0
    if not models:
        print("no models shipped with this install")
        return 0
    default = default_model().name
    w = max(12, *(len(m.name) + 1 for m in models))
    print(f"{'name':<{w}} {'architecture':<18} {'val acc':>8} {'test acc':>9} {'test-all':>9} {'size':>8}  file")
    fmt = lambda v: f"{100 * v:.2f}%" if v is not None else "-"  # noqa: E731
    for m in models:
        star = " (default)" if m.name == default else ""
        val = fmt(m.accuracy("val")) + ("*" if m.held_out_accuracy is not None else "")
        print(f"{m.name:<{w}} {m.arch:<18} {val:>8} {fmt(m.accuracy('test')):>9} "
              f"{fmt(m.accuracy('test-all')):>9} {m.path.stat().st_size / 1e6:>6.1f}MB  {m.path}{star}")
    print("val = FER2013 PublicTest (used for selection); test = PrivateTest; test-all = all 7,178 test images")
    for m in models:
        if m.held_out_accuracy is not None:
            print(f"* {m.name} was fitted on PublicTest (ferlab recalibrate): selection uses its accuracy on held-out "
                  f"halves of PublicTest, {fmt(m.held_out_accuracy)}")
    return 0

