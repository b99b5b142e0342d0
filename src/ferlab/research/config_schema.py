"""The typed schema of a run configuration (pydantic v2): names, types, ranges and choices.

The defaults ARE the thesis recipe (sections 6.1-6.2, Table 6). The choices listed here are
exactly what the trainer implements (``training/optim.py``); a test builds each of them.
``model.*`` depends on the architecture, so it is checked against the options of the
builder that the model factory registered under ``model.name``; it stays a dict (the builder's
keyword arguments), read through :attr:`Config.arch` and :attr:`Config.pretrained`.

A :class:`Config` is what the trainer, the experiments and the factories are handed, read as
attributes (``cfg.train.lr``): a misspelt key is then an error where it is written, not a
``KeyError`` an hour into a run. Assignments are validated too, so a config stays valid when a
caller changes a value after loading it. ``config.json`` and checkpoint sidecars hold
``model_dump()``, the same JSON as ever.
"""
from __future__ import annotations

import copy
import inspect
import os
import typing
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo,
                      field_validator)

from ..constants import MEAN, STD

Optimizer = Literal["adam", "adamw", "sgd"]
Scheduler = Literal["cosine", "step", "none"]
SelectMetric = Literal["val_acc", "val_balanced_acc", "val_loss", "val_ferplus_acc"]
# What the loss is trained towards (training/targets.py): FER2013's own label (the thesis), or
# FER+'s ten votes per face (majority label, vote distribution, or vote-informed smoothing).
Targets = Literal["fer2013", "ferplus-majority", "ferplus-soft", "ferplus-smoothing"]
OPTIMIZERS: tuple[str, ...] = typing.get_args(Optimizer)
SCHEDULERS: tuple[str, ...] = typing.get_args(Scheduler)
SELECT_METRICS: tuple[str, ...] = typing.get_args(SelectMetric)
TARGETS: tuple[str, ...] = typing.get_args(Targets)

Pos = Annotated[float, Field(gt=0)]
NonNeg = Annotated[float, Field(ge=0)]
Prob = Annotated[float, Field(ge=0, le=1)]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Pair = Annotated[list[float], Field(min_length=2, max_length=2)]
PosPair = Annotated[list[Pos], Field(min_length=2, max_length=2)]

# -- model.* -----------------------------------------------------------------------------------

MODEL_DEFAULTS: dict[str, Any] = {
    "name": "resnet18",
    "pretrained": "imagenet",  # imagenet | none | path to a torchvision-format state dict (.pth/.safetensors)
    "head": [256],  # hidden widths of the classification head; [] = plain fc 512->7
    "dropout": [0.5, 0.25],  # before the first / before every later Linear
    "in_chans": 1,  # 1 = thesis grayscale stem; 3 = grey replicated to RGB
    "stem": "thesis",  # thesis: 3x3 stride-1 conv, no max-pool | original: 7x7/2 + max-pool
}
# Keys every architecture's builder accepts (the defaults carry them whatever model.name is).
_COMMON: dict[str, Any] = {
    "pretrained": str | None,
    "head": list[PosInt],
    "dropout": Annotated[list[Prob], Field(max_length=2)],
    "in_chans": PosInt,
    "stem": Literal["thesis", "original"],
}


class ModelOptionError(ValueError):
    """A bad ``model.<key>``; carries the key so the message can name it."""

    def __init__(self, key: str, msg: str, *, unknown: bool = False) -> None:
        super().__init__(msg)
        self.key = key
        self.unknown = unknown


@lru_cache(maxsize=None)
def _builder_options(name: str) -> dict[str, Any]:
    """{option: type} of the factory's builder for ``name`` (``Any`` where it does not say)."""
    from .nets import factory

    builder = factory._REGISTRY[name]  # noqa: SLF001 - the registry is the source of truth
    try:
        hints = typing.get_type_hints(builder, include_extras=True)
    except Exception:  # an annotation that does not evaluate only costs the type check
        hints = {}
    params = inspect.signature(builder).parameters.values()
    own = {p.name: hints.get(p.name, Any) for p in params
           if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "pretrained"}
    return {"name": str} | _COMMON | {k: v for k, v in own.items() if k not in _COMMON}


