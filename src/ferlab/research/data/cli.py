"""``ferlab data ...`` subcommands (only ``check`` for now)."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect a FER2013 copy",
                          description="Inspect a FER2013 copy (folder layout or fer2013.csv).")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    def usage(_args: argparse.Namespace) -> int:
        data.print_help()
        return 1

    data.set_defaults(func=usage)

    check = dsub.add_parser(
        "check", help="counts, class weights, duplicates, leakage, label conflicts, blank images",
        description="Count images per split and class, print the class weights of Eq. (1) and find "
                    "identical images (duplicates, train/test leakage, conflicting labels) and "
                    "near-blank images; with FER+ votes, the agreement of FER2013's labels with the "
                    "FER+ majority per split.")
    check.add_argument("path", help="FER2013 folder (train/<class>/*.jpg, test/...) or fer2013.csv")
    check.add_argument("--skip-bad", action="store_true",
                       help="skip unreadable, corrupt or wrongly sized images (and count them) "
                            "instead of stopping at the first")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")
    check.add_argument("--examples", type=int, default=5, metavar="N",
                       help="example groups/images listed per problem in the text report (default 5)")
    check.add_argument("--blank-std", type=float, default=2.0, metavar="S",
                       help="pixel std (0-255) below which an image counts as near-blank (default 2)")
    check.add_argument("--no-cache", action="store_true", help="decode the images again, ignoring the cache")
    fp = check.add_mutually_exclusive_group()
    fp.add_argument("--ferplus", metavar="PATH",
                    help="FER+ votes (the ferplus folder, votes_by_kaggle_file.csv or fer2013new.csv): "
                         "report how often the FER2013 label is the FER+ majority vote; by default a "
                         "ferplus/ folder beside the data is used when there is one")
    fp.add_argument("--no-ferplus", action="store_true", help="leave the FER+ comparison out")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from .check import check_dataset

    report = check_dataset(args.path, skip_bad=args.skip_bad, blank_std=args.blank_std,
                           cache=not args.no_cache, ferplus=False if args.no_ferplus else args.ferplus)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_text(examples=args.examples))
    return 0
