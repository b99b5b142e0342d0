"""Temperature scaling, the uncertainty score and threshold, and the FER+ block of
``ferlab evaluate``: hand-computed values, a known temperature recovered, and on real data
metrics.json unchanged by the votes while metrics_ferplus.json reports the PrivateTest numbers."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ferlab.research.data.ferplus import FerPlusVotes
from ferlab.research.evaluation.uncertainty import (accuracy_at_coverage, break_even_threshold, calibrated_probs,
                                           coverage_threshold, fit_calibration, fit_temperature, soft_nll,
                                           uncertainty_score, unreadable, vote_calibration)


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (20000, 7))
    p = calibrated_probs(z, 2.0)
    labels = (p.cumsum(1) > rng.random((len(z), 1))).argmax(1)
    assert fit_temperature(z, labels) == pytest.approx(2.0, rel=0.05)
    # against the distributions themselves the optimum is exact
    assert fit_temperature(z[:2000], p[:2000]) == pytest.approx(2.0, rel=1e-3)


def test_calibrated_probs_and_soft_nll_by_hand() -> None:
    z = np.array([[2.0, 1.0, 0.0]])
    p = calibrated_probs(z, 2.0)  # softmax(1, 0.5, 0)
    e = np.exp([1.0, 0.5, 0.0])
    assert p[0].tolist() == pytest.approx((e / e.sum()).tolist())
    assert soft_nll(np.array([[0.5, 0.5, 0.0]]), p) == pytest.approx(-0.5 * np.log(p[0, 0]) - 0.5 * np.log(p[0, 1]))
    tta = calibrated_probs(np.stack([z, z[:, ::-1]]), 1.0)  # flip TTA: mean of the two softmaxes
    assert tta[0].tolist() == pytest.approx((0.5 * (calibrated_probs(z)[0] + calibrated_probs(z)[0][::-1])).tolist())
    assert uncertainty_score(p).tolist() == pytest.approx([1 - p[0].max()])


def test_unreadable_faces_are_unknown_nf_or_without_a_majority() -> None:
    rows = np.array([[0, 0, 0, 10, 0, 0, 0, 0, 0, 0],  # clear happy
                     [0, 0, 0, 5, 5, 0, 0, 0, 0, 0],  # 5 of 10 at most: unreadable
                     [0, 0, 0, 6, 4, 0, 0, 0, 0, 0],  # 6 of 10: readable
                     [0, 0, 0, 3, 0, 0, 0, 0, 4, 3],  # unknown wins
                     [0, 0, 0, 4, 0, 0, 0, 0, 0, 6]])  # not a face wins
    v = FerPlusVotes([f"row{i}" for i in range(5)], rows[:, :7], rows[:, 7], rows[:, 8], rows[:, 9],
                     np.ones(5, bool))
    assert unreadable(v).tolist() == [False, True, False, True, True]


def test_threshold_rules_and_accuracy_at_coverage() -> None:
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    pos = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1], bool)  # 30 % unreadable
    t = break_even_threshold(score, pos)
    assert t == 0.8 and ((score >= t) == pos).all()  # flags exactly the positives' share
    assert (score >= coverage_threshold(score, 0.8)).sum() == 2
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([1, 1, 0, 1, 0], bool)
    assert accuracy_at_coverage(conf, correct, 0.8) == 0.75  # the 4 most confident
    assert accuracy_at_coverage(conf, correct, 0.4) == 1.0


def test_vote_ece_compares_confidence_with_the_vote_share_of_the_prediction() -> None:
    probs = np.array([[0.7, 0.3], [0.7, 0.3]])  # one bin, confidence 0.7, predicts class 0
    dist = np.array([[0.9, 0.1], [0.3, 0.7]])  # vote shares for class 0: 0.9 and 0.3 -> 0.6
    v = vote_calibration(probs, dist)
    assert v["ece"] == pytest.approx(0.1) and v["mean_vote_share_of_prediction"] == pytest.approx(0.6)


def test_calibration_without_votes_flags_a_fixed_share() -> None:
    rng = np.random.default_rng(1)
    z, labels = rng.normal(0, 2, (500, 7)), rng.integers(0, 7, 500)
    cal = fit_calibration(z, labels)
    assert cal["fit_target"] == "fer2013 labels" and 0.19 <= cal["fit_flagged"] <= 0.21
    assert cal["temperature"] > 1  # random logits vs random labels: a confident model must be cooled


# ----------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def eval_pair(tiny_checkpoint: Path, fer_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``ferlab evaluate`` on PrivateTest with the votes found beside the data, and with --no-ferplus."""
    from conftest import FERPLUS
    from ferlab.cli import main

    if not (FERPLUS / "votes_by_kaggle_file.csv").is_file():
        pytest.skip("FER+ votes not found beside the data")
    base = tmp_path_factory.mktemp("eval")
    for name, extra in (("with", []), ("without", ["--no-ferplus"])):
        assert main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(fer_root), "--split", "test",
                     "--out", str(base / name), "--device", "cpu", *extra]) == 0
    return base / "with", base / "without"


