"""The whole pipeline on labelled real photos: detection rate and accuracy, per class.

    git clone https://github.com/muxspace/facial_expressions   # Apache-2.0, ~260 MB
    .venv/bin/python maintainers/benchmarks/bench_real_photos.py --photos facial_expressions [--per-class 150]

The muxspace/facial_expressions collection: about 13,700 photos (mostly LFW-style news photos,
350x350, one face each) with one label per photo, given by one student annotator each. The
labels are noisy and the classes very unbalanced (happiness and neutral are 88% of them), so a
class-balanced sample is measured: at most ``--per-class`` photos of each of our seven classes
(anger->angry, happiness->happy, sadness->sad, the others by name; contempt is left out, case
ignored), drawn with a fixed seed.

Each photo goes through ``Recognizer.predict`` with the defaults. Printed per model: the share
of photos with at least one face found, and the accuracy of the largest face's label against
the annotator's, over all sampled photos (no face = wrong) and over photos with a face, with
the mean per-class recall (balanced accuracy) and the per-class recall. Nothing here tunes
anything: these are out-of-distribution checks of models selected on FER2013's PublicTest.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LABELS = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy", "neutral": "neutral",
          "sadness": "sad", "surprise": "surprise"}


def sample(root: Path, per_class: int, seed: int) -> list[tuple[Path, str]]:
    rows: dict[str, list[Path]] = {}
    with open(root / "data" / "legend.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            label = LABELS.get(row["emotion"].strip().lower())
            path = root / "images" / row["image"].strip()
            if label is not None and path.is_file():
                rows.setdefault(label, []).append(path)
    rng = np.random.default_rng(seed)
    out: list[tuple[Path, str]] = []
    for label in sorted(rows):
        paths = sorted(rows[label])
        take = rng.permutation(len(paths))[:per_class]
        out += [(paths[i], label) for i in sorted(take)]
    return out


def measure(model: str | None, photos: list[tuple[Path, str]]) -> dict[str, Any]:
    from ferlab.errors import FerlabError
    from ferlab.inference import Recognizer

    rec = Recognizer.from_pretrained(model)
    found = correct = unreadable = 0
    per_class: dict[str, list[int]] = {}
    for path, truth in photos:
        try:
            faces = rec.predict(path)
        except FerlabError:
            unreadable += 1
            faces = []
        hit = 0
        if faces:
            found += 1
            face = max(faces, key=lambda f: f.box[2] * f.box[3])
            hit = int(face.label == truth)
            correct += hit
        per_class.setdefault(truth, []).append(hit)
    recall = {c: float(np.mean(v)) for c, v in sorted(per_class.items())}
    n = len(photos)
    return {"model": rec.info.name, "photos": n, "unreadable": unreadable, "detection_rate": found / n,
            "accuracy": correct / n, "accuracy_detected": correct / max(found, 1),
            "balanced_accuracy": float(np.mean(list(recall.values()))), "recall": recall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", required=True, help="a checkout of muxspace/facial_expressions (data/, images/)")
    ap.add_argument("--per-class", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="", help="comma list of models (default: every shipped model)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from ferlab.models.hub import shipped_models

    root = Path(args.photos)
    if not (root / "data" / "legend.csv").is_file():
        raise SystemExit(f"{root}: no data/legend.csv (clone https://github.com/muxspace/facial_expressions)")
    photos = sample(root, args.per_class, args.seed)
    counts = Counter(label for _, label in photos)
    print(f"real photos | muxspace/facial_expressions, one annotator per photo (noisy labels) | {len(photos)} photos, "
          f"class-balanced sample: {', '.join(f'{c} {n}' for c, n in sorted(counts.items()))} | {os.cpu_count()} CPUs",
          flush=True)
    models = [m for m in args.models.split(",") if m] or [m.name for m in shipped_models()]
    results = {"photos": len(photos), "per_class": dict(counts), "models": []}
    for model in models:
        r = measure(model, photos)
        results["models"].append(r)
        print(f"  {r['model']:<18} faces found on {r['detection_rate']:6.1%} | accuracy {r['accuracy']:6.1%} "
              f"(photos with a face {r['accuracy_detected']:6.1%}) | balanced {r['balanced_accuracy']:6.1%} | "
              + ", ".join(f"{c} {v:.0%}" for c, v in r["recall"].items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
