"""The build step: from a checked config to everything one run needs (as the first half of
torchvision's references/classification/train.py ``main``), in a fixed order.

The order matters for reproducibility: the global RNG is seeded right before the model is
built, so the initial weights are a function of the seed alone, whatever was built before.
The splits live on the device as uint8 (the whole of FER2013 is 80 MB) and batches are
indexed and augmented there, so no DataLoader workers are needed. The training targets
(:mod:`.targets`: an (N, C) distribution and a weight per face, mixed with the teachers'
outputs when ``train.teachers`` names any, see :mod:`.teachers`) are built once here, from FER+
votes read once per run when ``train.targets`` or ``train.select_metric`` needs them, and go to
the device with the labels.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import FerData, FerPlusVotes, FerSplit, load_ferplus, resolve_data, split_votes
from ..models.factory import create_from_config
from .distributed import Dist
from .factory import LrSchedule, create_criterion, create_optimizer, create_scheduler
from .loss import WeightedLabelSmoothingCE
from .targets import NEEDS_VOTES, Targets, build_targets, kept_split
from .teachers import mix_targets, teacher_probs


@dataclass
class Run:
    cfg: dict[str, Any]
    dist: Dist
    train_split: FerSplit
    val_split: FerSplit
    x_train: torch.Tensor  # (N, 48, 48) uint8 on the device
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    criterion: WeightedLabelSmoothingCE
    model: nn.Module  # the module itself: checkpoints, evaluation, freezing
    forward: nn.Module  # what the training step calls: the model, compiled if asked
    optimizer: torch.optim.Optimizer
    schedule: LrSchedule
    amp: bool
    channels_last: bool
    q_train: torch.Tensor | None = None  # (N, C) float32 target distribution per training face
    w_train: torch.Tensor | None = None  # (N,) float32 weight per training face (None = unweighted)
    targets: Targets | None = None
    val_loss_targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None  # (idx, q, w)
    y_val_ferplus: torch.Tensor | None = None  # (N_val,) FER+ majority per val face, -1 = none
    _wrapped: tuple[bool, nn.Module] | None = field(default=None, repr=False)
    _replica: nn.Module | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def mean(self) -> float:
        return float(self.cfg["data"]["mean"])

    @property
    def std(self) -> float:
        return float(self.cfg["data"]["std"])

    @property
    def batch_size(self) -> int:
        return int(self.cfg["train"]["batch_size"])

    @property
    def steps_per_epoch(self) -> int:
        return self.schedule.steps_per_epoch

    def forward_for(self, frozen: bool) -> nn.Module:
        """The training forward, DDP-wrapped for this parameter set (re-wrapped when it changes)."""
        if self._wrapped is None or self._wrapped[0] != frozen:
            self._wrapped = (frozen, self.dist.wrap(self.forward))
        return self._wrapped[1]

    def eval_model(self) -> nn.Module:
        """The model as ``ferlab evaluate`` will load it from the checkpoint: in the default
        memory layout. A channels_last model can round differently in the last bits, which
        could make the sidecar's val accuracy differ from ``ferlab evaluate`` on a tie, so a
        contiguous replica is refreshed with the current weights instead."""
        if not self.channels_last:
            return self.model
        if self._replica is None:
            self._replica = copy.deepcopy(self.model).to(memory_format=torch.contiguous_format)
        self._replica.load_state_dict(self.model.state_dict())
        return self._replica


def _on_device(split: FerSplit, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.ascontiguousarray(split.images)).to(device),
            torch.from_numpy(split.labels).to(device))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches only (BatchNorm needs more than one sample); at least one step."""
    return n // batch_size if n >= batch_size else 1


def init_weights(model: nn.Module, cfg: dict[str, Any], spec: str) -> None:
    """Load a trained ferlab checkpoint's weights into ``model`` (``train.init_from``).

    The checkpoint must be the same architecture and normalisation as ``cfg``: weights trained
    on other pixel statistics, or a model config that merely loads by coincidence, would be a
    silent second recipe, so each mismatch is refused with the key that differs.
    """
    from ..errors import FerlabError
    from ..models import load_checkpoint
    from ..models.hub import resolve_model

    ckpt = load_checkpoint(resolve_model(spec))
    mine = {k: v for k, v in cfg["model"].items() if k != "pretrained"}
    theirs = {k: v for k, v in ckpt.meta["model"].items() if k != "pretrained"}
    for key in sorted(set(mine) & set(theirs)):  # absent = the builder default, checked by strict loading
        if mine.get(key) != theirs.get(key):
            raise FerlabError(f"train.init_from={spec}: model.{key} is {theirs.get(key)!r} there, "
                              f"{mine.get(key)!r} here")
    for key, have in (("mean", ckpt.mean), ("std", ckpt.std)):
        if abs(have - float(cfg["data"][key])) > 1e-9:
            raise FerlabError(f"train.init_from={spec}: data.{key} is {have} there, {cfg['data'][key]} here")
    model.load_state_dict(ckpt.model.state_dict())


