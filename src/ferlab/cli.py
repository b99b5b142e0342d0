"""The ``ferlab`` command. Each area registers its own subcommands (``register(sub)`` in its
``cli`` module), so this file only dispatches and turns user errors into one-line messages."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import FerlabError, missing_extra

_MODULES = (  # the order of `ferlab --help`: the product first, then the research kit
    "ferlab.inference.run_cli",  # run: any source
    "ferlab.inference.cli",  # predict, video, live, demo, export
    "ferlab.serving.cli",  # serve
    "ferlab.batch.cli",  # batch (Ray: the cluster extra)
    "ferlab.models.cli",  # models
    "ferlab.training.cli",  # train
    "ferlab.evaluation.cli",  # evaluate, calibrate
    "ferlab.explain.cli",  # gradcam
    "ferlab.experiments.cli",  # experiments
    "ferlab.data.cli",  # data check
)


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="ferlab", description="The emotions of every face in a camera, video, photo "
                                     "or folder: `ferlab run SOURCE`. Research kit (train, evaluate, calibrate, "
                                     "gradcam, experiments) after the product commands.")
    parser.add_argument("--version", action="version", version=f"ferlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # area not built (or not installed) yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except FerlabError as exc:
        print(f"ferlab {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        err = missing_extra(exc)
        if err is None:
            raise
        print(f"ferlab {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"ferlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