def test_votes_never_change_metrics_json(eval_pair: tuple[Path, Path]) -> None:
    with_votes, without = eval_pair
    assert (with_votes / "metrics.json").read_bytes() == (without / "metrics.json").read_bytes()
    assert "ferplus" not in json.loads((with_votes / "metrics.json").read_text())
    assert not (without / "metrics_ferplus.json").exists()


def test_ferplus_block_on_privatetest(eval_pair: tuple[Path, Path], fer_data: Any, tiny_checkpoint: Path) -> None:
    from ferlab.research.data import load_ferplus, split_votes
    from ferlab.research.evaluation import predict_probs
    from ferlab.research.nets import load_checkpoint

    m = json.loads((eval_pair[0] / "metrics_ferplus.json").read_text())
    base = json.loads((eval_pair[0] / "metrics.json").read_text())
    assert m["model"] == base["model"] and m["data"] == base["data"]
    fp = m["ferplus"]
    assert fp["n"] == 3589 and fp["n_majority7"] == 3518 and fp["n_with_votes"] == 3573
    assert fp["label_agreement"] == pytest.approx(0.634, abs=5e-4)  # the FER+ README's 63.4 %
    assert fp["uncertainty"]["n_unreadable"] == 844 and fp["uncertainty"]["n_scored"] == 3573
    # FER+ accuracy = the model's top class against the majority, over the 3,518 faces that have one
    test = fer_data.split("test")
    maj = split_votes(test, load_ferplus(fer_data)).majority()
    ckpt = load_checkpoint(tiny_checkpoint)
    pred = predict_probs(ckpt.model, test.images, ckpt.mean, ckpt.std).argmax(1)
    has = maj >= 0
    assert fp["accuracy"] == round(float((pred[has] == maj[has]).mean()), 6)
    assert fp["fer2013_accuracy_same_faces"] == round(float((pred[has] == test.labels[has]).mean()), 6)
    # coverage: keeping fewer (more confident) faces cannot be scored on more faces than all
    cov = fp["uncertainty"]["accuracy_at_coverage"]
    assert set(cov) == {"80%", "90%"} and all(0.0 <= c["ferplus"] <= 1.0 for c in cov.values())
    assert 0.05 <= fp["calibrated"]["temperature"] <= 20.0
    assert fp["calibrated"]["nll_votes"] <= fp["raw"]["nll_votes"] + 0.05  # T fitted on val lowers test NLL
    assert 0.0 <= fp["uncertainty"]["auroc_unreadable"] <= 1.0


def test_calibrate_command_writes_temperature_and_threshold(tiny_checkpoint: Path, fer_root: Path, ferplus_dir: Path,
                                                            tmp_path: Path) -> None:
    from ferlab.cli import main

    out = tmp_path / "cal.json"
    assert main(["calibrate", "--model", str(tiny_checkpoint), "--data", str(fer_root), "--out", str(out),
                 "--device", "cpu"]) == 0
    cal = json.loads(out.read_text())
    assert cal["fit_target"] == "ferplus votes" and cal["data"]["split"] == "val" and cal["fit_n"] == 3579
    assert 0.0 < cal["threshold"] < 1.0 and cal["fit_unreadable"] == 717
    assert cal["fit_flagged"] == pytest.approx(717 / 3579, abs=0.01)  # break-even: flags the unreadable share