def needs_votes(cfg: dict[str, Any]) -> bool:
    t_cfg = cfg["train"]
    return t_cfg["targets"] in NEEDS_VOTES or t_cfg["select_metric"] == "val_ferplus_acc"


def build_run(cfg: dict[str, Any], dist: Dist, data: FerData | None = None,
              votes: FerPlusVotes | None = None) -> Run:
    """Data, targets, loss, model, optimizer and schedule for ``cfg`` on ``dist.device``.

    ``votes``: FER+ votes already loaded for ``data`` (default: read with
    :func:`ferlab.data.load_ferplus` from ``data.ferplus`` or beside the data, only if needed).
    """
    t_cfg, d_cfg = cfg["train"], cfg["data"]
    dev = dist.device
    seed = int(cfg["seed"])
    fer = resolve_data(data if data is not None else d_cfg.get("root"), skip_bad=bool(d_cfg.get("skip_bad")))
    train_split = fer.split("train").subset(d_cfg.get("train_subset"), seed)
    val_split = fer.split("val").subset(d_cfg.get("val_subset"), seed)
    kind, eps = t_cfg["targets"], float(t_cfg["label_smoothing"])
    train_votes = val_votes = None
    if needs_votes(cfg):
        votes = votes if votes is not None else load_ferplus(fer, d_cfg.get("ferplus"))
        train_votes, val_votes = split_votes(train_split, votes), split_votes(val_split, votes)
    targets = build_targets(kind, train_split, train_votes if kind != "fer2013" else None, eps)
    train_split = kept_split(train_split, targets.keep)
    if t_cfg["teachers"]:
        soft = teacher_probs(t_cfg["teachers"], train_split, tta=bool(t_cfg["teacher_tta"]),
                             batch_size=int(t_cfg["eval_batch_size"]), device=dev)
        targets = dataclasses.replace(targets, probs=mix_targets(targets.probs, soft, float(t_cfg["teacher_weight"])))
    x_train, _ = _on_device(train_split, dev)
    y_train = torch.from_numpy(targets.labels).to(dev)
    x_val, y_val = _on_device(val_split, dev)
    criterion = create_criterion(t_cfg, train_split.labels, targets=targets).to(dev)
    weights = None if criterion.weights is None else criterion.weights.cpu().numpy()
    w_train = targets.sample_weights(weights)
    val_loss_targets = None
    if kind != "fer2013":  # val_loss: the training criterion against the val faces' targets of the same rule
        vt = build_targets(kind, val_split, val_votes, eps)
        vw = vt.sample_weights(weights)
        val_loss_targets = (torch.from_numpy(np.flatnonzero(vt.keep)).to(dev), vt.probs.to(dev),
                            None if vw is None else vw.to(dev))
    y_val_ferplus = None if val_votes is None else torch.from_numpy(val_votes.majority()).to(dev)

    torch.manual_seed(seed)
    model = create_from_config(cfg["model"])
    if t_cfg.get("init_from"):
        init_weights(model, cfg, t_cfg["init_from"])
    model = model.to(dev)
    channels_last = t_cfg["channels_last"] in (True, "auto")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer(t_cfg, model.parameters())
    schedule = create_scheduler(cfg, steps_per_epoch(len(x_train), int(t_cfg["batch_size"])))
    forward = torch.compile(model) if t_cfg.get("compile") else model
    return Run(cfg=cfg, dist=dist, train_split=train_split, val_split=val_split, x_train=x_train, y_train=y_train,
               x_val=x_val, y_val=y_val, criterion=criterion, model=model, forward=forward, optimizer=optimizer,
               schedule=schedule, amp=dev.type == "cuda" and t_cfg["amp"] in (True, "auto", "bf16"),
               channels_last=channels_last, q_train=targets.probs.to(dev),
               w_train=None if w_train is None else w_train.to(dev), targets=targets,
               val_loss_targets=val_loss_targets, y_val_ferplus=y_val_ferplus)
