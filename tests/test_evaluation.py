"""ferlab evaluate: metrics against hand-computed values, exact training normalisation, TTA,
calibration, and the command's files and reproducibility."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from ferlab.cli import main
from ferlab.constants import CLASS_NAMES
from ferlab.research.evaluation import compute_metrics, predict_probs
from ferlab.research.evaluation.calibration import calibration_metrics, reliability_bins

NAMES = list(CLASS_NAMES)


def _probs_for(preds: list[int], conf: float = 0.9) -> np.ndarray:
    p = np.full((len(preds), 7), (1 - conf) / 6)
    p[np.arange(len(preds)), preds] = conf
    return p


@pytest.fixture()
def fer_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A miniature FER2013 in the Kaggle folder layout: 3 faces per class per usage, random
    pixels from a fixed seed. The decode cache goes to tmp so tests never touch ~/.cache."""
    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    root = tmp_path / "fer"
    for split, prefixes in (("train", ("Training",)), ("test", ("PublicTest", "PrivateTest"))):
        for cls in CLASS_NAMES:
            d = root / split / cls
            d.mkdir(parents=True)
            for prefix in prefixes:
                for i in range(3):
                    cv2.imwrite(str(d / f"{prefix}_{cls}{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    return root


# ----------------------------------------------------------------------------- metrics

def test_confusion_and_scores_match_hand_computation() -> None:
    labels = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 5, 6, 6]
    preds = [0, 0, 3, 1, 0, 2, 3, 3, 3, 6, 4, 4, 6, 6]
    m = compute_metrics(np.array(labels), _probs_for(preds), NAMES)
    # rows = true class, columns = predicted, written out by hand from the two lists above
    expected = [
        [2, 0, 0, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 3, 0, 0, 1],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 2],
    ]
    assert m["confusion_matrix"] == expected
    assert m["accuracy"] == pytest.approx(10 / 14)
    # angry: TP 2, predicted 3 times, 3 true -> P 2/3, R 2/3
    assert m["per_class"]["angry"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["angry"]["recall"] == pytest.approx(2 / 3)
    # happy: TP 3 of 4 true, predicted 4 times -> P 3/4, R 3/4, F1 3/4
    assert m["per_class"]["happy"]["f1"] == pytest.approx(0.75)
    # neutral: TP 1, predicted twice, 1 true -> P 1/2, R 1, F1 2/3
    assert m["per_class"]["neutral"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["neutral"]["f1"] == pytest.approx(2 / 3)
    # sad is never predicted: precision defined as 0, not NaN
    assert m["per_class"]["sad"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    f1s = [m["per_class"][c]["f1"] for c in NAMES]
    support = [m["per_class"][c]["support"] for c in NAMES]
    assert m["macro_avg"]["f1"] == pytest.approx(np.mean(f1s))
    assert m["weighted_avg"]["f1"] == pytest.approx(np.average(f1s, weights=support))
    assert m["confusion_matrix_normalized"][3] == pytest.approx([0, 0, 0, 0.75, 0, 0, 0.25])
    json.dumps(m)  # plain Python types only


def test_class_without_samples_gets_zero_row_and_no_warning() -> None:
    labels = np.array([0, 1, 1, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(labels, _probs_for([0, 1, 3, 3]), NAMES)
    assert m["per_class"]["disgust"]["support"] == 2
    assert m["per_class"]["surprise"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_matrix_normalized"][6] == [0.0] * 7
    assert len(m["per_class"]) == 7


def test_calibration_matches_hand_computation() -> None:
    # confidences 0.95 (right), 0.95 (wrong), 0.55 (right), 0.25 (wrong)
    probs = np.array([
        [0.95, 0.05, 0, 0, 0, 0, 0],
        [0.95, 0.05, 0, 0, 0, 0, 0],
        [0.10, 0.55, 0.35, 0, 0, 0, 0],
        [0.25, 0.15, 0.15, 0.15, 0.10, 0.10, 0.10],
    ])
    labels = np.array([0, 1, 1, 3])
    cal = calibration_metrics(labels, probs)
    assert cal["mean_confidence_correct"] == pytest.approx(0.75)
    assert cal["mean_confidence_wrong"] == pytest.approx(0.60)
    # bins of width 1/15: |0.5 - 0.95| * 2/4 + |1 - 0.55| * 1/4 + |0 - 0.25| * 1/4
    assert cal["ece"] == pytest.approx(0.225 + 0.1125 + 0.0625)
    assert cal["nll"] == pytest.approx(-(math.log(0.95) + math.log(0.05) + math.log(0.55) + math.log(0.15)) / 4)
    assert sum(b["count"] for b in cal["reliability"]) == 4
    assert len(cal["reliability"]) == 15


def test_reliability_bins_are_right_closed() -> None:
    bins = reliability_bins(np.array([1.0, 0.2, 0.2000001, 1 / 15]), np.array([True, False, True, True]))
    counts = [b["count"] for b in bins]
    assert counts[14] == 1  # 1.0 is in the last bin (14/15, 1]
    assert counts[2] == 1 and counts[3] == 1  # 0.2 closes bin (2/15, 3/15]; just above opens the next
    assert counts[0] == 1  # 1/15 closes the first bin


def test_perfect_confident_model_is_perfectly_calibrated() -> None:
    labels = np.arange(7).repeat(3)
    probs = np.eye(7)[labels]
    m = compute_metrics(labels, probs, NAMES)
    assert m["accuracy"] == 1.0 and m["macro_avg"]["f1"] == 1.0
    assert m["calibration"]["ece"] == pytest.approx(0.0)
    assert m["calibration"]["nll"] == pytest.approx(0.0)
    assert m["calibration"]["mean_confidence_wrong"] is None


def test_hard_zero_probability_gives_finite_nll() -> None:
    m = compute_metrics(np.array([1]), np.eye(7)[[0]], NAMES)
    assert math.isfinite(m["calibration"]["nll"]) and m["calibration"]["nll"] > 700


@pytest.mark.parametrize("labels,probs", [
    (np.array([0, 1]), np.full((2, 6), 1 / 6)),  # 6 columns, 7 names
    (np.array([0, 7]), np.full((2, 7), 1 / 7)),  # label out of range
    (np.array([0]), np.full((2, 7), 1 / 7)),  # length mismatch
    (np.array([0]), np.full((1, 7), np.nan)),
])
def test_compute_metrics_rejects_inconsistent_input(labels: np.ndarray, probs: np.ndarray) -> None:
    with pytest.raises(ValueError):
        compute_metrics(labels, probs, NAMES)


# ----------------------------------------------------------------------------- predict_probs

class _Recorder(nn.Module):
    """Returns fixed logits that depend on the input's left/right asymmetry and keeps its input."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, 7))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        asym = (x[..., :24].mean(dim=(1, 2, 3)) - x[..., 24:].mean(dim=(1, 2, 3)))
        return asym[:, None] * self.w[None] * 3


def test_inputs_are_normalised_exactly_like_training() -> None:
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8)
    model = _Recorder()
    predict_probs(model, imgs, mean=0.4, std=0.3, batch_size=2)
    seen = torch.cat(model.seen)
    assert seen.shape == (5, 1, 48, 48) and seen.dtype == torch.float32
    ref = (imgs.astype(np.float64) / 255 - 0.4) / 0.3
    np.testing.assert_allclose(seen[:, 0].numpy(), ref, atol=1e-5)
    # bit-identical to what the training step feeds the model (ferlab.research.training.engine.train_step,
    # augmentation aside): the same two functions on the same uint8 pixels
    from ferlab.inference.preprocess import standardise, to_unit

    assert torch.equal(seen[:, 0], standardise(to_unit(torch.from_numpy(imgs)), 0.4, 0.3))


def test_flip_tta_averages_softmax_of_face_and_mirror() -> None:
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (4, 48, 48), dtype=np.uint8)
    model = _Recorder()
    plain = predict_probs(model, imgs, 0.5, 0.25)
    mirrored = predict_probs(model, imgs[:, :, ::-1], 0.5, 0.25)
    tta = predict_probs(model, imgs, 0.5, 0.25, tta=True)
    assert not np.allclose(plain, mirrored)  # the stub really is asymmetric
    np.testing.assert_allclose(tta, 0.5 * (plain + mirrored), atol=1e-12)


def test_predict_probs_shape_modes_and_batch_independence(tiny_checkpoint: Path) -> None:
    from ferlab.research.nets import load_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.model.train()
    imgs = np.random.default_rng(3).integers(0, 256, (10, 1, 48, 48), dtype=np.uint8)
    a = predict_probs(ckpt.model, imgs, ckpt.mean, ckpt.std, batch_size=3)
    assert ckpt.model.training  # mode restored for the trainer
    b = predict_probs(ckpt.model, imgs[:, 0], ckpt.mean, ckpt.std, batch_size=64)
    assert a.shape == (10, 7) and a.dtype == np.float64
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(a, b, atol=1e-6)  # eval mode: BN uses running stats, no batch mixing


def test_predict_probs_refuses_normalised_floats(tiny_checkpoint: Path) -> None:
    from ferlab.research.nets import load_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    with pytest.raises(TypeError, match="uint8"):
        predict_probs(ckpt.model, np.zeros((2, 48, 48), np.float32), 0.5, 0.25)
    with pytest.raises(ValueError):
        predict_probs(ckpt.model, np.zeros((0, 48, 48), np.uint8), 0.5, 0.25)


# ----------------------------------------------------------------------------- the command

def test_evaluate_command_writes_reproducible_outputs(tiny_checkpoint: Path, fer_folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_checkpoint), "--data", str(fer_folder), "--split", "val",
            "--out", str(out), "--batch-size", "4"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for word in ("precision", "weighted avg", "macro avg", "ECE (15 bins)", "NLL", "happy"):
        assert word in printed
    for name in ("metrics.json", "report.md", "confusion_matrix.png", "reliability.png"):
        assert (out / name).stat().st_size > 0
    assert cv2.imread(str(out / "confusion_matrix.png")) is not None
    first = (out / "metrics.json").read_bytes()
    m = json.loads(first)
    assert m["data"]["split"] == "val" and m["data"]["n"] == 21 and m["n"] == 21
    assert m["tta"] is None and len(m["model"]["sha256"]) == 64
    assert sum(map(sum, m["confusion_matrix"])) == 21
    # the JSON agrees with predict_probs + compute_metrics called directly
    from ferlab.research.data import load_fer2013
    from ferlab.research.nets import load_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    sp = load_fer2013(fer_folder).split("val")
    direct = compute_metrics(sp.labels, predict_probs(ckpt.model, sp.images, ckpt.mean, ckpt.std), NAMES)
    assert m["accuracy"] == pytest.approx(direct["accuracy"])
    assert m["calibration"]["nll"] == pytest.approx(direct["calibration"]["nll"], abs=1e-6)
    # same checkpoint + data -> byte-identical metrics.json (other batch size, second run)
    assert main(args[:-2] + ["--batch-size", "512"]) == 0
    assert (out / "metrics.json").read_bytes() == first
    report = (out / "report.md").read_text()
    assert "| **weighted avg** |" in report and "confusion_matrix.png" in report


def test_evaluate_tta_and_default_out_folder(tiny_checkpoint: Path, fer_folder: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FERLAB_DATA", str(fer_folder))
    assert main(["evaluate", "--model", str(tiny_checkpoint), "--split", "test", "--tta", "flip"]) == 0
    m = json.loads((tmp_path / "runs" / "eval-tiny-test-tta" / "metrics.json").read_text())
    assert m["tta"] == "flip" and m["data"]["split"] == "test"


def test_evaluate_without_data_is_a_one_line_error(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FERLAB_DATA", raising=False)
    assert main(["evaluate", "--model", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ferlab evaluate: error:") and "FERLAB_DATA" in err and "\n" not in err


def test_public_api_forwards_to_evaluate(monkeypatch: pytest.MonkeyPatch) -> None:
    import ferlab
    import ferlab.research.evaluation.run as run

    calls = []
    monkeypatch.setattr(run, "evaluate", lambda *a, **k: calls.append((a, k)) or {"ok": 1})
    assert ferlab.evaluate("m", "d", split="val") == {"ok": 1}
    assert calls == [(("m", "d"), {"split": "val"})]


def test_evaluate_on_real_val_split(tiny_checkpoint: Path, fer_data) -> None:  # noqa: ANN001
    from ferlab.research.evaluation import evaluate

    m = evaluate(tiny_checkpoint, fer_data, split="val", write=False)
    counts = fer_data.split("val").counts()
    assert m["n"] == 3589 == int(counts.sum())
    assert [m["per_class"][c]["support"] for c in NAMES] == counts.tolist()
    assert 0.0 <= m["calibration"]["ece"] <= 1.0


# ----------------------------------------------------------------------------- one prediction function

def test_predict_probs_is_the_softmax_of_predict_logits(tiny_checkpoint: Path) -> None:
    """``ferlab evaluate`` and the trainer's checkpoint selection share predict_logits; the
    probabilities are its float64 softmax (with TTA: the mean of face and mirror)."""
    from ferlab.research.evaluation.predict import predict_logits, probs_from_logits
    from ferlab.research.nets import load_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    imgs = np.random.default_rng(4).integers(0, 256, (9, 48, 48), dtype=np.uint8)
    logits = predict_logits(ckpt.model, imgs, ckpt.mean, ckpt.std, batch_size=4)
    assert logits.shape == (9, 7) and logits.dtype == torch.float32
    from ferlab.probabilities import softmax

    probs = predict_probs(ckpt.model, imgs, ckpt.mean, ckpt.std, batch_size=4)
    assert np.array_equal(probs, softmax(logits.numpy()))  # the one definition (ferlab.probabilities)
    np.testing.assert_allclose(probs, logits.double().softmax(1).numpy(), rtol=1e-12)
    views = predict_logits(ckpt.model, imgs, ckpt.mean, ckpt.std, batch_size=4, tta=True)
    assert views.shape == (2, 9, 7) and torch.equal(views[0], logits)
    assert np.array_equal(predict_probs(ckpt.model, imgs, ckpt.mean, ckpt.std, batch_size=4, tta=True),
                          probs_from_logits(views).numpy())
    # a uint8 tensor (the trainer's on-device split) gives the same logits as the NumPy array
    assert torch.equal(predict_logits(ckpt.model, torch.from_numpy(imgs), ckpt.mean, ckpt.std, batch_size=4), logits)
    with pytest.raises(TypeError, match="uint8"):
        predict_logits(ckpt.model, torch.zeros(2, 48, 48), ckpt.mean, ckpt.std)


def test_trainer_evaluation_is_predict_logits_with_the_training_loss(tiny_checkpoint: Path) -> None:
    from ferlab.research.evaluation.predict import predict_logits
    from ferlab.research.nets import load_checkpoint
    from ferlab.research.training.engine import evaluate
    from ferlab.research.training.loss import smoothed_targets, soft_cross_entropy

    ckpt = load_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(5)
    imgs, labels = rng.integers(0, 256, (20, 48, 48), dtype=np.uint8), rng.integers(0, 7, 20)
    y = torch.from_numpy(labels)
    targets = (torch.arange(20), smoothed_targets(y, 7, 0.1), None)  # the build's val targets for fer2013
    res = evaluate(ckpt.model, torch.from_numpy(imgs), y, ckpt.mean, ckpt.std, loss_targets=targets)
    m = compute_metrics(labels, predict_probs(ckpt.model, imgs, ckpt.mean, ckpt.std), NAMES)
    assert res["acc"] == m["accuracy"]
    logits = predict_logits(ckpt.model, imgs, ckpt.mean, ckpt.std)
    assert res["loss"] == float(soft_cross_entropy(logits, targets[1]))
    # faces the targets' rule drops are left out of the loss only
    some = (torch.tensor([0, 3, 7]), targets[1][[0, 3, 7]], torch.tensor([1.0, 2.0, 0.5]))
    part = evaluate(ckpt.model, torch.from_numpy(imgs), y, ckpt.mean, ckpt.std, loss_targets=some)
    assert part["acc"] == res["acc"] and part["loss"] == float(soft_cross_entropy(logits[some[0]], some[1], some[2]))


# ----------------------------------------------------------------------------- one device rule

def test_auto_device_is_cuda_if_available_else_cpu() -> None:
    from ferlab.research.device import resolve_device
    from ferlab.errors import FerlabError

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == resolve_device(None).type == resolve_device("").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(FerlabError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(FerlabError, match="no CUDA device"):
            resolve_device("cuda:0")


@pytest.mark.parametrize("argv", [["train"], ["evaluate"], ["gradcam", "x.png", "--out", "o"], ["gradcam-study"],
                                  ["experiments", "run"]])
def test_every_command_defaults_to_the_auto_device(argv: list[str]) -> None:
    from ferlab.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.device in (None, "auto")