def _check_model(section: dict[str, Any]) -> dict[str, Any]:
    from .nets import list_models

    name = section.get("name")
    if not isinstance(name, str) or name not in list_models():
        raise ModelOptionError("name", f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    allowed = _builder_options(name)
    out = {}
    for key, value in section.items():
        if key not in allowed:
            raise ModelOptionError(key, f"{name} takes {', '.join(allowed)}", unknown=True)
        kind = allowed[key]
        if kind is Any:
            out[key] = value
            continue
        try:
            out[key] = TypeAdapter(kind).validate_python(value)
        except ValidationError as exc:
            raise ModelOptionError(key, f"{exc.errors()[0]['msg']}, got {value!r}") from None
    return out


ModelSection = Annotated[dict[str, Any], AfterValidator(_check_model)]

# -- the other sections ------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    root: str | None = None
    mean: float = MEAN
    std: Pos = STD
    train_subset: PosInt | None = None  # stratified subset of the training split (smoke runs)
    val_subset: PosInt | None = None
    skip_bad: bool = False
    # FER+ votes (folder or votes file); None = a ferplus/ folder beside the FER2013 data. Read
    # only when train.targets or train.select_metric needs them.
    ferplus: str | None = None

    @field_validator("root", "ferplus", mode="before")
    @classmethod
    def _path_to_str(cls, v: Any) -> Any:
        return os.fspath(v) if isinstance(v, os.PathLike) else (None if v == "" else v)


class TrainConfig(_Section):
    epochs: PosInt = 50
    batch_size: PosInt = 64
    optimizer: Optimizer = "adam"
    lr: Pos = 2.0e-4
    weight_decay: NonNeg = 1.0e-4
    momentum: NonNeg = 0.9  # sgd only
    betas: Pair = [0.9, 0.999]
    scheduler: Scheduler = "cosine"
    eta_min: NonNeg = 1.0e-6
    step_size: PosInt = 10  # step scheduler (Exp. 11)
    gamma: Pos = 0.5
    warmup_epochs: NonNeg = 0.0
    freeze_epochs: NonNegInt = 5  # backbone frozen for the first N epochs (Exp. 4)
    early_stopping: NonNegInt | None = 10  # patience in epochs on the selection metric; 0 = off
    select_metric: SelectMetric = "val_acc"  # checkpoint selection on PublicTest, never test
    # val_acc is FER2013-label accuracy whatever the targets; val_ferplus_acc is the accuracy
    # against the FER+ majority over PublicTest faces that have a 7-class majority.
    targets: Targets = "fer2013"  # see ferlab.research.training.targets
    grad_clip: NonNeg | None = 1.0  # max global L2 norm; 0 = off
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1  # Eq. 13-15
    class_weights: bool = True  # Eq. 1
    eval_batch_size: PosInt = 512
    # auto = bf16 autocast on CUDA only: CPUs without bf16 units run it many times slower than fp32
    amp: bool | Literal["auto", "bf16"] = "auto"
    # auto = on, on every device (as the trainer has always done; evaluation uses the layout
    # that a checkpoint loads with, so the choice never changes reported numbers)
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False
    threads: PosInt | None = None  # torch CPU threads; None = torch default
    # Start from a trained ferlab checkpoint (shipped name, .safetensors or run folder) of the
    # same architecture instead of random/ImageNet weights: fine-tuning on other targets (FER+).
    init_from: str | None = None
    # Distillation (training/teachers.py): trained models whose mean softmax on each training
    # face is mixed into the target with weight teacher_weight; [] = off (the thesis).
    teachers: list[str] = Field(default_factory=list)
    teacher_weight: Annotated[float, Field(gt=0, le=1)] = 0.5
    teacher_tta: bool = True  # teachers' outputs averaged with the mirrored face's


    @field_validator("label_smoothing")
    @classmethod
    def _soft_targets_are_their_own_smoothing(cls, v: float, info: ValidationInfo) -> float:
        # The vote distribution already spreads the mass; smoothing it again would be a second,
        # undocumented recipe, so the combination is refused instead of silently ignored.
        if info.data.get("targets") == "ferplus-soft" and v > 0:
            raise ValueError("train.targets=ferplus-soft trains on the vote distribution itself; "
                             "set train.label_smoothing=0")
        return v


class AugmentConfig(_Section):
    hflip: Prob = 0.5
    rotation: NonNeg = 10.0  # degrees, uniform in [-r, r]
    translate: Prob = 0.1  # fraction of the side, uniform in [-t, t]
    scale: PosPair = [1.0, 1.0]  # random zoom range (1,1 = off, as in the thesis)
    erasing_p: Prob = 0.3  # Eq. 21
    erasing_scale: Annotated[list[Prob], Field(min_length=2, max_length=2)] = [0.02, 0.15]
    erasing_ratio: PosPair = [0.3, 3.3]
    erasing_value: Literal["noise"] | float = "noise"  # noise = U(0,1) on the [0,1] pixel scale, or a float


class Config(_Section):
    name: str = "thesis"
    seed: int = 42
    model: ModelSection = Field(default_factory=lambda: copy.deepcopy(MODEL_DEFAULTS))
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @property
    def arch(self) -> str:
        """``model.name``: the architecture, as registered in the model factory."""
        return str(self.model["name"])

    @property
    def pretrained(self) -> str:
        """``model.pretrained``: ``imagenet``, a weights path, or ``none`` (also when unset or null)."""
        return str(self.model.get("pretrained") or "none")


SECTIONS = ("model", "data", "train", "augment")
