"""The models in the box, and where other checkpoints are found by name.

ferlab installs two models (``ferlab/pretrained``), named for what they read:

* ``fer2013`` - the default: the seven FER2013 emotions as FER2013's annotators labelled them;
* ``ferplus`` - the same seven emotions as ten people per face voted (FER+), the better reading
  of ambiguous faces and of faces in the wild.

Each is one ``NAME.onnx`` (the weights, stored once, in float16) and one ``NAME.json`` (config,
calibration, metrics). ONNX Runtime runs the file in the core install; PyTorch (Grad-CAM,
evaluation, fine-tuning from it) reads the same tensors back out of it
(:func:`ferlab.research.nets.checkpoint.load_checkpoint`). The default is pinned by name in
:data:`DEFAULT_MODEL`, so adding a file never changes what users get.

Other checkpoints are found by path, or by name in a *model zoo*: a folder of
``NAME.safetensors`` + ``NAME.json`` named by ``$FERLAB_ZOO`` (this repository keeps the record
of every model it trained in ``maintainers/zoo/``, with their lineage in ``maintainers/zoo/README.md``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import FerlabError

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
DEFAULT_MODEL = "fer2013"
ZOO_ENV = "FERLAB_ZOO"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    path: Path  # the weights: NAME.onnx in the box, NAME.safetensors in a zoo
    meta: dict

    @property
    def arch(self) -> str:
        return str(self.meta.get("model", {}).get("name", "?"))

    def accuracy(self, split: str = "test") -> float | None:
        value = self.meta.get("metrics", {}).get(split, {}).get("accuracy")
        return float(value) if value is not None else None

    @property
    def held_out_accuracy(self) -> float | None:
        """For a model whose last layer was fitted on PublicTest (``ferlab calibrate --fold``):
        its accuracy on halves of PublicTest held out from the fit, since its own PublicTest
        accuracy is in-sample and flatters it; None for any other model."""
        value = self.meta.get("recalibration", {}).get("cross_fitted", {}).get("with", {}).get("accuracy")
        return float(value) if value is not None else None

    def selection_accuracy(self) -> float | None:
        """The PublicTest accuracy comparisons between models may use: the held-out estimate
        where there is one, else the model's PublicTest accuracy."""
        held_out = self.held_out_accuracy
        return held_out if held_out is not None else self.accuracy("val")


def _read(folder: Path, suffix: str) -> list[ShippedModel]:
    out = []
    for j in sorted(folder.glob("*.json")):
        w = j.with_suffix(suffix)
        if w.is_file():
            try:
                out.append(ShippedModel(j.stem, w, json.loads(j.read_text())))
            except (OSError, ValueError):
                continue
    return out


def shipped_models() -> list[ShippedModel]:
    """The models in the box (``ferlab/pretrained/NAME.onnx`` + ``NAME.json``)."""
    return _read(PRETRAINED_DIR, ".onnx")


def zoo_dir() -> Path | None:
    value = os.environ.get(ZOO_ENV)
    return Path(value).expanduser() if value else None


def zoo_models() -> list[ShippedModel]:
    """The checkpoints of the zoo folder named by ``$FERLAB_ZOO`` (none when it is unset)."""
    folder = zoo_dir()
    return _read(folder, ".safetensors") if folder and folder.is_dir() else []


def known_models() -> list[ShippedModel]:
    """Every model a name resolves to: the box first, then the zoo."""
    return shipped_models() + zoo_models()


def fer2013_models() -> list[str]:
    """The known models trained for FER2013's labels (targets ``fer2013`` or vote-informed
    smoothing), as trained: whose FER2013 accuracy and ECE are the numbers to read, and which
    PublicTest-only studies of recalibration start from. A recalibrated model is left out, since
    it is one of those studies' outputs."""
    return [m.name for m in known_models() if "recalibration" not in m.meta
            and m.meta.get("config", {}).get("train", {}).get("targets", "fer2013") in ("fer2013", "ferplus-smoothing")]


def default_model() -> ShippedModel:
    for m in shipped_models():
        if m.name == DEFAULT_MODEL:
            return m
    raise FerlabError(f"the default model {DEFAULT_MODEL!r} is missing from {PRETRAINED_DIR}; reinstall ferlab "
                      "or pass --model PATH to a checkpoint")


def resolve_model(spec: str | Path | None) -> Path:
    """Model name (box, then zoo), checkpoint path or run folder -> the weights file to load."""
    if spec is None or str(spec) == "":
        return default_model().path
    for m in known_models():
        if m.name == str(spec):
            return m.path
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / "best.safetensors"
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if p.is_file():
        return p
    names = ", ".join(m.name for m in known_models()) or "none shipped"
    raise FerlabError(f"model {spec!r} not found: not a model name ({names}) nor a checkpoint file")


def is_shipped(weights: str | Path) -> bool:
    """Whether ``weights`` is one of the files in the box."""
    try:
        return Path(weights).resolve().parent == PRETRAINED_DIR.resolve()
    except OSError:
        return False


def load(spec: str | Path | None = None, map_location: str = "cpu"):  # noqa: ANN201
    from ..research.nets.checkpoint import load_checkpoint

    return load_checkpoint(resolve_model(spec), map_location)
