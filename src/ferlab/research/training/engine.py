"""One training step, one epoch, and the one evaluation (as torchvision's
``train_one_epoch``/``evaluate``).

Every epoch is a pure function of (seed, epoch, weights, optimizer state): its data order,
augmentation and dropout come from generators seeded with (seed, epoch), so ``--resume``
reproduces an uninterrupted run exactly without saving RNG states.

The backbone is frozen (``requires_grad=False`` and its BatchNorm in eval mode, so its
ImageNet statistics are not overwritten either) for the first ``freeze_epochs`` epochs.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config_schema import AugmentConfig
from ...constants import NUM_CLASSES
from ..evaluation.predict import predict_logits, probs_from_logits
from ...inference.preprocess import standardise, to_unit
from .augment import augment_batch
from .build import LossTargets, Run
from .loss import soft_cross_entropy


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return
    for p in backbone.parameters():
        p.requires_grad_(not frozen)


def set_train_mode(model: nn.Module, frozen: bool) -> None:
    model.train()
    if frozen and getattr(model, "backbone", None) is not None:
        model.backbone.eval()  # keep pretrained BN statistics while the backbone is frozen


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(epoch_seed(seed, epoch))
    return g


def train_step(forward: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer, x_u8: torch.Tensor,
               targets: torch.Tensor, weights: torch.Tensor | None, *, augment: AugmentConfig,
               generator: torch.Generator, mean: float, std: float, amp: bool = False, channels_last: bool = False,
               grad_clip: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment on the [0, 1] scale (Eq. 21), normalise (Eq. 27), forward, Eq. 15 loss towards
    the (B, C) ``targets`` with per-face ``weights`` (:mod:`.targets`), backward, clip, step.
    Returns (loss, logits), both detached."""
    x = standardise(augment_batch(to_unit(x_u8.unsqueeze(1)), augment, generator), mean, std)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = forward(x)
    loss = soft_cross_entropy(logits, targets, weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    return loss.detach(), logits.detach()


def train_one_epoch(run: Run, epoch: int, *, progress: bool = False) -> dict[str, Any]:
    """One pass over the training split in the (seed, epoch) order; loss/accuracy on the
    augmented batches this rank saw (accuracy against the hard label of the targets: FER2013's,
    or the FER+ majority), and the seconds it took."""
    from tqdm.auto import tqdm

    cfg, dev, dist = run.cfg, run.device, run.dist
    seed, bs = cfg.seed, run.batch_size
    frozen = epoch < cfg.train.freeze_epochs
    set_backbone_frozen(run.model, frozen)
    forward = run.forward_for(frozen)
    set_train_mode(run.model, frozen)
    g = epoch_generator(seed, epoch, dev)
    torch.manual_seed(epoch_seed(seed, epoch))  # dropout
    perm = torch.randperm(len(run.x_train), generator=g, device=dev)
    local_bs = max(1, bs // dist.world)
    grad_clip = cfg.train.grad_clip or 0.0
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    bar = tqdm(range(run.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
               disable=not (progress and dist.main))
    for step in bar:
        lr = run.schedule.apply(run.optimizer, epoch, step)
        idx = perm[step * bs:(step + 1) * bs][dist.rank * local_bs:(dist.rank + 1) * local_bs]
        y = run.y_train[idx]
        weight = None if run.w_train is None else run.w_train[idx]
        loss, logits = train_step(forward, run.model, run.optimizer, run.x_train[idx], run.q_train[idx], weight,
                                  augment=cfg.augment, generator=g, mean=run.mean, std=run.std, amp=run.amp,
                                  channels_last=run.channels_last, grad_clip=grad_clip)
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if progress and dist.main and step % 20 == 0:
            bar.set_postfix(loss=f"{float(loss):.3f}", lr=f"{lr:.2e}")
    bar.close()
    return {"frozen": frozen, "train_loss": float(loss_sum) / max(seen, 1), "train_acc": float(correct) / max(seen, 1),
            "seen": seen, "seconds": time.perf_counter() - t0}


def evaluate(model: nn.Module, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
             mean: float, std: float, *, loss_targets: LossTargets, batch_size: int = 512, amp: bool = False,
             channels_last: bool = False, ferplus_labels: torch.Tensor | None = None) -> dict[str, float]:
    """Loss, accuracy and balanced accuracy of one split, no augmentation.

    The logits come from :func:`ferlab.research.evaluation.predict.predict_logits` and the predictions
    from the same float64 softmax as ``ferlab evaluate``, so with the defaults (fp32) the
    accuracy equals what ``ferlab evaluate`` reports for the saved checkpoint.
    Accuracies are always against ``labels`` (FER2013's). The loss is the training loss towards
    ``loss_targets`` = (face indices, targets, weights): the training rule's targets of these
    faces (:func:`.build.build_run`). ``ferplus_labels`` (FER+ majority, -1 = none) adds
    ``ferplus_acc`` over the faces that have one.
    """
    device = images.device if isinstance(images, torch.Tensor) else next(model.parameters()).device
    y = torch.as_tensor(labels, device=device)
    logits = predict_logits(model, images, mean, std, batch_size=batch_size, device=device, amp=amp,
                            channels_last=channels_last)
    pred = probs_from_logits(logits).argmax(1)
    hit = pred == y
    recall = [float(hit[y == c].double().mean()) if bool((y == c).any()) else float("nan")
              for c in range(NUM_CLASSES)]
    idx, q, w = loss_targets
    loss = float(soft_cross_entropy(logits[idx], q, w)) if len(idx) else float("nan")
    out = {"loss": loss, "acc": int(hit.sum()) / len(y), "balanced_acc": float(np.nanmean(recall))}
    if ferplus_labels is not None:
        fl = torch.as_tensor(ferplus_labels, device=device)
        has = fl >= 0
        out["ferplus_acc"] = int((pred[has] == fl[has]).sum()) / max(int(has.sum()), 1)
    return out
