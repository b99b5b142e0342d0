"""Factories of the build step (as in timm's ``create_optimizer``/``create_scheduler``): the
loss, optimizer and learning-rate schedule a config asks for, each chosen from a table.

The tables' keys are exactly the choices the config schema offers
(:data:`ferlab.config_schema.OPTIMIZERS` / ``SCHEDULERS``); a test builds every one, so a
choice cannot be advertised that fails at the first batch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..constants import NUM_CLASSES
from ..errors import FerlabError
from .loss import WeightedLabelSmoothingCE
from .schedule import LR_KINDS, lr_at
from .targets import Targets, target_class_weights

Params = Iterable[nn.Parameter]


def _adam(t: dict[str, Any], params: Params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=float(t["lr"]), betas=tuple(t["betas"]), weight_decay=float(t["weight_decay"]))


def _adamw(t: dict[str, Any], params: Params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=float(t["lr"]), betas=tuple(t["betas"]),
                             weight_decay=float(t["weight_decay"]))


def _sgd(t: dict[str, Any], params: Params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=float(t["lr"]), momentum=float(t["momentum"]), nesterov=True,
                           weight_decay=float(t["weight_decay"]))


OPTIMIZERS: dict[str, Callable[[dict[str, Any], Params], torch.optim.Optimizer]] = {
    "adam": _adam, "adamw": _adamw, "sgd": _sgd}


def create_optimizer(train_cfg: dict[str, Any], params: Params) -> torch.optim.Optimizer:
    """``train.optimizer`` over ``params`` with ``train.lr``, ``weight_decay``, ``betas``/``momentum``.

    Every parameter is handed over, frozen ones too, so unfreezing needs no new optimizer
    (parameters without gradients are skipped by ``step``).
    """
    name = train_cfg["optimizer"]
    if name not in OPTIMIZERS:
        raise FerlabError(f"unknown optimizer {name!r} ({', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[name](train_cfg, list(params))


def create_criterion(train_cfg: dict[str, Any], train_labels: np.ndarray | None = None, *,
                     targets: Targets | None = None) -> WeightedLabelSmoothingCE:
    """Eq. (15): label smoothing ``train.label_smoothing``; with ``train.class_weights`` the
    Eq. (1) weights of ``train_labels`` (the training split actually used), or of ``targets``
    (:func:`.targets.target_class_weights`: majority-label counts, summed vote shares, ...)."""
    from ..data import class_weights

    weights = None
    if train_cfg["class_weights"]:
        if targets is not None:
            weights = torch.tensor(target_class_weights(targets))
        elif train_labels is None:
            raise ValueError("class weights need the training labels")
        else:
            weights = torch.tensor(class_weights(train_labels))
    return WeightedLabelSmoothingCE(NUM_CLASSES, float(train_cfg["label_smoothing"]), weights)


class LrSchedule:
    """The LR of every batch as a pure function of (epoch, step): see :mod:`.schedule`.

    Stateless, unlike ``torch.optim.lr_scheduler``: nothing to save, so ``--resume`` is exact.
    """

    def __init__(self, cfg: dict[str, Any], steps_per_epoch: int) -> None:
        self.cfg = cfg
        self.steps_per_epoch = max(1, int(steps_per_epoch))

    def lr(self, epoch: int, step: int = 0) -> float:
        return lr_at(self.cfg, epoch, step, self.steps_per_epoch)

    def epoch_lr(self, epoch: int) -> float:
        """The value logged per epoch (warm-up counted in whole epochs)."""
        return lr_at(self.cfg, epoch)

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> float:
        lr = self.lr(epoch, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


def create_scheduler(cfg: dict[str, Any], steps_per_epoch: int) -> LrSchedule:
    kind = cfg["train"]["scheduler"]
    if kind not in LR_KINDS:
        raise FerlabError(f"unknown scheduler {kind!r} ({', '.join(LR_KINDS)})")
    return LrSchedule(cfg, steps_per_epoch)
