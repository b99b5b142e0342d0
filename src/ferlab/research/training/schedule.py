"""Learning rate as a pure function of training progress (Eq. 19 and Exp. 11).

A pure function, rather than a stateful ``lr_scheduler`` object, makes resuming exact for
free: the LR of epoch t never depends on what happened before the restart.
"""
from __future__ import annotations

import math

from ..config_schema import TrainConfig

LR_KINDS = ("cosine", "step", "none")


def lr_at(t: TrainConfig, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """LR for batch ``step`` of 0-based ``epoch`` under the ``train`` section ``t``; cosine is
    per epoch as in Eq. (19)."""
    lr_max, epochs = t.lr, t.epochs
    kind = t.scheduler
    if kind == "cosine":
        lr = t.eta_min + 0.5 * (lr_max - t.eta_min) * (1 + math.cos(math.pi * epoch / epochs))
    elif kind == "step":
        lr = lr_max * t.gamma ** (epoch // t.step_size)
    elif kind == "none":
        lr = lr_max
    else:
        raise ValueError(f"unknown scheduler {kind!r} ({', '.join(LR_KINDS)})")
    warm = t.warmup_epochs
    progress = epoch + step / max(steps_per_epoch, 1)
    if warm > 0 and progress < warm:
        # linear ramp ending at the peak; capped, so a per-epoch value (steps_per_epoch=1) of a
        # fractional warm-up never reads above the peak
        lr *= min(1.0, (progress + 1.0 / max(steps_per_epoch, 1)) / warm)
    return lr
