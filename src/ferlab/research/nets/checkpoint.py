"""Checkpoints that are safe to share: weights in safetensors (never pickle) + a JSON sidecar.

``NAME.safetensors`` holds the state dict; ``NAME.json`` holds everything needed to rebuild
and use the model alone. A model in the box is ``NAME.onnx`` + ``NAME.json`` instead: its ONNX
file keeps every tensor of the state dict under its own name (exported without constant
folding, float16 tensors named ``NAME__fp16``), so PyTorch loads the same file ONNX Runtime runs: the model config, class names, normalisation, metrics, epoch and the
ferlab version. Both are written atomically (sidecar last), so a crash never leaves a
checkpoint whose two halves disagree, and never destroys the previous one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...constants import CLASS_NAMES, MEAN, STD
from ...errors import FerlabError
from ...fileio import write_json, write_with


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names", CLASS_NAMES))

    @property
    def mean(self) -> float:
        return float(self.meta.get("mean", MEAN))

    @property
    def std(self) -> float:
        return float(self.meta.get("std", STD))


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        p = p / "best.safetensors"
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    elif p.suffix not in (".safetensors", ".onnx"):
        p = p.with_name(p.name + ".safetensors")
    return p, p.with_suffix(".json")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any], *, half: bool = False) -> Path:
    """Write weights + sidecar; ``meta`` must hold ``model`` (the model config dict)."""
    from safetensors.torch import save_file

    from ..._version import __version__

    if "model" not in meta or "name" not in meta["model"]:
        raise ValueError("checkpoint meta needs the model config under 'model'")
    wpath, jpath = _paths(path)
    model = getattr(model, "module", model)  # unwrap DDP / compile
    model = getattr(model, "_orig_mod", model)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    full = {"class_names": list(CLASS_NAMES), "mean": MEAN, "std": STD, **meta,
            "ferlab_version": __version__, "dtype": "float16" if half else "float32"}
    write_with(wpath, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    write_json(jpath, full)
    return wpath


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from the sidecar and load the weights (always as float32, eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .factory import create_from_config

    wpath, jpath = _paths(path)
    if not wpath.is_file():
        raise FerlabError(f"model file not found: {wpath}")
    if not jpath.is_file():
        raise FerlabError(f"model sidecar not found: {jpath} (it must sit next to {wpath.name})")
    try:
        meta = json.loads(jpath.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FerlabError(f"model sidecar {jpath} is not valid JSON: {exc}") from None
    model_cfg = dict(meta["model"])
    model_cfg["pretrained"] = "none"
    model = create_from_config(model_cfg)
    if wpath.suffix == ".onnx":
        state = state_dict_from_onnx(wpath, model)
    else:
        try:
            state = load_file(str(wpath), device=str(map_location))
        except (SafetensorError, OSError, ValueError) as exc:
            raise FerlabError(f"model file {wpath} is corrupt or not safetensors: {exc}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise FerlabError(f"model file {wpath} does not match its sidecar's architecture: "
                          f"{str(exc).splitlines()[0]}") from None
    model.to(map_location).eval()
    return Checkpoint(model, meta)


FP16_SUFFIX = "__fp16"


def state_dict_from_onnx(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict read out of an ONNX file that stores it by name (see the module
    docstring). BatchNorm's ``num_batches_tracked`` counters are not in an inference graph and
    keep the model's own values; any other missing tensor is an error."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise FerlabError(f"reading {path.name} into PyTorch needs the onnx package (pip install \"ferlab[train]\")") from None
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others
        raise FerlabError(f"model file {path} is corrupt or not ONNX: {str(exc).splitlines()[0]}") from None
    tensors = {t.name: t for t in proto.graph.initializer}
    own = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    missing = []
    for key, value in own.items():
        t = tensors.get(key + FP16_SUFFIX, tensors.get(key))
        if t is None:
            if key.endswith("num_batches_tracked"):
                state[key] = value
            else:
                missing.append(key)
            continue
        state[key] = torch.from_numpy(numpy_helper.to_array(t).copy())
    if missing:
        raise FerlabError(f"{path} does not hold the weights of its sidecar's model by name "
                          f"(missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}); "
                          "it must be exported without constant folding (maintainers/scripts/export_shipped_onnx.py)")
    return state
