"""Run configuration: typed defaults, overridden by a YAML file, then by ``key=value``.

The defaults ARE the thesis recipe (sections 6.1-6.2, Table 6), so ``maintainers/configs/thesis.yaml``
only names the run; every experiment of section 5 is a small YAML delta on top of it.
A config may name a parent with ``base: other.yaml`` (resolved relative to the file).

The schema lives in :mod:`ferlab.research.config_schema`; every layer is checked against it as soon
as it is applied, so a typo, a wrong type or an unknown choice fails at load with the key's
name and where it came from, instead of an hour into a run. The result is a
:class:`~ferlab.research.config_schema.Config`; its ``model_dump()`` is what ``config.json`` and
checkpoint sidecars hold.
"""
from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config_schema import SECTIONS, AugmentConfig, Config, ModelOptionError, TrainConfig
from ..errors import FerlabError

__all__ = ["load_yaml", "make_config", "parse_override", "run_settings", "settings_difference", "validate_config"]


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


# ----------------------------------------------------------------------------- checking

def _key_of(err: Any) -> str:
    ctx_err = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_err, ModelOptionError):
        return f"model.{ctx_err.key}"
    loc = [str(p) for p in err["loc"]]
    return ".".join(loc[:2] if loc and loc[0] in SECTIONS else loc[:1])


def _describe(exc: ValidationError, where: str, blame: dict[str, str] | None) -> str:
    """One line for the first offending key; a union's alternatives are joined with 'or'."""
    errors = exc.errors()
    key = _key_of(errors[0])
    here = f"{where} {blame[key]!r}" if blame and key in blame else where
    model_err = (errors[0].get("ctx") or {}).get("error")
    if errors[0]["type"] == "extra_forbidden":
        return f"unknown config key {key!r} in {here}"
    if isinstance(model_err, ModelOptionError):
        if model_err.unknown:
            return f"unknown config key {key!r} in {here} ({model_err})"
        return f"config key {key!r} in {here}: {model_err}"
    msgs = list(dict.fromkeys(e["msg"] for e in errors if _key_of(e) == key))
    if len(msgs) > 1:  # a union (e.g. bool or 'auto'): "Input should be A or B"
        msgs = [m.split(",")[0].removeprefix("Input should be ") if i else m.split(",")[0]
                for i, m in enumerate(msgs)]
    return f"config key {key!r} in {here}: {' or '.join(msgs)}, got {errors[0]['input']!r}"


def validate_config(cfg: Config | Mapping[str, Any], where: str = "config", *,
                    blame: dict[str, str] | None = None) -> Config:
    """Check a whole config (a :class:`Config` or a plain mapping such as a ``config.json``)
    against the schema; returns a new :class:`Config` that shares nothing with ``cfg``.

    Missing sections or keys take the defaults; ``model.*`` is checked against the options
    of the named architecture in the model factory. A :class:`Config` is checked again because
    its lists and its model section can be changed in place, which pydantic does not see.
    """
    if isinstance(cfg, Config):
        cfg = cfg.model_dump()
    if not isinstance(cfg, Mapping):
        raise FerlabError(f"a config must be a mapping, got {type(cfg).__name__}")
    try:
        return Config.model_validate(copy.deepcopy(dict(cfg)))
    except ValidationError as exc:
        raise FerlabError(_describe(exc, where, blame)) from None


# ----------------------------------------------------------------------------- layers

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
_SHORTCUTS = {k: "train" for k in TrainConfig.model_fields} | {k: "augment" for k in AugmentConfig.model_fields}


def _apply(cfg: dict[str, Any], overrides: list[str]) -> dict[str, str]:
    """Set each ``key=value`` in the plain dict ``cfg`` (in place, unchecked: :func:`make_config`
    checks the result); returns {dotted key: the item that set it} for error messages."""
    blame: dict[str, str] = {}
    for item in overrides:
        keys, value = parse_override(item)
        if len(keys) == 1 and keys[0] not in cfg and keys[0] in _SHORTCUTS:
            keys = [_SHORTCUTS[keys[0]], keys[0]]
        node = cfg
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise FerlabError(f"unknown config key {'.'.join(keys)!r}")
            node = node[k]
        if keys[-1] not in node and keys[:-1] != ["model"]:  # model options are checked per architecture
            raise FerlabError(f"unknown config key {'.'.join(keys)!r}")
        node[keys[-1]] = value
        blame[".".join(keys[:2])] = item
    return blame


def make_config(path: str | Path | None = None, overrides: list[str] | None = None,
                **sections: Any) -> Config:
    """Defaults <- YAML file <- keyword sections (API) <- ``key=value`` strings (CLI).

    Each layer is validated after it is applied, so an error names the file, the arguments or
    the override that caused it.
    """
    cfg = Config()
    if path is not None:
        cfg = validate_config(_deep_update(cfg.model_dump(), load_yaml(path)), str(path))
    if sections:
        cfg = validate_config(_deep_update(cfg.model_dump(), sections), "arguments")
    if overrides:
        layer = cfg.model_dump()
        blame = _apply(layer, list(overrides))
        cfg = validate_config(layer, "override", blame=blame)
    return cfg


# Where the data lies, how it is read and how many CPU threads train on it do not change what a
# run learns, so a run may be resumed (or found finished) with other values of these.
_NOT_RUN_SETTINGS = {"data": ("root", "skip_bad", "ferplus"), "train": ("threads", "device")}


def run_settings(cfg: Config | Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a config (or of a run folder's ``config.json``) that define a run's result,
    in a JSON-comparable form."""
    c = json.loads(json.dumps(cfg.model_dump() if isinstance(cfg, Config) else cfg))
    for section, keys in _NOT_RUN_SETTINGS.items():
        for k in keys:
            c.get(section, {}).pop(k, None)
    return c


def settings_difference(old: Config | Mapping[str, Any], new: Config | Mapping[str, Any]) -> str | None:
    """The first setting in which two configs' runs differ ("train.lr: was 0.002, now 0.001"),
    or None when resuming one with the other continues the same run."""
    a, b = run_settings(old), run_settings(new)
    if a == b:
        return None
    path = ""
    while isinstance(a, dict) and isinstance(b, dict):
        k = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        a, b, path = a.get(k), b.get(k), f"{path}.{k}" if path else k
    return f"{path}: was {a!r}, now {b!r}"
