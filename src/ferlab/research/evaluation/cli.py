"""``ferlab evaluate`` and ``ferlab calibrate``."""
from __future__ import annotations

import argparse
from typing import Any

from ..data.dataset import SPLITS


def _ferplus_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ferplus", help="FER+ votes folder or file (default: a ferplus/ folder beside the data, if any)")
    g.add_argument("--no-ferplus", action="store_true", help="do not use FER+ votes even if they are beside the data")


def _ferplus_choice(args: argparse.Namespace) -> Any:
    return False if args.no_ferplus else args.ferplus


def _model_and_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="shipped model name, checkpoint file or run folder (default: best shipped)")
    p.add_argument("--data", help="FER2013 folder (train/, test/) or fer2013.csv; default $FERLAB_DATA")


def _compute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="auto", help="auto (default: cuda if available, else cpu), cpu or cuda[:N]")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy, per-class F1, confusion matrix and calibration of a model",
                       description="Evaluate a checkpoint on a FER2013 split: writes metrics.json (reproducible: "
                                   "no timestamps), report.md, confusion_matrix.png and reliability.png. With FER+ "
                                   "votes (beside the data, or --ferplus) also metrics_ferplus.json: accuracy "
                                   "against the FER+ majority, cross-entropy and ECE against the votes, and the "
                                   "uncertainty measures (temperature and threshold fitted on PublicTest).")
    _model_and_data_args(p)
    p.add_argument("--split", default="test", choices=[s for s in SPLITS if s != "train"],
                   help="val = PublicTest, test = PrivateTest (default), test-all = both (7,178 faces)")
    p.add_argument("--tta", choices=["flip"], help="test-time augmentation: average with the mirrored face")
    p.add_argument("--out", help="output folder (default runs/eval-<model>-<split>)")
    _compute_args(p)
    _ferplus_args(p)
    p.set_defaults(func=run)

    c = sub.add_parser("calibrate", help="fit a model's calibration on PublicTest (temperature, or vector scaling)",
                       description="--method temperature (default): fit temperature scaling and the 'uncertain' "
                                   "threshold of a checkpoint on PublicTest (see "
                                   "ferlab.research.evaluation.uncertainty) and write them to a JSON file (default: "
                                   "<checkpoint>.calibration.json beside it). "
                                   "--method vector: fit a class-wise affine map of the logits (vector scaling, Guo "
                                   "et al. 2017) on PublicTest's FER2013 labels and write the network with it folded "
                                   "into its last layer as a new checkpoint (--out; the source is not touched). It "
                                   "corrects the per-class shift that class weighting and label smoothing leave, which "
                                   "one temperature cannot; the top class may change. Prints its effect on PublicTest "
                                   "measured on held-out halves (fit on one half, score on the other).")
    _model_and_data_args(c)
    c.add_argument("--method", choices=["temperature", "vector"], default="temperature",
                   help="temperature + threshold (default), or vector scaling folded into a new checkpoint")
    c.add_argument("--tta", choices=["flip"], help="temperature: calibrate the flip-TTA outputs")
    c.add_argument("--out", help="temperature: JSON file (default <checkpoint>.calibration.json); "
                                 "vector: the checkpoint to write (NAME.safetensors + NAME.json), required")
    c.add_argument("--seeds", type=int, default=10, help="vector: random half splits for the held-out estimate")
    _compute_args(c)
    _ferplus_args(c)
    c.set_defaults(func=run_calibrate)


def ferplus_summary(block: dict[str, Any]) -> str:
    """Terminal lines for the FER+ block of ``ferlab evaluate``."""
    u = block["uncertainty"]
    raw, cal = block["raw"], block["calibrated"]
    cov = u["accuracy_at_coverage"]
    auroc = "-" if u["auroc_unreadable"] is None else f"{u['auroc_unreadable']:.4f}"
    lines = [f"FER+ votes ({block['votes_file']}): {block['n_majority7']} faces with a 7-class majority",
             f"{'FER+ majority accuracy':<34}{block['accuracy']:>8.4f}",
             f"{'FER2013 accuracy, same faces':<34}{block['fer2013_accuracy_same_faces']:>8.4f}",
             f"{'NLL vs votes (raw / T)':<34}{raw['nll_votes']:>8.4f} / {cal['nll_votes']:.4f}",
             f"{'ECE vs votes (raw / T)':<34}{raw['ece_votes']:>8.4f} / {cal['ece_votes']:.4f}",
             f"{'temperature (fitted on val)':<34}{cal['temperature']:>8.4f}",
             f"{'AUROC, unreadable faces':<34}{auroc:>8}  ({u['n_unreadable']} of {u['n_scored']})",
             f"{'accuracy at 80% / 90% coverage':<34}{cov['80%']['ferplus']:>8.4f} / {cov['90%']['ferplus']:.4f}",
             f"{'flagged uncertain':<34}{u['flagged']:>8.4f}  (threshold {u['threshold']:.4f})"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ...errors import FerlabError
    from .report import summary_table
    from .run import evaluate

    if args.batch_size < 1:
        raise FerlabError("--batch-size must be at least 1")
    result = evaluate(args.model, args.data, split=args.split, tta=args.tta == "flip", out=args.out,
                      batch_size=args.batch_size, device=args.device, ferplus=_ferplus_choice(args))
    tta = " (flip TTA)" if args.tta else ""
    print(f"{result['model']['name']} on {args.split}{tta}: {result['n']} faces")
    print(summary_table(result))
    files = "metrics.json, report.md, confusion_matrix.png, reliability.png"
    if "ferplus" in result:
        print("\n" + ferplus_summary(result["ferplus"]))
        files = "metrics.json, metrics_ferplus.json, report.md, confusion_matrix.png, reliability.png"
    print(f"\nwrote {result['out']}/{{{files}}}")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from ...errors import FerlabError
    from .run import calibrate

    if args.method == "vector":
        if not args.out:
            raise FerlabError("--method vector writes a new checkpoint: give --out NAME.safetensors")
        if args.tta:
            raise FerlabError("--tta is for --method temperature; vector scaling is fitted on plain outputs")
        return run_recalibrate(args)

    cal = calibrate(args.model, args.data, tta=args.tta == "flip", out=args.out, batch_size=args.batch_size,
                    device=args.device, ferplus=_ferplus_choice(args))
    print(f"temperature {cal['temperature']:.4f} (fitted on PublicTest against {cal['fit_target']}), "
          f"uncertain when {cal['score']} >= {cal['threshold']:.4f} ({cal['threshold_rule']}; "
          f"{cal['fit_flagged']:.1%} of PublicTest flagged)")
    print(f"wrote {cal['out']}")
    return 0


def run_recalibrate(args: argparse.Namespace) -> int:
    from ...errors import FerlabError
    from .recalibration import recalibrate

    if args.seeds < 1:
        raise FerlabError("--seeds must be at least 1")
    res = recalibrate(args.model, args.data, out=args.out, batch_size=args.batch_size, device=args.device,
                      seeds=args.seeds)
    cf = res["cross_fitted"]
    print(f"vector scaling of {res['source']['name']} fitted on PublicTest ({res['fitted_on']['n']} faces)")
    print(f"held-out halves ({2 * cf['seeds']} fits){'':<6}{'accuracy':>9}{'ECE':>8}{'NLL':>8}")
    for key in ("without", "with"):
        m = cf[key]
        print(f"  {key + ' vector scaling':<32}{100 * m['accuracy']:>8.2f}%{m['ece']:>8.4f}{m['nll']:>8.4f}")
    print(f"wrote {res['out']}")
    return 0
