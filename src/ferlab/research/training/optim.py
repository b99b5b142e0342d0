"""Factories of the build step (as in timm's ``create_optimizer``/``create_scheduler``): the
optimizer and learning-rate schedule a config asks for, each chosen from a table. (The loss
has no choices: :func:`.loss.soft_cross_entropy` towards the targets of :mod:`.targets`.)

The tables' keys are exactly the choices the config schema offers
(:data:`ferlab.research.config_schema.OPTIMIZERS` / ``SCHEDULERS``); a test builds every one, so a
choice cannot be advertised that fails at the first batch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..config_schema import TrainConfig
from ...errors import FerlabError
from .schedule import LR_KINDS, lr_at

Params = Iterable[nn.Parameter]


def _adam(t: TrainConfig, params: Params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)


def _adamw(t: TrainConfig, params: Params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)


def _sgd(t: TrainConfig, params: Params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=True, weight_decay=t.weight_decay)


OPTIMIZERS: dict[str, Callable[[TrainConfig, Params], torch.optim.Optimizer]] = {
    "adam": _adam, "adamw": _adamw, "sgd": _sgd}


def create_optimizer(train_cfg: TrainConfig, params: Params) -> torch.optim.Optimizer:
    """``train.optimizer`` over ``params`` with ``train.lr``, ``weight_decay``, ``betas``/``momentum``.

    Every parameter is handed over, frozen ones too, so unfreezing needs no new optimizer
    (parameters without gradients are skipped by ``step``).
    """
    name = train_cfg.optimizer
    if name not in OPTIMIZERS:
        raise FerlabError(f"unknown optimizer {name!r} ({', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[name](train_cfg, list(params))


class LrSchedule:
    """The LR of every batch as a pure function of (epoch, step): see :mod:`.schedule`.

    Stateless, unlike ``torch.optim.lr_scheduler``: nothing to save, so ``--resume`` is exact.
    """

    def __init__(self, train_cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.train_cfg = train_cfg
        self.steps_per_epoch = max(1, int(steps_per_epoch))

    def lr(self, epoch: int, step: int = 0) -> float:
        return lr_at(self.train_cfg, epoch, step, self.steps_per_epoch)

    def epoch_lr(self, epoch: int) -> float:
        """The value logged per epoch (warm-up counted in whole epochs)."""
        return lr_at(self.train_cfg, epoch)

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> float:
        lr = self.lr(epoch, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


def create_scheduler(train_cfg: TrainConfig, steps_per_epoch: int) -> LrSchedule:
    kind = train_cfg.scheduler
    if kind not in LR_KINDS:
        raise FerlabError(f"unknown scheduler {kind!r} ({', '.join(LR_KINDS)})")
    return LrSchedule(train_cfg, steps_per_epoch)
