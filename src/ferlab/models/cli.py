"""``ferlab models``: what ships in the box. (``ferlab demo`` lives in :mod:`ferlab.inference.cli`.)"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models in the box (and in $FERLAB_ZOO)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    import json

    from .hub import DEFAULT_MODEL, known_models, shipped_models

    models = known_models()
    if args.json:
        print(json.dumps([{"name": m.name, "arch": m.arch, "shipped": m in shipped_models(),
                           "default": m.name == DEFAULT_MODEL, "file": str(m.path), "bytes": m.path.stat().st_size,
                           "metrics": m.meta.get("metrics", {})} for m in models], indent=2))
        return 0
    if not models:
        print("no models shipped with this install")
        return 0
    fmt = lambda v: f"{100 * v:.1f}%" if v is not None else "-"  # noqa: E731
    w = max(10, *(len(m.name) + 1 for m in models))
    print(f"{'name':<{w}} {'reads':<28} {'FER2013 test':>12} {'FER+ test':>10} {'size':>7}")
    for m in models:
        targets = m.meta.get("config", {}).get("train", {}).get("targets", "fer2013")
        reads = "FER+ votes (10 people/face)" if targets in ("ferplus-soft", "ferplus-majority") else "FER2013 labels"
        ferplus = m.meta.get("metrics", {}).get("test", {}).get("ferplus", {}).get("accuracy")
        tag = " (default)" if m.name == DEFAULT_MODEL else ""
        print(f"{m.name:<{w}} {reads:<28} {fmt(m.accuracy('test')):>12} {fmt(ferplus):>10} "
              f"{m.path.stat().st_size / 1e6:>5.1f}MB{tag}")
    print("FER2013 test = accuracy on FER2013's PrivateTest (3,589 faces); FER+ test = agreement with the "
          "FER+ majority vote on the same faces. MODEL_CARD.md in the package says more.")
    return 0
