#!/usr/bin/env python3
"""What drawing costs per frame: the overlay with the distributions (planned so that nothing
covers another face, ``ferlab.inference.overlay.layout``) against boxes and labels only.

    .venv/bin/python maintainers/benchmarks/bench_overlay.py [--repeats 300]

Faces in a row, as in an audience shot, on 640x480 and 1280x720 frames; best of 5 runs of
``--repeats`` calls of ``annotate`` each, wall-clock ms per frame (single-threaded NumPy/OpenCV
work, so a busy second core changes little).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402

from ferlab.constants import CLASS_NAMES  # noqa: E402
from ferlab.inference.overlay import annotate, layout  # noqa: E402
from ferlab.inference.results import Face  # noqa: E402


def faces_in_a_row(width: int, height: int, n: int, seed: int = 0) -> list[Face]:
    """n faces side by side across the frame, a fifth of its height each, 10 px apart."""
    rng = np.random.default_rng(seed)
    side = height // 5
    x0 = max(0, (width - n * (side + 10)) // 2)
    return [Face((x0 + k * (side + 10), height // 3 + 8 * (k % 2), side, side), rng.dirichlet(np.ones(7)),
                 CLASS_NAMES, track_id=k + 1) for k in range(n)]


def best_ms(fn, repeats: int) -> float:  # noqa: ANN001
    for _ in range(5):
        fn()
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        runs.append((time.perf_counter() - t) / repeats * 1000)
    return min(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args(argv)
    print("annotate() per frame, ms (best of 5 x --repeats calls); forms: the distribution each face got")
    for w, h in ((640, 480), (1280, 720)):
        frame = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
        for n in (1, 4, 6):
            faces = faces_in_a_row(w, h, n)
            with_bars = best_ms(lambda: annotate(frame, faces, fps=30.0), args.repeats)
            no_bars = best_ms(lambda: annotate(frame, faces, fps=30.0, bars=False), args.repeats)
            forms = [p.kind for p in layout(frame.shape, faces, 30.0)[1]]
            print(f"  {w}x{h} {n} face(s): with distributions {with_bars:5.2f}  boxes+labels only {no_bars:5.2f}  "
                  f"forms {', '.join(forms)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
