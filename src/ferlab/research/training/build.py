"""The build step: from a checked config to everything one run needs (as the first half of
torchvision's references/classification/train.py ``main``), in a fixed order.

The order matters for reproducibility: the global RNG is seeded right before the model is
built, so the initial weights are a function of the seed alone, whatever was built before.
The splits live on the device as uint8 (the whole of FER2013 is 80 MB) and batches are
indexed and augmented there, so no DataLoader workers are needed. The targets of both splits
(:mod:`.targets`: an (N, C) distribution, label smoothing included, and a weight per face; the
training targets mixed with the teachers' outputs when ``train.teachers`` names any, see
:mod:`.teachers`) are built once here, from FER+ votes read once per run when ``train.targets``
or ``train.select_metric`` needs them, and go to the device with the labels. The training and
the validation loss are then the same :func:`.loss.soft_cross_entropy` towards these targets.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..config_schema import Config
from ..data import FerData, FerPlusVotes, FerSplit, load_ferplus, resolve_data, split_votes
from ..nets.factory import create_from_config
from .distributed import Dist
from .optim import LrSchedule, create_optimizer, create_scheduler
from .targets import NEEDS_VOTES, Targets, build_targets, kept_split, target_class_weights
from .teachers import mix_targets, teacher_probs

LossTargets = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # (face indices, q, w)


@dataclass
class Run:
    cfg: Config
    dist: Dist
    train_split: FerSplit
    val_split: FerSplit
    x_train: torch.Tensor  # (N, 48, 48) uint8 on the device
    y_train: torch.Tensor  # (N,) hard label of each face's target (train accuracy)
    q_train: torch.Tensor  # (N, C) float32 target distribution per training face
    w_train: torch.Tensor | None  # (N,) float32 weight per training face (None = unweighted)
    x_val: torch.Tensor
    y_val: torch.Tensor  # FER2013's labels: every accuracy is against them
    val_loss_targets: LossTargets  # what val_loss is computed towards: the same rule's targets
    model: nn.Module  # the module itself: checkpoints, evaluation, freezing
    forward: nn.Module  # what the training step calls: the model, compiled if asked
    optimizer: torch.optim.Optimizer
    schedule: LrSchedule
    amp: bool
    channels_last: bool
    targets: Targets  # the training targets (rule, kept faces, counts), for the start message
    class_weights: np.ndarray | None = None  # Eq. (1) weights the per-face weights came from
    y_val_ferplus: torch.Tensor | None = None  # (N_val,) FER+ majority per val face, -1 = none
    _wrapped: tuple[bool, nn.Module] | None = field(default=None, repr=False)
    _replica: nn.Module | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def mean(self) -> float:
        return self.cfg.data.mean

    @property
    def std(self) -> float:
        return self.cfg.data.std

    @property
    def batch_size(self) -> int:
        return self.cfg.train.batch_size

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


def init_weights(model: nn.Module, cfg: Config, spec: str) -> None:
    """Load a trained ferlab checkpoint's weights into ``model`` (``train.init_from``).

    The checkpoint must be the same architecture and normalisation as ``cfg``: weights trained
    on other pixel statistics, or a model config that merely loads by coincidence, would be a
    silent second recipe, so each mismatch is refused with the key that differs.
    """
    from ...errors import FerlabError
    from ..nets import load_checkpoint
    from ...models.hub import resolve_model

    ckpt = load_checkpoint(resolve_model(spec))
    mine = {k: v for k, v in cfg.model.items() if k != "pretrained"}
    theirs = {k: v for k, v in ckpt.meta["model"].items() if k != "pretrained"}
    for key in sorted(set(mine) & set(theirs)):  # absent = the builder default, checked by strict loading
        if mine.get(key) != theirs.get(key):
            raise FerlabError(f"train.init_from={spec}: model.{key} is {theirs.get(key)!r} there, "
                              f"{mine.get(key)!r} here")
    for key, have in (("mean", ckpt.mean), ("std", ckpt.std)):
        want = getattr(cfg.data, key)
        if abs(have - want) > 1e-9:
            raise FerlabError(f"train.init_from={spec}: data.{key} is {have} there, {want} here")
    model.load_state_dict(ckpt.model.state_dict())


def needs_votes(cfg: Config) -> bool:
    return cfg.train.targets in NEEDS_VOTES or cfg.train.select_metric == "val_ferplus_acc"


def _loss_targets(t: Targets, class_weights: np.ndarray | None, device: torch.device) -> LossTargets:
    w = t.sample_weights(class_weights)
    return (torch.from_numpy(np.flatnonzero(t.keep)).to(device), t.probs.to(device),
            None if w is None else w.to(device))


def build_run(cfg: Config, dist: Dist, data: FerData | None = None,
              votes: FerPlusVotes | None = None) -> Run:
    """Data, targets, model, optimizer and schedule for ``cfg`` on ``dist.device``.

    ``votes``: FER+ votes already loaded for ``data`` (default: read with
    :func:`ferlab.research.data.load_ferplus` from ``data.ferplus`` or beside the data, only if needed).
    """
    t_cfg, d_cfg = cfg.train, cfg.data
    dev = dist.device
    seed = cfg.seed
    fer = resolve_data(data if data is not None else d_cfg.root, skip_bad=d_cfg.skip_bad)
    train_split = fer.split("train").subset(d_cfg.train_subset, seed)
    val_split = fer.split("val").subset(d_cfg.val_subset, seed)
    kind, eps = t_cfg.targets, t_cfg.label_smoothing
    train_votes = val_votes = None
    if needs_votes(cfg):
        votes = votes if votes is not None else load_ferplus(fer, d_cfg.ferplus)
        train_votes, val_votes = split_votes(train_split, votes), split_votes(val_split, votes)
    rule_votes = kind != "fer2013"
    targets = build_targets(kind, train_split, train_votes if rule_votes else None, eps)
    train_split = kept_split(train_split, targets.keep)
    if t_cfg.teachers:
        soft = teacher_probs(t_cfg.teachers, train_split, tta=t_cfg.teacher_tta, batch_size=t_cfg.eval_batch_size,
                             device=dev)
        targets = dataclasses.replace(targets, probs=mix_targets(targets.probs, soft, t_cfg.teacher_weight))
    # val_loss: the same rule's targets of the val faces (faces the rule drops are left out)
    val_targets = build_targets(kind, val_split, val_votes if rule_votes else None, eps)
    class_weights = target_class_weights(targets) if t_cfg.class_weights else None
    _, q_train, w_train = _loss_targets(targets, class_weights, dev)
    x_train, _ = _on_device(train_split, dev)
    y_train = torch.from_numpy(targets.labels).to(dev)
    x_val, y_val = _on_device(val_split, dev)
    y_val_ferplus = None if val_votes is None else torch.from_numpy(val_votes.majority()).to(dev)

    torch.manual_seed(seed)
    model = create_from_config(cfg.model)
    if t_cfg.init_from:
        init_weights(model, cfg, t_cfg.init_from)
    model = model.to(dev)
    channels_last = t_cfg.channels_last in (True, "auto")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer(t_cfg, model.parameters())
    schedule = create_scheduler(t_cfg, steps_per_epoch(len(x_train), t_cfg.batch_size))
    forward = torch.compile(model) if t_cfg.compile else model
    return Run(cfg=cfg, dist=dist, train_split=train_split, val_split=val_split, x_train=x_train, y_train=y_train,
               q_train=q_train, w_train=w_train, x_val=x_val, y_val=y_val,
               val_loss_targets=_loss_targets(val_targets, class_weights, dev), model=model, forward=forward,
               optimizer=optimizer, schedule=schedule, amp=dev.type == "cuda" and t_cfg.amp in (True, "auto", "bf16"),
               channels_last=channels_last, targets=targets, class_weights=class_weights, y_val_ferplus=y_val_ferplus)
