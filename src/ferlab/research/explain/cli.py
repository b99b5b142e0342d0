"""``ferlab gradcam`` and ``ferlab gradcam-study``."""
from __future__ import annotations

import argparse

from ..data.dataset import SPLITS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gradcam", help="Grad-CAM heatmaps for face crops or photos",
                       description="Grad-CAM (thesis Eqs. 24-25) on model.gradcam_layer. 48x48 images are taken "
                                   "as face crops; larger photos get faces detected first (Haar cascade, thesis "
                                   "settings). Writes <name>_gradcam.png (face | overlay) per face, a photo "
                                   "overlay per photo, and gradcam.json.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--model", help="shipped model name, checkpoint file or run folder (default: best shipped)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--class", dest="target", metavar="NAME", help="explain this class for every face")
    which.add_argument("--predicted", dest="target", action="store_const", const=None,
                       help="explain each face's predicted class (default)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--crops", action="store_true", help="treat every image as a face crop (no detection)")
    p.add_argument("--device", default="auto", help="auto (default: cuda if available, else cpu), cpu or cuda[:N]")
    p.set_defaults(func=run_gradcam, target=None)

    s = sub.add_parser("gradcam-study", help="mean Grad-CAM per class and attention share per facial region",
                       description="Thesis section 8, quantified: for N correctly classified faces per class, the "
                                   "mean Grad-CAM map, a grid figure, and the share of attention in fixed regions "
                                   "of the aligned face (brows, eyes, nose, mouth, cheeks/jaw). Writes study.json, "
                                   "study.md, gradcam_grid.png, mean_maps.npy.")
    s.add_argument("--model", help="shipped model name, checkpoint file or run folder (default: best shipped)")
    s.add_argument("--data", help="FER2013 folder (train/, test/) or fer2013.csv; default $FERLAB_DATA")
    s.add_argument("--split", default="test", choices=[k for k in SPLITS if k != "train"])
    s.add_argument("--per-class", type=int, default=50, help="faces per class (default 50, as the thesis)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random draw of faces")
    s.add_argument("--out", help="output folder (default runs/gradcam-study-<model>-<split>)")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--device", default="auto", help="auto (default: cuda if available, else cpu), cpu or cuda[:N]")
    s.set_defaults(func=run_study)


def run_gradcam(args: argparse.Namespace) -> int:
    from .images import gradcam

    records = gradcam(args.inputs, args.model, target=args.target, out=args.out, crops=args.crops,
                      device=args.device)
    faces = 0
    for r in records:
        if r.get("face") is None:
            print(f"{r['image']}: {r['error']}")
            continue
        faces += 1
        extra = "" if r["explained"] == r["predicted"] else f", map for {r['explained']}"
        print(f"{r['image']} face {r['face']}: {r['predicted']} {r['confidence']:.0%}{extra} -> {r['out']}")
    print(f"{faces} face(s) explained in {len({r['image'] for r in records})} image(s); wrote {args.out}")
    return 0 if faces else 1


def run_study(args: argparse.Namespace) -> int:
    from ...errors import FerlabError
    from .study import study_markdown, gradcam_study

    if args.per_class < 1:
        raise FerlabError("--per-class must be at least 1")
    result = gradcam_study(args.model, args.data, split=args.split, per_class=args.per_class, out=args.out,
                           batch_size=args.batch_size, device=args.device, seed=args.seed)
    table = study_markdown(result, f"{result['model']} on {result['split']}").split("\n")
    print("\n".join(line for line in table if line.startswith("|")))
    print(f"\nwrote {result['out']}/{{study.json, study.md, gradcam_grid.png, mean_maps.npy}}")
    return 0
