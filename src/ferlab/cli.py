"""The ``ferlab`` command. Each area registers its own subcommands (``register(sub)`` in its
``cli`` module), so this file only dispatches and turns user errors into one-line messages.

Every failure a user can cause ends in one line and a non-zero exit: ferlab's own errors
(exit 2, or the error's ``exit_code``), and any ``OSError`` (a read-only folder, a full disk,
a path through a file: exit 1), which the library raises as :class:`~ferlab.fileio.OutputError`
naming the output where it knows it. A command declares its output flags
(``set_defaults(outputs={dest: (flag, kind)})``) and they are checked writable before any work.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from .errors import FerlabError, missing_extra

_MODULES = (  # the order of `ferlab --help`: the product first, then the research kit
    "ferlab.inference.run_cli",  # run: any source
    "ferlab.inference.cli",  # predict, video, live, demo, export
    "ferlab.serving.cli",  # serve
    "ferlab.batch.cli",  # batch (Ray: the cluster extra)
    "ferlab.models.cli",  # models
    "ferlab.research.training.cli",  # train
    "ferlab.research.evaluation.cli",  # evaluate, calibrate
    "ferlab.research.explain.cli",  # gradcam
    "ferlab.research.experiments.cli",  # experiments
    "ferlab.research.data.cli",  # data check
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
    # OpenCV logs its own "[ERROR] imdecode_ ..." / "[WARN] ... Failed to write frame" lines for
    # what ferlab reports itself in one line; OPENCV_LOG_LEVEL=INFO (set before running) shows them
    os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
    from .inference import preprocess

    preprocess.QUIET_CODECS = True  # and libpng/libjpeg's own lines while a photo is decoded
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        check_outputs(args)
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
    except OSError as exc:  # the library names outputs (OutputError); this is whatever else the OS said
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"ferlab {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


def check_outputs(args: argparse.Namespace) -> None:
    """``$FERLAB_MAX_PIXELS``, if set, must be a pixel count; then each output flag the command
    declared (``outputs`` default: dest -> (flag, kind), kind "file", "folder" or "any") that
    was given must be writable: checked before the model loads or any input is read, so a typo
    costs a second, not a run (:func:`ferlab.fileio.check_writable`)."""
    from .fileio import check_writable

    if os.environ.get("FERLAB_MAX_PIXELS"):  # a bad value: one line now, not one per image later
        from .inference.preprocess import max_image_pixels

        max_image_pixels()
    declared: dict[str, tuple[str, str]] = getattr(args, "outputs", None) or {}
    for dest, (flag, kind) in declared.items():
        value: Any = getattr(args, dest, None)
        if isinstance(value, (str, os.PathLike)) and str(value) not in ("", "-"):
            check_writable(value, kind, what=flag)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
