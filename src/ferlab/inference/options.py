"""Every inference option, declared once: name, default, help text and the rule it must obey.

``ferlab live | video | predict | serve`` generate their flags from :class:`InferenceOptions`
(:func:`add_arguments`), :meth:`Recognizer.from_pretrained <ferlab.inference.Recognizer.from_pretrained>`
takes the same names as keyword arguments, and the recognizer, its sessions and the detector
factory take their defaults from here, so a default or a help text changes in one place.

Options come in three scopes: ``model`` (which network and where it runs), ``detector`` (how
faces are found) and ``stream`` (tracking and smoothing across frames, i.e. what a
:class:`~ferlab.inference.Session` uses). Photos (``ferlab predict``) take the first two.

This module imports nothing heavy: the CLI builds its parsers from it on every start.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import FerlabError

BACKENDS = ("auto", "torch", "onnx")
DETECTORS = ("haar", "yunet")
SMOOTHING_MODES = ("window", "ema", "none")
TTA_MODES = ("none", "flip")
ROTATE_MODES = ("auto", "none")
SCOPES = ("model", "detector", "stream")


def _opt(default: Any, scope: str, help: str, *, type: Any = None, choices: tuple[str, ...] | None = None,  # noqa: A002
         metavar: str | None = None, flag: bool = True) -> Any:
    return field(default=default, metadata={"scope": scope, "help": help, "type": type, "choices": choices,
                                            "metavar": metavar, "flag": flag})


@dataclass(frozen=True)
class InferenceOptions:
    """How a :class:`~ferlab.inference.Recognizer` is built and how its sessions track and smooth.

    Validated on construction (a :class:`~ferlab.errors.FerlabError` names the bad value).
    ``detector`` may also be a detector object (anything with ``detect(bgr, gray)``) in Python.
    """

    # -- model ---------------------------------------------------------------------------
    model: str | None = _opt(None, "model", "shipped model name, checkpoint .safetensors, run folder, or exported "
                             ".onnx (default: the best shipped model)", metavar="NAME|CKPT")
    backend: str = _opt("auto", "model", "auto = ONNX Runtime on CPU when available (faster), else PyTorch",
                        choices=BACKENDS)
    device: str = _opt("cpu", "model", "torch device for --backend torch (e.g. cuda)")
    threads: int | None = _opt(None, "model", "ONNX Runtime threads (default: all cores)", type=int, metavar="N")
    tta: str = _opt("none", "model", "test-time augmentation: flip = classify each face and its mirror image and "
                    "average the two distributions (more accurate, twice the classifier's work per face)",
                    choices=TTA_MODES)
    # -- detector ------------------------------------------------------------------------
    detector: Any = _opt("yunet", "detector", "face detector: yunet = OpenCV's CNN detector, bundled (default); "
                         "haar = Viola-Jones exactly as in the thesis (scale 1.1, 5 neighbours, 30 px)",
                         choices=DETECTORS)
    detector_model: str | None = _opt(None, "detector", "another YuNet .onnx file for --detector yunet "
                                      "(default: the one bundled with ferlab)", metavar="PATH")
    detect_threshold: float = _opt(0.8, "detector", "YuNet's face score threshold (0.8, OpenCV's default; lower "
                                   "finds more faces and more false ones: maintainers/benchmarks/bench_fidelity.py)",
                                   type=float, metavar="T")
    detect_side: int | None = _opt(640, "detector", "YuNet looks at every frame on a copy this many pixels on its "
                                   "longer side (never enlarged), where it finds faces from the whole frame down to "
                                   "~1/20 of that side; larger frames get finer passes only as far as --min-face "
                                   "needs (0 = one pass at full resolution, capped by --max-detect-side; with "
                                   "--max-detect-side 1920 the previous default)", type=int, metavar="PX")
    min_face: int | None = _opt(40, "detector", "YuNet: the smallest face, in the image's pixels, that finer passes "
                                "look for on frames larger than --detect-side (smaller faces are still found where "
                                "the first pass sees them: down to ~24 px on a 640x480 frame); larger = faster on "
                                "big photos and 4K video (0 = no finer pass)", type=int, metavar="PX")
    detect_scale: float = _opt(1.0, "detector", "shrink every detection pass by S (0.5 = ~2-3x faster detection; "
                               "faces below --min-face / S are then missed)", type=float, metavar="S")
    max_detect_side: int | None = _opt(None, "detector", "no detection pass looks at more than this many pixels on "
                                       "its longer side, to bound time and memory on huge images (faces below "
                                       "--min-face x long side / PX are then missed; default: no limit)",
                                       type=int, metavar="PX")
    rotate: str = _opt("auto", "detector", "photos: where no face is clearly found upright, also look with the "
                       "photo turned a quarter turn each way and upside down, and read it the way its clearest "
                       "face is found (sideways or upside-down photos without an EXIF orientation tag); boxes stay "
                       "in the photo's own pixels (YuNet only: the cascade gives no scores to compare; none = upright "
                       "only; video and cameras are always upright)",
                       choices=ROTATE_MODES)
    # -- stream (tracking + smoothing) ---------------------------------------------------
    smoothing: str = _opt("window", "stream", "window = per-face mean of the last N frames (Eq. 26); ema = per-face "
                          "exponential average; none = raw", choices=SMOOTHING_MODES)
    window: int = _opt(10, "stream", "smoothing window N (default 10, Table 5)", type=int, metavar="N")
    ema_alpha: float | None = _opt(None, "stream", "EMA weight of the new frame (default 2/(N+1))", type=float,
                                   metavar="A")
    detect_every: int = _opt(1, "stream", "detect faces every K-th frame and track in between (K=2-3 nearly "
                             "halves the cost)", type=int, metavar="K")
    iou_threshold: float = _opt(0.3, "stream", "tracker: least box overlap (IoU) that continues a track",
                                type=float, metavar="T")
    max_missed: int = _opt(15, "stream", "tracker: frames a face may go undetected before its track (and "
                           "smoothing history) is dropped; a face back within them keeps its id", type=int,
                           metavar="N")
    confirm: int = _opt(3, "stream", "tracker: detections a new face needs (3 of 4 frames) before it gets an id and "
                        "is shown, so a one-frame false face never appears (1 = at once, as the thesis)",
                        type=int, metavar="N")
    appearance_threshold: float = _opt(0.5, "stream", "tracker: least correlation of a face's 16x16 appearance "
                                       "with its track's to continue it; a different face in the same place "
                                       "gets a new id and fresh smoothing (0 = position only)",
                                       type=float, metavar="C")
    scene_cut: float = _opt(20.0, "stream", "mean grey-level change of a 32x18 thumbnail between frames that "
                            "counts as a scene cut: every track ends, faces after it get new ids (0 = off)",
                            type=float, metavar="D")

    def __post_init__(self) -> None:
        fix = {}
        for name in ("max_detect_side", "detect_side", "min_face"):
            if getattr(self, name) == 0:
                fix[name] = None  # the flags' "0 = no limit / no such pass"
        if self.threads == 0:
            fix["threads"] = None  # ONNX Runtime's default
        for name in ("model", "detector_model"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                fix[name] = os.fspath(value)
        for k, v in fix.items():
            object.__setattr__(self, k, v)
        self._validate()

    def _validate(self) -> None:
        def bad(name: str, rule: str) -> FerlabError:
            return FerlabError(f"{name} (--{name.replace('_', '-')}) {rule}, got {getattr(self, name)!r}")

        if self.backend not in BACKENDS:
            raise FerlabError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if isinstance(self.detector, str):
            if self.detector not in DETECTORS:
                raise FerlabError(f"unknown detector {self.detector!r}; choose haar or yunet")
        elif not hasattr(self.detector, "detect"):
            raise FerlabError(f"detector {self.detector!r} has no detect(bgr, gray) method")
        if self.tta not in TTA_MODES:
            raise FerlabError(f"unknown tta {self.tta!r}; choose one of {', '.join(TTA_MODES)}")
        if self.smoothing not in SMOOTHING_MODES:
            raise FerlabError(f"unknown smoothing {self.smoothing!r}; choose one of {', '.join(SMOOTHING_MODES)}")
        if self.threads is not None and self.threads < 0:
            raise bad("threads", "must be >= 1 (or 0 for all cores)")
        if not 0 < self.detect_threshold < 1:
            raise bad("detect_threshold", "must be in (0, 1)")
        if not 0 < self.detect_scale <= 1:
            raise bad("detect_scale", "must be in (0, 1]")
        if self.max_detect_side is not None and self.max_detect_side < 1:
            raise bad("max_detect_side", "must be >= 1 (or 0 for no limit)")
        if self.detect_side is not None and self.detect_side < 32:
            raise bad("detect_side", "must be >= 32 (or 0 for one full-resolution pass)")
        if self.min_face is not None and self.min_face < 1:
            raise bad("min_face", "must be >= 1 (or 0 for no finer pass)")
        if self.window < 1:
            raise bad("window", "must be >= 1")
        if self.ema_alpha is not None and not 0 < self.ema_alpha <= 1:
            raise bad("ema_alpha", "must be in (0, 1]")
        if self.detect_every < 1:
            raise bad("detect_every", "must be >= 1")
        if not 0 < self.iou_threshold <= 1:
            raise bad("iou_threshold", "must be in (0, 1]")
        if self.max_missed < 0:
            raise bad("max_missed", "must be >= 0")
        if self.confirm < 1:
            raise bad("confirm", "must be >= 1")
        if not 0 <= self.appearance_threshold < 1:
            raise bad("appearance_threshold", "must be in [0, 1)")
        if self.scene_cut < 0:
            raise bad("scene_cut", "must be >= 0 (0 = off)")

    # -- views -------------------------------------------------------------------------
    @classmethod
    def names(cls, *scopes: str) -> list[str]:
        """Field names of the given scopes (all when none), in declaration order."""
        return [f.name for f in dataclasses.fields(cls) if not scopes or f.metadata["scope"] in scopes]

    def replace(self, **changes: Any) -> InferenceOptions:
        unknown = set(changes) - set(self.names())
        if unknown:
            raise FerlabError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def subset(self, *scopes: str) -> dict[str, Any]:
        """The options of some scopes as keyword arguments, e.g. ``subset("stream")``."""
        return {name: getattr(self, name) for name in self.names(*scopes)}

    def to_dict(self) -> dict[str, Any]:
        return self.subset()

    # the mapping protocol, so an options object unpacks into keyword arguments
    # (``Recognizer.from_pretrained(**opts)``)
    def __getitem__(self, name: str) -> Any:
        if name not in self.names():
            raise KeyError(name)
        return getattr(self, name)

    def keys(self) -> list[str]:
        return self.names()


DEFAULTS = InferenceOptions()
"""The defaults, for signatures that take one option directly (``make_detector(scale=...)``)."""


def split_options(kwargs: Mapping[str, Any], *scopes: str, what: str = "option") -> dict[str, Any]:
    """``kwargs`` checked against the option names of ``scopes``; unknown ones are an error
    that says ``what`` was being configured (``"Recognizer option"``, ``"session option"``)."""
    allowed = set(InferenceOptions.names(*scopes))
    unknown = set(kwargs) - allowed
    if unknown:
        raise FerlabError(f"unknown {what}(s): {', '.join(sorted(unknown))}")
    return dict(kwargs)


# -- command line ---------------------------------------------------------------------------

def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, scopes: Iterable[str] = SCOPES,
                  title: str = "inference options") -> argparse._ArgumentGroup:
    """Add the flags of ``scopes`` to ``parser`` (one group), defaults and help from the fields."""
    scopes = tuple(scopes)
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(InferenceOptions):
        meta = f.metadata
        if meta["scope"] not in scopes or not meta["flag"]:
            continue
        kwargs: dict[str, Any] = {"default": f.default, "help": meta["help"], "dest": f.name}
        for key in ("type", "choices", "metavar"):
            if meta[key] is not None:
                kwargs[key] = meta[key]
        group.add_argument(flag_of(f.name), **kwargs)
    return group


def from_args(args: argparse.Namespace, **overrides: Any) -> InferenceOptions:
    """The options a parsed command line holds (flags it does not have keep their defaults)."""
    values = {name: getattr(args, name) for name in InferenceOptions.names() if hasattr(args, name)}
    values.update(overrides)
    return InferenceOptions(**values)
