"""Distillation targets (train.teachers): the teachers' mean softmax, mixed into the rule's target."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL_CFG
from ferlab.research.config import make_config
from ferlab.research.data.dataset import FerSplit
from ferlab.errors import FerlabError


def _faces(n: int = 40, seed: int = 0) -> FerSplit:
    rng = np.random.default_rng(seed)
    return FerSplit("train", rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n))


def _checkpoint(tmp_path: Path, name: str, seed: int) -> Path:
    from ferlab.research.nets import create_from_config, save_checkpoint

    torch.manual_seed(seed)
    model = create_from_config(dict(TINY_MODEL_CFG)).eval()
    return save_checkpoint(tmp_path / f"{name}.safetensors", model, {"model": dict(TINY_MODEL_CFG)})


def test_teacher_probs_are_the_mean_flip_averaged_softmax(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ferlab.research.evaluation.predict import predict_probs
    from ferlab.research.nets import load_checkpoint
    from ferlab.research.training.teachers import teacher_probs

    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path / "cache"))
    a, b = _checkpoint(tmp_path, "a", 1), _checkpoint(tmp_path, "b", 2)
    split = _faces()
    got = teacher_probs([str(a), str(b)], split, tta=True)
    want = np.mean([predict_probs(load_checkpoint(p).model, split.images, load_checkpoint(p).mean,
                                  load_checkpoint(p).std, tta=True) for p in (a, b)], axis=0)
    assert got.shape == (40, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    # cached: a second call reads the file, and changed weights miss the cache
    cached = list((tmp_path / "cache" / "teachers").glob("*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(teacher_probs([str(a), str(b)], split, tta=True), got)
    _checkpoint(tmp_path, "b", 3)  # same path, other weights
    assert not np.allclose(teacher_probs([str(a), str(b)], split, tta=True), got)
    assert len(list((tmp_path / "cache" / "teachers").glob("*.npy"))) == 2


def test_teacher_probs_refuse_missing_teachers(tmp_path: Path) -> None:
    from ferlab.research.training.teachers import teacher_probs

    with pytest.raises(FerlabError, match="empty"):
        teacher_probs([], _faces())
    with pytest.raises(FerlabError, match="not found"):
        teacher_probs([str(tmp_path / "missing.safetensors")], _faces())


def test_mix_targets_is_a_convex_combination() -> None:
    from ferlab.research.training.loss import smoothed_targets
    from ferlab.research.training.teachers import mix_targets

    rule = smoothed_targets(torch.tensor([0, 3]), 7, 0.1)
    teacher = np.full((2, 7), 1 / 7, dtype=np.float32)
    mixed = mix_targets(rule, teacher, 0.25)
    torch.testing.assert_close(mixed, 0.75 * rule + 0.25 / 7)
    torch.testing.assert_close(mixed.sum(1), torch.ones(2))
    torch.testing.assert_close(mix_targets(rule, teacher, 1.0), torch.full((2, 7), 1 / 7))
    with pytest.raises(FerlabError, match="teacher targets"):
        mix_targets(rule, teacher[:1], 0.5)


def test_teacher_config_is_checked() -> None:
    cfg = make_config()
    assert cfg.train.teachers == [] and cfg.train.teacher_weight == 0.5
    with pytest.raises(FerlabError, match="teacher_weight"):
        make_config(overrides=["train.teacher_weight=0"])
    with pytest.raises(FerlabError, match="teacher_weight"):
        make_config(overrides=["train.teacher_weight=1.5"])


def test_build_run_trains_towards_the_mixed_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_run puts (1 - w) q_rule + w q_teacher on the device; without teachers, q_rule."""
    from ferlab.research.data import FerData
    from ferlab.research.training.build import build_run
    from ferlab.research.training.distributed import Dist
    from ferlab.research.training.teachers import teacher_probs

    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    n = 70
    data = FerData(rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), np.arange(n) % 7,
                   np.r_[np.zeros(56, np.int8), np.ones(14, np.int8)], [f"row{i}" for i in range(n)])
    teacher = _checkpoint(tmp_path, "t", 5)
    over = ["train.epochs=1", "train.batch_size=8", "train.class_weights=false", "train.freeze_epochs=0",
            "model.pretrained=none", "model.name=fernet", "model.widths=[8, 16, 16, 16]",
            "model.depths=[0, 0, 0, 0]", "model.head=[16]", "model.dropout=[0.0, 0.0]"]
    plain = build_run(make_config(overrides=over), Dist(torch.device("cpu")), data=data)
    distilled = build_run(make_config(overrides=over + [f"train.teachers=[{teacher}]", "train.teacher_weight=0.5"]),
                          Dist(torch.device("cpu")), data=data)
    soft = torch.from_numpy(teacher_probs([str(teacher)], plain.train_split))
    torch.testing.assert_close(distilled.q_train, 0.5 * plain.q_train + 0.5 * soft)
    assert not torch.allclose(distilled.q_train, plain.q_train)
