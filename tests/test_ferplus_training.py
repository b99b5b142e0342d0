"""Training targets from FER+'s votes (``train.targets``): the loss towards the targets gives
exactly the thesis's Eq. 15 for ``fer2013``, the vote-informed smoothing and the class weights
match hand computations, faces without votes are dropped as documented, and every target
trains on a small real-data subset with FER+ selection on PublicTest."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL_CFG
from ferlab.research.config import make_config
from ferlab.research.config_schema import TARGETS, Config
from ferlab.research.data.dataset import FerSplit
from ferlab.research.data.ferplus import FerPlusVotes
from ferlab.errors import FerlabError
from ferlab.research.training.loss import smoothed_targets, soft_cross_entropy, vote_smoothed_targets
from ferlab.research.training.targets import build_targets, kept_split, soft_class_weights, target_class_weights

# ----------------------------------------------------------------------------- the loss


def test_loss_towards_eq13_targets_is_eq15_by_hand() -> None:
    """The hand example of test_training (B=2, C=3, eps=0.1, w=(1,2,3) -> 1.9267214) through the
    one path the trainer uses: (B, C) targets and a weight per face."""
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2])
    w = torch.tensor([1.0, 2.0, 3.0])
    q = smoothed_targets(labels, 3, 0.1)
    assert float(soft_cross_entropy(logits, q, w[labels])) == pytest.approx(1.9267214, abs=1e-6)
    # weighted by sum_c q_c w_c (the soft targets' rule, Targets.sample_weights) instead of w_y
    implied = (1 * 0.9 + 2 * 0.05 + 3 * 0.05, 1 * 0.05 + 2 * 0.05 + 3 * 0.9)
    per_face = (0.5576059, 1.0986123)
    assert float(soft_cross_entropy(logits, q, q @ w)) == pytest.approx(
        sum(a * b for a, b in zip(implied, per_face)) / 2, abs=1e-6)


def test_fer2013_targets_and_weights_give_exactly_eq15() -> None:
    """``build_targets('fer2013')`` and ``Targets.sample_weights`` (what the build trains and
    validates towards) are Eq. (13) of the labels and the labels' class weights, bit for bit,
    and the loss is Eq. (15) as written out in float64."""
    g = torch.Generator().manual_seed(3)
    logits, labels = torch.randn(64, 7, generator=g), torch.randint(0, 7, (64,), generator=g)
    w = torch.rand(7, generator=g, dtype=torch.float64) + 0.5
    split = FerSplit("train", np.zeros((64, 48, 48), np.uint8), labels.numpy())
    t = build_targets("fer2013", split, None, 0.1)
    assert torch.equal(t.probs, smoothed_targets(labels, 7, 0.1))
    logp = torch.log_softmax(logits.double(), dim=1)
    q64 = torch.full((64, 7), 0.1 / 6, dtype=torch.float64).scatter_(1, labels[:, None], 0.9)
    for weights in (None, w):
        sw = t.sample_weights(None if weights is None else weights.numpy())
        ww = torch.ones(64, dtype=torch.float64) if weights is None else weights[labels]
        assert (sw is None) == (weights is None)
        if weights is not None:
            assert torch.equal(sw, weights.float()[labels])
        eq15 = -(ww * (q64 * logp).sum(1)).mean()
        assert float(soft_cross_entropy(logits, t.probs, sw)) == pytest.approx(float(eq15), rel=1e-6)


def test_vote_informed_smoothing_by_hand() -> None:
    """1-eps stays on the label; eps goes to the other classes in proportion to their votes."""
    labels = torch.tensor([0, 1, 2, 0])
    votes = torch.tensor([[6, 3, 1, 0],  # others 3:1:0 -> 0.075, 0.025, 0
                          [0, 10, 0, 0],  # all votes on the label: uniform eps/3
                          [0, 0, 0, 0],  # no votes: uniform
                          [2, 0, 0, 8]])  # everyone else says class 3 -> all of eps there
    q = vote_smoothed_targets(labels, votes, 0.1)
    expected = torch.tensor([[0.9, 0.075, 0.025, 0.0],
                             [0.1 / 3, 0.9, 0.1 / 3, 0.1 / 3],
                             [0.1 / 3, 0.1 / 3, 0.9, 0.1 / 3],
                             [0.9, 0.0, 0.0, 0.1]])
    assert torch.allclose(q, expected, atol=1e-7)
    assert torch.allclose(q.sum(1), torch.ones(4))
    # the loss of face 1 of the hand example with votes (5, 0, 5): q = (0.9, 0, 0.1)
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    qv = vote_smoothed_targets(torch.tensor([0]), torch.tensor([[5, 0, 5]]), 0.1)
    loss = soft_cross_entropy(logits, qv)
    assert float(loss) == pytest.approx(0.9 * 0.4076059 + 0.1 * 2.4076059, abs=1e-6)


# ----------------------------------------------------------------------------- targets and weights

def _votes(rows: list[list[int]], has: list[bool]) -> FerPlusVotes:
    """rows: 7 class votes (CLASS_NAMES order) + contempt, unknown, NF."""
    a = np.array(rows, dtype=np.int64)
    names = [f"row{i}" for i in range(len(rows))]
    return FerPlusVotes(names, a[:, :7], a[:, 7], a[:, 8], a[:, 9], np.array(has))


# CLASS_NAMES = angry, disgust, fear, happy, neutral, sad, surprise
VOTES = _votes([[0, 0, 0, 10, 0, 0, 0, 0, 0, 0],  # happy 10
                [4, 0, 0, 0, 6, 0, 0, 0, 0, 0],  # neutral 6, angry 4
                [0, 0, 0, 0, 0, 0, 0, 0, 3, 7],  # NF: no 7-class vote at all
                [0, 0, 2, 0, 0, 0, 0, 0, 8, 0],  # unknown wins: no 7-class majority, but 2 fear votes
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],  # no FER+ image
               [True, True, True, True, False])
SPLIT = FerSplit("train", np.zeros((5, 48, 48), np.uint8), np.array([3, 0, 4, 2, 5]), VOTES.names)


def test_majority_targets_drop_faces_without_a_7class_majority() -> None:
    t = build_targets("ferplus-majority", SPLIT, VOTES, 0.1)
    assert t.keep.tolist() == [True, True, False, False, False] and t.dropped == 3
    assert t.labels.tolist() == [3, 4]  # happy, neutral (not FER2013's angry)
    assert torch.allclose(t.probs, smoothed_targets(torch.tensor([3, 4]), 7, 0.1))
    assert kept_split(SPLIT, t.keep).labels.tolist() == [3, 0]  # images/labels follow the kept rows


def test_soft_targets_are_the_vote_distribution_and_weight_by_soft_counts() -> None:
    t = build_targets("ferplus-soft", SPLIT, VOTES, 0.0)
    assert t.keep.tolist() == [True, True, False, True, False]
    assert t.probs[1].tolist() == pytest.approx([0.4, 0, 0, 0, 0.6, 0, 0])
    assert t.probs[2].tolist() == pytest.approx([0, 0, 1.0, 0, 0, 0, 0])  # 2 fear votes of 2 emotion votes
    assert t.soft_counts.tolist() == pytest.approx([0.4, 0, 1.0, 1.0, 0.6, 0, 0])
    with pytest.raises(FerlabError, match="disgust"):  # a class no face votes for has no Eq. 1 weight
        target_class_weights(t)
    w = soft_class_weights(np.array([1.0, 3.0]))  # N = 4, C = 2: w = 4 / (2 * N_c)
    assert w.tolist() == pytest.approx([2.0, 2 / 3])
    sw = t.sample_weights(np.arange(1.0, 8.0))  # sum_c q_c w_c
    assert sw.tolist() == pytest.approx([4.0, 0.4 * 1 + 0.6 * 5, 3.0])


def test_fer2013_and_smoothing_targets_keep_every_face_and_fer2013_labels() -> None:
    base = build_targets("fer2013", SPLIT, None, 0.1)
    assert torch.equal(base.probs, smoothed_targets(torch.from_numpy(SPLIT.labels), 7, 0.1))
    eight = FerSplit("train", np.zeros((8, 48, 48), np.uint8), np.array([0, 0, 1, 2, 3, 4, 5, 6]))
    w = target_class_weights(build_targets("fer2013", eight, None, 0.1))  # Eq. 1: N / (C N_c), N = 8
    assert w.tolist() == pytest.approx([8 / 14] + [8 / 7] * 6)
    vs = build_targets("ferplus-smoothing", SPLIT, VOTES, 0.1)
    assert vs.keep.all() and vs.labels.tolist() == SPLIT.labels.tolist()
    assert vs.probs[1].tolist() == pytest.approx([0.9, 0, 0, 0, 0.1, 0, 0])  # angry label, the other 6 say neutral
    assert vs.probs[0].tolist() == pytest.approx([0.1 / 6] * 3 + [0.9] + [0.1 / 6] * 3)  # unanimous: uniform
    assert vs.probs[4].tolist() == pytest.approx([0.1 / 6] * 5 + [0.9] + [0.1 / 6])  # no votes: uniform
    assert vs.probs[3].tolist() == pytest.approx([0.1 / 6] * 2 + [0.9] + [0.1 / 6] * 4)  # fear label, fear votes


def test_soft_targets_refuse_extra_smoothing_and_unknown_targets() -> None:
    assert set(TARGETS) == {"fer2013", "ferplus-majority", "ferplus-soft", "ferplus-smoothing"}
    with pytest.raises(FerlabError, match="label_smoothing=0"):
        make_config(overrides=["targets=ferplus-soft"])
    assert make_config(overrides=["targets=ferplus-soft", "label_smoothing=0"]).train.targets == "ferplus-soft"
    with pytest.raises(FerlabError, match="targets"):
        make_config(overrides=["train.targets=ferplus"])
    assert make_config().train.targets == "fer2013"


# ----------------------------------------------------------------------------- real data

def _cfg(**train: Any) -> Config:
    cfg = make_config(data={"train_subset": 700, "val_subset": 300},
                      train={"epochs": 2, "batch_size": 64, "freeze_epochs": 0, "early_stopping": 0, "threads": 1,
                             "lr": 1e-3} | train)
    cfg.model = dict(TINY_MODEL_CFG)
    return cfg


def test_build_loads_votes_once_and_puts_targets_on_the_device(fer_data: Any, ferplus_dir: Path) -> None:
    from ferlab.research.data import load_ferplus, split_votes
    from ferlab.research.training.build import build_run
    from ferlab.research.training.distributed import Dist

    votes = load_ferplus(fer_data)
    for kind in TARGETS:
        cfg = _cfg(targets=kind, label_smoothing=0.0 if kind == "ferplus-soft" else 0.1)
        run = build_run(cfg, Dist(torch.device("cpu")), fer_data, votes=votes if kind != "fer2013" else None)
        n = len(run.x_train)
        assert run.q_train.shape == (n, 7) and run.w_train.shape == (n,) and len(run.y_train) == n
        assert torch.allclose(run.q_train.sum(1), torch.ones(n))
        sub = fer_data.split("train").subset(700, cfg.seed)
        assert n + run.targets.dropped == 700 == len(sub)
        idx, q_val, _ = run.val_loss_targets  # val_loss: the same rule's targets of the val faces
        assert q_val.shape == (len(idx), 7) and len(idx) <= len(run.val_split) == 300
        if kind == "fer2013":
            assert run.y_val_ferplus is None  # no votes read at all
            assert torch.equal(run.y_train, torch.from_numpy(sub.labels))
            assert torch.equal(idx, torch.arange(300)) and torch.equal(q_val, smoothed_targets(run.y_val, 7, 0.1))
        else:
            maj = split_votes(run.val_split, votes).majority()
            assert torch.equal(run.y_val_ferplus, torch.from_numpy(maj))
        if kind == "ferplus-majority":
            assert run.targets.dropped == int((split_votes(sub, votes).majority() < 0).sum()) > 0
            assert torch.equal(run.y_train, torch.from_numpy(split_votes(run.train_split, votes).majority()))


def test_default_targets_never_read_votes(fer_data: Any, tmp_path: Path) -> None:
    """``fer2013`` with FER2013 selection does not touch FER+: a wrong votes path is no error and
    the epoch rows are the keys they always were."""
    from ferlab.research.training.trainer import train

    cfg = _cfg(epochs=1)
    cfg.data.ferplus = str(tmp_path / "nowhere")
    train(cfg, out=tmp_path / "run", device="cpu", progress=False, data=fer_data)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert "val_ferplus_acc" not in row


@pytest.mark.parametrize("kind", ["ferplus-majority", "ferplus-soft", "ferplus-smoothing"])
def test_each_ferplus_target_trains_and_selects_on_ferplus_accuracy(kind: str, fer_data: Any, ferplus_dir: Path,
                                                                    tmp_path: Path, capsys: Any) -> None:
    from ferlab.research.data import load_ferplus, split_votes
    from ferlab.research.evaluation import predict_probs
    from ferlab.research.nets import load_checkpoint
    from ferlab.research.training.trainer import train

    cfg = _cfg(targets=kind, select_metric="val_ferplus_acc", label_smoothing=0.0 if kind == "ferplus-soft" else 0.1)
    summary = train(cfg, out=tmp_path / "run", device="cpu", progress=True, data=fer_data)
    printed = capsys.readouterr().out
    assert f"targets {kind}:" in printed
    if kind != "ferplus-smoothing":
        assert "dropped (no 7-class FER+" in printed
    hist = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["best"]["epoch"] == max(hist, key=lambda r: r["val_ferplus_acc"])["epoch"]
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in hist)
    # the sidecar's FER+ accuracy is what the checkpoint predicts on those val faces
    meta = json.loads((tmp_path / "run" / "best.json").read_text())
    val = fer_data.split("val").subset(300, cfg.seed)
    maj = split_votes(val, load_ferplus(fer_data)).majority()
    ckpt = load_checkpoint(tmp_path / "run" / "best.safetensors")
    pred = predict_probs(ckpt.model, val.images, ckpt.mean, ckpt.std).argmax(1)
    assert meta["metrics"]["val"]["ferplus_accuracy"] == float((pred[maj >= 0] == maj[maj >= 0]).mean())
    assert meta["metrics"]["val"]["ferplus_n"] == int((maj >= 0).sum())
    assert meta["metrics"]["val"]["accuracy"] == float((pred == val.labels).mean())  # val_acc stays FER2013's
