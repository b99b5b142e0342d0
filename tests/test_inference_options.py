"""Inference options are declared once (``InferenceOptions``): every command exposes them with
the same flags and defaults, the Python API takes the same names, and nothing else holds a
default of its own."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path

import pytest

from ferlab.cli import build_parser
from ferlab.errors import FerlabError
from ferlab.inference.options import DEFAULTS, InferenceOptions, add_arguments, flag_of, from_args

STREAM_COMMANDS = {"live": [], "video": ["in.mp4"], "demo": [], "serve": []}
PHOTO_COMMANDS = {"predict": ["a.jpg"]}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _inference_flags(command: str) -> dict[str, argparse.Action]:
    """The flags of a command that are inference options, by option name."""
    names = set(InferenceOptions.names())
    return {a.dest: a for a in _subparser(command)._actions if a.dest in names}


@pytest.mark.parametrize("command", [*STREAM_COMMANDS, *PHOTO_COMMANDS])
def test_commands_expose_the_declared_options(command: str) -> None:
    scopes = ("model", "detector") if command in PHOTO_COMMANDS else ("model", "detector", "stream")
    flags = _inference_flags(command)
    assert list(flags) == InferenceOptions.names(*scopes)  # same set, same order
    fields = {f.name: f for f in dataclasses.fields(InferenceOptions)}
    for name, action in flags.items():
        assert action.option_strings == [flag_of(name)]
        assert action.default == fields[name].default, name
        assert action.help == fields[name].metadata["help"], name
        assert action.choices == fields[name].metadata["choices"], name


@pytest.mark.parametrize("command", [*STREAM_COMMANDS, *PHOTO_COMMANDS])
def test_parsed_defaults_are_the_dataclass_defaults(command: str) -> None:
    args = build_parser().parse_args([command, *{**STREAM_COMMANDS, **PHOTO_COMMANDS}[command]])
    assert from_args(args) == InferenceOptions()


def test_serve_has_every_stream_flag_now() -> None:
    """`serve` had drifted (no --ema-alpha); it is generated from the same declaration now."""
    args = build_parser().parse_args(["serve", "--ema-alpha", "0.3", "--detect-every", "2", "--iou-threshold", "0.4",
                                      "--max-missed", "5", "--max-detect-side", "0", "--smoothing", "ema"])
    opts = from_args(args)
    assert (opts.ema_alpha, opts.detect_every, opts.iou_threshold, opts.max_missed) == (0.3, 2, 0.4, 5)
    assert opts.max_detect_side is None  # 0 = no limit
    assert opts.smoothing == "ema"


@pytest.mark.parametrize("change, words", [
    ({"window": 0}, "window (--window) must be >= 1"),
    ({"detect_every": 0}, "detect_every (--detect-every) must be >= 1"),
    ({"ema_alpha": 1.5}, "ema_alpha"),
    ({"detect_scale": 2.0}, "detect_scale"),
    ({"detect_side": 16}, "detect_side (--detect-side) must be >= 32"),
    ({"min_face": -1}, "min_face (--min-face) must be >= 1"),
    ({"smoothing": "median"}, "unknown smoothing 'median'"),
    ({"backend": "tpu"}, "unknown backend"),
    ({"detector": "mtcnn"}, "unknown detector"),
    ({"iou_threshold": 0.0}, "iou_threshold"),
])
def test_values_are_validated(change: dict, words: str) -> None:
    with pytest.raises(FerlabError, match=words.replace("(", r"\(").replace(")", r"\)")):
        InferenceOptions(**change)


def test_bad_flag_value_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ferlab.cli import main

    rc = main(["video", str(tmp_path / "in.mp4"), "--jsonl", str(tmp_path / "x.jsonl"), "--window", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "--window" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_defaults_live_only_in_the_declaration() -> None:
    """The recognizer, sessions, detector factory and smoother factory take their defaults
    from InferenceOptions (no second copy to drift)."""
    from ferlab.inference.backends import make_backend
    from ferlab.inference.detector import ScaledDetector, make_detector
    from ferlab.inference.recognizer import Recognizer, Session
    from ferlab.inference.smoothing import make_smoother

    det = inspect.signature(make_detector).parameters
    assert (det["name"].default, det["scale"].default, det["max_side"].default, det["work_side"].default,
            det["min_face"].default) == (DEFAULTS.detector, DEFAULTS.detect_scale, DEFAULTS.max_detect_side,
                                         DEFAULTS.detect_side, DEFAULTS.min_face)
    sd = inspect.signature(ScaledDetector).parameters
    assert (sd["scale"].default, sd["max_side"].default, sd["work_side"].default, sd["min_face"].default) == (
        DEFAULTS.detect_scale, DEFAULTS.max_detect_side, DEFAULTS.detect_side, DEFAULTS.min_face)
    sm = inspect.signature(make_smoother).parameters
    assert (sm["mode"].default, sm["window"].default, sm["ema_alpha"].default) == (
        DEFAULTS.smoothing, DEFAULTS.window, DEFAULTS.ema_alpha)
    be = inspect.signature(make_backend).parameters
    assert (be["device"].default, be["threads"].default) == (DEFAULTS.device, DEFAULTS.threads)
    for fn in (Recognizer.__init__, Recognizer.from_pretrained, Session.__init__):
        params = inspect.signature(fn).parameters
        own = [n for n, p in params.items() if n in InferenceOptions.names() and p.default is not p.empty]
        assert own == [], fn  # no option with a default of its own


def test_python_api_takes_the_same_names(tiny_checkpoint: Path) -> None:
    from ferlab.inference import Recognizer

    opts = InferenceOptions(model=str(tiny_checkpoint), backend="torch", window=4, smoothing="ema", max_missed=6)
    rec = Recognizer.from_pretrained(**opts)  # an options object unpacks into keyword arguments
    assert rec.options == opts
    again = Recognizer.from_pretrained(tiny_checkpoint, options=opts.replace(model=None), detect_every=2)
    assert again.options.detect_every == 2 and again.options.window == 4
    session = rec.session(window=2)
    assert session.options.window == 2 and session.options.smoothing == "ema"
    assert session.tracker.max_missed == 6 and session.smoother.name == "ema"
    with pytest.raises(FerlabError, match="unknown session option"):
        rec.session(backend="onnx")  # only the stream part can change per session
    with pytest.raises(FerlabError, match="two models"):
        Recognizer.from_pretrained(tiny_checkpoint, model="fernet")


def test_add_arguments_on_any_parser() -> None:
    p = argparse.ArgumentParser()
    add_arguments(p, ["stream"])
    assert from_args(p.parse_args(["--window", "3"])) == InferenceOptions(window=3)
