"""Run configuration: plain defaults, overridden by a YAML file, then by ``key=value``.

The defaults ARE the thesis recipe (sections 6.1-6.2, Table 6), so ``configs/thesis.yaml``
only names the run; every experiment of section 5 is a small YAML delta on top of it.
A config may name a parent with ``base: other.yaml`` (resolved relative to the file).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from .constants import MEAN, STD
from .errors import FerlabError

DEFAULTS: dict[str, Any] = {
    "name": "thesis",
    "seed": 42,
    "model": {
        "name": "resnet18",
        # imagenet | none | path to a torchvision-format state dict (.pth/.safetensors)
        "pretrained": "imagenet",
        "head": [256],  # hidden widths of the classification head; [] = plain fc 512->7
        "dropout": [0.5, 0.25],  # before the first / before every later Linear
        "in_chans": 1,  # 1 = thesis grayscale stem; 3 = grey replicated to RGB
        "stem": "thesis",  # thesis: 3x3 stride-1 conv, no max-pool | original: 7x7/2 + max-pool
    },
    "data": {
        "root": None,
        "mean": MEAN,
        "std": STD,
        "train_subset": None,  # int: stratified subset of the training split (smoke runs)
        "val_subset": None,
        "skip_bad": False,
    },
    "train": {
        "epochs": 50,
        "batch_size": 64,
        "optimizer": "adam",  # adam | adamw | sgd
        "lr": 2.0e-4,
        "weight_decay": 1.0e-4,
        "momentum": 0.9,  # sgd only
        "betas": [0.9, 0.999],
        "scheduler": "cosine",  # cosine | step | onecycle | none
        "eta_min": 1.0e-6,
        "step_size": 10,  # step scheduler (Exp. 11)
        "gamma": 0.5,
        "warmup_epochs": 0,
        "freeze_epochs": 5,  # backbone frozen for the first N epochs (Exp. 4)
        "early_stopping": 10,  # patience in epochs on the selection metric; 0 = off
        "select_metric": "val_acc",  # checkpoint selection on PublicTest, never test
        "grad_clip": 1.0,  # max global L2 norm; 0 = off
        "label_smoothing": 0.1,  # Eq. 13-15
        "class_weights": True,  # Eq. 1
        "eval_batch_size": 512,
        "amp": "auto",  # auto = bf16 autocast on CUDA only (bf16 is ~20x slower on this CPU)
        "channels_last": "auto",  # auto = on CUDA
        "compile": False,
        "threads": None,  # torch CPU threads; None = torch default
    },
    "augment": {
        "hflip": 0.5,
        "rotation": 10.0,  # degrees, uniform in [-r, r]
        "translate": 0.1,  # fraction of the side, uniform in [-t, t]
        "scale": [1.0, 1.0],  # random zoom range (1,1 = off, as in the thesis)
        "erasing_p": 0.3,  # Eq. 21
        "erasing_scale": [0.02, 0.15],
        "erasing_ratio": [0.3, 3.3],
        "erasing_value": "noise",  # noise = U(0,1) on the [0,1] pixel scale, or a float
    },
}


class _Loader(yaml.SafeLoader):
    """PyYAML implements YAML 1.1, where ``1e-4`` (no dot) is a *string*: ``lr=1e-4`` would
    reach the optimiser as text. This loader also reads such numbers as floats (YAML 1.2)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _deep_update(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_update(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a config file, following ``base:`` parents; returns only the overrides."""
    path = Path(path)
    if not path.is_file():
        raise FerlabError(f"config file not found: {path}")
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise FerlabError(f"config files inherit from each other in a loop: {chain}")
    try:
        data = _yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FerlabError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise FerlabError(f"config file {path} must hold a mapping at the top level")
    base = data.pop("base", None)
    if base:
        parent = load_yaml((path.parent / base).resolve(), (*_seen, path.resolve()))
        data = _deep_update(parent, data)
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise FerlabError(f"override {item!r} is not of the form key=value (e.g. train.epochs=1)")
    key, raw = item.split("=", 1)
    try:
        value = _yaml(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


# Short keys people will type: `epochs=1` means `train.epochs=1`.
_SHORTCUTS = {k: "train" for k in DEFAULTS["train"]} | {k: "augment" for k in DEFAULTS["augment"]}


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = parse_override(item)
        if len(keys) == 1 and keys[0] not in cfg and keys[0] in _SHORTCUTS:
            keys = [_SHORTCUTS[keys[0]], keys[0]]
        node = cfg
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise FerlabError(f"unknown config key {'.'.join(keys)!r}")
            node = node[k]
        if keys[-1] not in node and keys[:-1] != ["model"]:  # model options vary by architecture
            raise FerlabError(f"unknown config key {'.'.join(keys)!r}")
        node[keys[-1]] = value
    return cfg


def make_config(path: str | Path | None = None, overrides: list[str] | None = None,
                **sections: Any) -> dict[str, Any]:
    """Defaults <- YAML file <- keyword sections (API) <- ``key=value`` strings (CLI)."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        file_cfg = load_yaml(path)
        _check_known(file_cfg, DEFAULTS, str(path))
        _deep_update(cfg, file_cfg)
    if sections:
        _check_known(sections, DEFAULTS, "arguments")
        _deep_update(cfg, sections)
    apply_overrides(cfg, overrides or [])
    return cfg


def _check_known(over: dict[str, Any], ref: dict[str, Any], where: str, prefix: str = "") -> None:
    for key, value in over.items():
        if prefix == "model.":
            continue  # each architecture takes its own options; the model factory checks them
        if key not in ref:
            raise FerlabError(f"unknown config key {prefix + key!r} in {where}")
        if isinstance(value, dict) and isinstance(ref[key], dict):
            _check_known(value, ref[key], where, prefix + key + ".")
