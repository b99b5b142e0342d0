"""``ferlab experiments run|table|list``: thesis section 5 as a resumable suite."""
from __future__ import annotations

import argparse
from pathlib import Path


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiments", help="the fifteen experiments of thesis section 5, beside the thesis's numbers",
                       description="Run, resume and tabulate the thesis's experiments (one config per row, installed "
                                   "with ferlab: ferlab/research/experiments/configs/*.yaml).")
    ssub = p.add_subparsers(dest="experiments_command", metavar="ACTION")

    r = ssub.add_parser("run", help="train + evaluate the selected experiments, then write results.md/.csv",
                        description="Train each selected experiment (one config per row of section 5), select its "
                                    "checkpoint on PublicTest, evaluate it on PrivateTest and all 7,178 test faces, "
                                    "and write OUT/results.md and OUT/results.csv beside the thesis's reported "
                                    "numbers. Finished runs are skipped, interrupted ones resumed.")
    r.add_argument("--only", help="comma list of experiment numbers (1-15; 16 = the FER+ training targets, not in "
                                  "the thesis) and/or config names, e.g. 1,7,13 or exp13_head_128 (default: all)")
    r.add_argument("--epochs", type=int, help="override every config's epoch count (reduced mode)")
    r.add_argument("--subset", type=int, help="stratified training subset size (reduced mode)")
    r.add_argument("--val-subset", type=int, help="stratified PublicTest subset used for selection (reduced mode)")
    r.add_argument("--eval-subset", type=int, help="stratified subset of test / test-all to evaluate (reduced mode)")
    r.add_argument("--seeds", type=_ints, default=[42], help="comma list (default 42, the thesis's seed)")
    r.add_argument("--jobs", type=int, default=1, help="runs at once, as subprocesses (several small runs "
                                                       "can share one GPU); default 1, in-process")
    r.add_argument("--data", help="FER2013 folder or fer2013.csv; default $FERLAB_DATA")
    r.add_argument("--out", default="experiments", help="suite folder (default experiments/)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]; a comma list spreads runs over devices")
    r.add_argument("--pretrained", help="imagenet (configs' default) | none | PATH: backbone weights for the "
                                        "ResNet rows; 'none' is recorded in the results")
    r.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop runs between epochs once this much wall time is used; stopped runs are evaluated "
                        "from their best checkpoint (marked partial) and resumed by a later call")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every run, e.g. train.batch_size=128 (recorded)")
    r.add_argument("--configs", help="folder of experiment configs (default: the ones installed with ferlab, "
                                     "ferlab/research/experiments/configs)")
    r.add_argument("--exp15-model", help="model for Exp. 15 (default: this suite's Exp. 9 run, else the shipped model)")
    r.add_argument("--exp15-video", help="video for Exp. 15 (default: the sample clip installed with ferlab, "
                                         "ferlab/assets/sample_clip.mp4)")
    r.add_argument("--progress", action="store_true", help="per-epoch progress bars (in-process runs)")
    r.set_defaults(func=run)

    t = ssub.add_parser("table", help="rewrite results.md/.csv from the runs already in OUT")
    t.add_argument("--out", default="experiments")
    t.set_defaults(func=table)

    ls = ssub.add_parser("list", help="the rows, their configs and the thesis's reported accuracy")
    ls.set_defaults(func=list_rows)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def run(args: argparse.Namespace) -> int:
    from .runner import SuiteOptions, run_suite

    opts = SuiteOptions(data=args.data, out=Path(args.out),
                        only=args.only.split(",") if args.only else None, seeds=args.seeds, epochs=args.epochs,
                        subset=args.subset, val_subset=args.val_subset, eval_subset=args.eval_subset,
                        jobs=args.jobs, device=args.device, pretrained=args.pretrained, time_limit=args.time_limit,
                        overrides=list(args.overrides), configs_dir=Path(args.configs) if args.configs else None,
                        progress=args.progress, exp15_model=args.exp15_model, exp15_video=args.exp15_video)
    res = run_suite(opts)
    if res["failed"]:
        print(f"failed: {', '.join(res['failed'])}")
        return 1
    return 0


def table(args: argparse.Namespace) -> int:
    from .table import write_tables

    md, csv_path = write_tables(Path(args.out))
    print(md.read_text())
    print(f"wrote {md} and {csv_path}")
    return 0


def list_rows(args: argparse.Namespace) -> int:
    from .table import ROWS

    for r in ROWS:
        acc = r.thesis.get("test_acc")
        print(f"Exp. {r.exp:>2}  {r.label:<45} {r.config or '-':<32} thesis {acc if acc is not None else '':>5}")
    print("Exp. 15  smoothing window N = 1, 5, 10, 20 on video    (live pipeline)                  thesis Table 5")
    return 0
