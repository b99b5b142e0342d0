"""Who is who in the bundled clip? A face-recognition check of bench_tracking's annotation.

    pip install dlib-bin face-recognition-models   # dlib's 128-d face embedding (CC0 weights)
    .venv/bin/python maintainers/benchmarks/probe_identities.py [--step 2]

``maintainers/benchmarks/bench_tracking.py`` annotates the bundled clip's people by rules on YuNet's boxes
(no hand labels). This probe checks those rules with a face-recognition embedding: every
annotated face and every other face of the clip is compared with the reference photos of the
two people on stage in ``../shared/samples/photos`` (``lin-manuel-miranda.png``, the performer,
and ``alex-lacamoire.png``, his pianist). The embedding is dlib's ResNet
(``dlib.face_recognition_model_v1``, 99.38% on LFW; the only face-recognition weights
installable from the package index, through ``face-recognition-models``), on dlib's 5-point
landmarks of YuNet's box; distances are Euclidean, and dlib's documented same-person rule is a
distance below 0.6.

For each group of faces it prints the median distance to each reference, the share of its
faces nearer to one reference than to the other and, in brackets, nearer and within 0.6 of it. Nothing here is used by the
tracker: it only tells whether the benchmark's ground truth is right.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "maintainers" / "benchmarks"))

from bench_tracking import CLIP, PEOPLE, PHOTOS, SHOTS, clip_truth, read_frames  # noqa: E402

REFERENCES = {"performer": "lin-manuel-miranda.png", "pianist": "alex-lacamoire.png"}
SAME_PERSON = 0.6


def dlib_models() -> tuple[object, object]:
    """dlib's 5-point landmark predictor and face-embedding network, from the
    ``face-recognition-models`` package (found without importing it: its ``__init__`` needs
    the retired ``pkg_resources``)."""
    try:
        import dlib
    except ImportError:
        sys.exit("this probe needs dlib and its models: pip install dlib-bin face-recognition-models")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("this probe needs dlib's model files: pip install face-recognition-models")
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    return (dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", type=int, default=1, help="look at every STEP-th frame")
    args = ap.parse_args(argv)
    if not PHOTOS.is_dir():
        sys.exit(f"reference photos not found: {PHOTOS} (set FERLAB_SHARED)")
    import dlib

    from ferlab.inference.detector import make_detector
    from ferlab.inference.preprocess import clip_boxes, load_image, to_gray

    landmarks, net = dlib_models()
    det = make_detector("yunet")

    def embed(bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        x, y, w, h = (int(v) for v in box)
        shape = landmarks(rgb, dlib.rectangle(x, y, x + w, y + h))  # type: ignore[operator]
        return np.asarray(net.compute_face_descriptor(rgb, shape))  # type: ignore[attr-defined]

    refs = {}
    for who, name in REFERENCES.items():
        img = load_image(PHOTOS / name)
        b = det.detect(img, to_gray(img))
        refs[who] = embed(img, b[np.argmax(b[:, 2] * b[:, 3])])
    frames = read_frames(CLIP)
    truth = clip_truth(frames)
    groups: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(frames), args.step):
        f = frames[i]
        shot = next(f"{a}-{b - 1}" for a, b in zip(SHOTS, (*SHOTS[1:], len(frames))) if a <= i < b)
        for box in clip_boxes(det.detect(f, to_gray(f)), f.shape[1], f.shape[0]).astype(np.float64):
            who = next((PEOPLE[k] for k, v in truth[i].items() if np.allclose(v, box)), "unannotated")
            groups.setdefault(f"{who}, frames {shot}", []).append(embed(f, box))
    print(f"dlib face embedding, bundled clip ({len(frames)} frames, every {args.step}) against the reference photos "
          f"({', '.join(f'{k}: {v}' for k, v in REFERENCES.items())}); same person: distance < {SAME_PERSON}")
    print(f"  {'group (annotation rule, shot)':<36} {'faces':>5} " + " ".join(f"{'median to ' + k:>20}" for k in refs)
          + "   " + " ".join(f"{'nearer ' + k:>17}" for k in refs) + f"   (and < {SAME_PERSON})")
    for g in sorted(groups, key=lambda s: (int(s.rsplit(' ', 1)[1].split('-')[0]), s)):
        e = np.stack(groups[g])
        d = np.stack([np.linalg.norm(e - r, axis=1) for r in refs.values()], 1)  # faces x references
        nearest = d.argmin(1)
        shares = [f"{100 * (nearest == j).mean():>7.0f}% ({100 * ((nearest == j) & (d[:, j] < SAME_PERSON)).mean():3.0f}%)"
                  for j in range(len(refs))]
        print(f"  {g:<36} {len(e):>5} " + " ".join(f"{v:>20.2f}" for v in np.median(d, 0))
              + "   " + " ".join(f"{v:>17}" for v in shares))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
