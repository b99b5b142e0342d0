"""Models shipped inside the package (``ferlab/pretrained/NAME.safetensors`` + ``NAME.json``).

Every command that takes ``--model`` accepts a shipped name (``fernet``, ``resnet18``), a
checkpoint file, or a run folder; with no ``--model`` the most accurate shipped model (by its
PublicTest accuracy on record) is used.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import FerlabError

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    path: Path
    meta: dict

    @property
    def arch(self) -> str:
        return str(self.meta.get("model", {}).get("name", "?"))

    def accuracy(self, split: str = "test") -> float | None:
        value = self.meta.get("metrics", {}).get(split, {}).get("accuracy")
        return float(value) if value is not None else None

    @property
    def held_out_accuracy(self) -> float | None:
        """For a model whose last layer was fitted on PublicTest (``ferlab recalibrate``): its
        accuracy on halves of PublicTest held out from the fit (``recalibration.cross_fitted``),
        since its own PublicTest accuracy is in-sample and flatters it; None for any other model."""
        value = self.meta.get("recalibration", {}).get("cross_fitted", {}).get("with", {}).get("accuracy")
        return float(value) if value is not None else None

    def selection_accuracy(self) -> float | None:
        """The PublicTest accuracy that choosing between shipped models may use: the held-out
        estimate where there is one, else the model's PublicTest accuracy."""
        held_out = self.held_out_accuracy
        return held_out if held_out is not None else self.accuracy("val")


def shipped_models() -> list[ShippedModel]:
    out = []
    for j in sorted(PRETRAINED_DIR.glob("*.json")):
        w = j.with_suffix(".safetensors")
        if w.is_file():
            out.append(ShippedModel(j.stem, w, json.loads(j.read_text())))
    return out


def fer2013_models() -> list[str]:
    """The shipped models trained for FER2013's labels (targets ``fer2013`` or vote-informed
    smoothing), as trained: whose FER2013 accuracy and ECE are the numbers to read, and which
    PublicTest-only studies of recalibration start from. A recalibrated model is left out, since
    it is one of those studies' outputs."""
    return [m.name for m in shipped_models() if "recalibration" not in m.meta
            and m.meta.get("config", {}).get("train", {}).get("targets", "fer2013") in ("fer2013", "ferplus-smoothing")]


def default_model() -> ShippedModel:
    models = shipped_models()
    if not models:
        raise FerlabError("no trained model ships with this install; pass --model PATH to a checkpoint")
    # chosen by validation (PublicTest) accuracy, held out where the model was fitted on it, never by test numbers
    return max(models, key=lambda m: m.selection_accuracy() or 0.0)


def resolve_model(spec: str | Path | None) -> Path:
    """Shipped name, checkpoint path or run folder -> the ``.safetensors`` file to load."""
    if spec is None or str(spec) == "":
        return default_model().path
    for m in shipped_models():
        if m.name == str(spec):
            return m.path
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / "best.safetensors"
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if p.is_file():
        return p
    names = ", ".join(m.name for m in shipped_models()) or "none shipped"
    raise FerlabError(f"model {spec!r} not found: not a shipped model ({names}) nor a checkpoint file")


def shipped_onnx(weights: str | Path) -> Path | None:
    """The committed ONNX twin of a shipped checkpoint (scripts/export_shipped_onnx.py writes
    it; a test checks it computes what the checkpoint computes), or None for any other file."""
    p = Path(weights)
    twin = p.with_suffix(".onnx")
    try:
        shipped = p.resolve().parent == PRETRAINED_DIR.resolve()
    except OSError:
        return None
    return twin if shipped and twin.is_file() else None


def load(spec: str | Path | None = None, map_location: str = "cpu"):  # noqa: ANN201
    from .checkpoint import load_checkpoint

    return load_checkpoint(resolve_model(spec), map_location)
