"""Vector scaling: a known map recovered, the fold exact, the held-out estimate honest, and
``ferlab calibrate --method vector`` writing a new checkpoint that computes w * z + b of its source on real
PublicTest faces while leaving the source untouched."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ferlab.errors import FerlabError
from ferlab.research.evaluation.recalibration import (apply_vector_scaling, cross_fitted, fit_vector_scaling,
                                             fold_into_head)
from ferlab.research.evaluation.uncertainty import calibrated_probs

W = np.array([0.6, 1.5, 1.0, 0.8, 1.2, 1.0, 0.7])
B = np.array([0.4, -0.8, 0.0, 0.3, -0.2, 0.1, 0.5])


def _draw(n: int, seed: int, w: np.ndarray = W) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from softmax(w z + B): a model miscalibrated class by class."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, 7))
    p = calibrated_probs(apply_vector_scaling(z, w, B))
    return z, (p.cumsum(1) > rng.random((n, 1))).argmax(1)


def test_fit_recovers_the_map_labels_were_drawn_with() -> None:
    z, y = _draw(40000, 0)
    w, b = fit_vector_scaling(z, y)
    assert w == pytest.approx(W, abs=0.06)
    # softmax is unchanged by a constant added to every bias: compare the biases centred
    assert b - b.mean() == pytest.approx(B - B.mean(), abs=0.06)


def test_fit_of_an_already_calibrated_model_is_close_to_the_identity() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (30000, 7))
    y = (calibrated_probs(z).cumsum(1) > rng.random((len(z), 1))).argmax(1)
    w, b = fit_vector_scaling(z, y)
    assert w == pytest.approx(np.ones(7), abs=0.05) and b - b.mean() == pytest.approx(np.zeros(7), abs=0.05)


def test_fit_refuses_mismatched_inputs() -> None:
    with pytest.raises(FerlabError, match="vector scaling needs"):
        fit_vector_scaling(np.zeros((5, 7)), np.zeros(4, int))


def test_cross_fitted_estimate_scores_held_out_halves() -> None:
    z, y = _draw(4000, 2, 0.5 * W)  # overconfident as well as shifted
    cf = cross_fitted(z, y, seeds=3)
    assert cf["seeds"] == 3
    # the miscalibration is real, so fitting on one half helps the other half
    assert cf["with"]["nll"] < cf["without"]["nll"] - 0.02 and cf["with"]["ece"] < cf["without"]["ece"]
    # the "without" row is the raw model on the same halves: the mean over halves of the raw scores
    raw_acc = float((z.argmax(1) == y).mean())
    assert cf["without"]["accuracy"] == pytest.approx(raw_acc, abs=1e-9)
    # flip-TTA logits: fitted on the plain view, scored on the mean of both views' softmaxes
    cf2 = cross_fitted(np.stack([z, z]), y, seeds=1)
    cf1 = cross_fitted(z, y, seeds=1)
    assert cf2["with"]["nll"] == pytest.approx(cf1["with"]["nll"]) and cf2["without"] == pytest.approx(cf1["without"])


def test_fold_into_head_computes_the_map(tiny_checkpoint: Path) -> None:
    import torch

    from ferlab.research.nets import load_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    x = torch.randn(6, 1, 48, 48)
    with torch.no_grad():
        before = ckpt.model(x).numpy()
        after = fold_into_head(ckpt.model, W, B)(x).numpy()
    assert after == pytest.approx(apply_vector_scaling(before, W, B), abs=1e-5)
    with pytest.raises(FerlabError, match="head ends in a Linear layer with 3 outputs"):
        fold_into_head(ckpt.model, W[:3], B[:3])


def test_recalibrate_command_writes_a_folded_checkpoint_and_leaves_the_source(
        tiny_checkpoint: Path, fer_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ferlab.cli import main
    from ferlab.research.data import load_fer2013
    from ferlab.research.evaluation.predict import predict_logits
    from ferlab.fileio import sha256_file
    from ferlab.research.nets import load_checkpoint

    source_hash = sha256_file(tiny_checkpoint)
    out = tmp_path / "tiny_vs.safetensors"
    assert main(["calibrate", "--method", "vector", "--model", str(tiny_checkpoint), "--data", str(fer_root), "--out", str(out),
                 "--seeds", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "held-out halves (4 fits)" in printed and f"wrote {out}" in printed
    assert sha256_file(tiny_checkpoint) == source_hash
    meta = json.loads(out.with_suffix(".json").read_text())
    rc = meta["recalibration"]
    assert rc["source"] == {"name": "tiny", "sha256": source_hash}
    assert rc["fitted_on"]["split"] == "val" and rc["fitted_on"]["n"] == 3589
    assert "metrics" not in meta and meta["model"] == load_checkpoint(tiny_checkpoint).meta["model"]
    # in sample the fit cannot be worse than the identity it starts from
    assert rc["in_sample"]["with"]["nll"] <= rc["in_sample"]["without"]["nll"]

    val = load_fer2013(fer_root).split("val")
    faces = val.images[:64]
    src, new = load_checkpoint(tiny_checkpoint), load_checkpoint(out)
    z = predict_logits(src.model, faces, src.mean, src.std, device="cpu").numpy()
    z_new = predict_logits(new.model, faces, new.mean, new.std, device="cpu").numpy()
    assert z_new == pytest.approx(apply_vector_scaling(z, rc["w"], rc["b"]), abs=1e-4)

    # writing over the source would lose it
    assert main(["calibrate", "--method", "vector", "--model", str(tiny_checkpoint), "--data", str(fer_root),
                 "--out", str(tiny_checkpoint.with_suffix("")), "--device", "cpu"]) == 2
    assert "is the model being recalibrated" in capsys.readouterr().err
    assert sha256_file(tiny_checkpoint) == source_hash

    # recalibrating twice would fit the map on top of a map fitted on the same faces
    assert main(["calibrate", "--method", "vector", "--model", str(out), "--data", str(fer_root), "--out", str(tmp_path / "x"),
                 "--device", "cpu"]) == 2
    assert "already recalibrated" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_recalibrate_names_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ferlab.cli import main

    assert main(["calibrate", "--method", "vector", "--model", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nope.safetensors" in err and len(err.strip().splitlines()) == 1


def test_selection_accuracy_is_the_held_out_estimate_and_the_default_is_pinned_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ferlab.models import hub
    from ferlab.models.hub import ShippedModel

    plain = ShippedModel("plain", tmp_path / "plain.onnx", {"metrics": {"val": {"accuracy": 0.682}}})
    # fitted on PublicTest: in sample 0.690, held out 0.680, so the held-out number is the one to compare
    fitted = ShippedModel("fitted", tmp_path / "fitted.onnx",
                          {"metrics": {"val": {"accuracy": 0.690}},
                           "recalibration": {"cross_fitted": {"with": {"accuracy": 0.680}}}})
    assert plain.selection_accuracy() == 0.682 and fitted.selection_accuracy() == 0.680
    assert fitted.accuracy("val") == 0.690  # what evaluate measured stays on record as it is
    pinned = ShippedModel(hub.DEFAULT_MODEL, tmp_path / "x.onnx", {"metrics": {"val": {"accuracy": 0.5}}})
    # a more accurate file in the box does not change what every user gets
    monkeypatch.setattr(hub, "shipped_models", lambda: [plain, fitted, pinned])
    assert hub.default_model() is pinned
    monkeypatch.setattr(hub, "shipped_models", lambda: [plain, fitted])
    with pytest.raises(FerlabError, match="default model 'fer2013' is missing"):
        hub.default_model()


def test_fer2013_models_are_those_trained_for_fer2013_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ferlab.models import hub
    from ferlab.models.hub import ShippedModel

    def model(name: str, targets: str | None, **extra: object) -> ShippedModel:
        cfg = {} if targets is None else {"train": {"targets": targets}}
        return ShippedModel(name, tmp_path / f"{name}.safetensors", {"config": cfg, **extra})

    monkeypatch.setattr(hub, "known_models", lambda: [
        model("thesis", None), model("plain", "fer2013"), model("smooth", "ferplus-smoothing"),
        model("soft", "ferplus-soft"), model("majority", "ferplus-majority"),
        model("smooth_vs", "ferplus-smoothing", recalibration={"w": [1.0]})])
    assert hub.fer2013_models() == ["thesis", "plain", "smooth"]


def test_models_listing_says_what_each_model_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from ferlab.cli import main
    from ferlab.models import hub
    from ferlab.models.hub import ShippedModel

    for name in ("fer2013", "ferplus"):
        (tmp_path / f"{name}.onnx").write_bytes(b"x")
    box = [ShippedModel("fer2013", tmp_path / "fer2013.onnx",
                        {"metrics": {"test": {"accuracy": 0.7, "ferplus": {"accuracy": 0.67}}}}),
           ShippedModel("ferplus", tmp_path / "ferplus.onnx",
                        {"config": {"train": {"targets": "ferplus-soft"}}, "metrics": {"test": {"accuracy": 0.614}}})]
    monkeypatch.setattr(hub, "known_models", lambda: box)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("fer2013") and "FER2013 labels" in lines[1] and "70.0%" in lines[1]
    assert lines[1].endswith("(default)") and "67.0%" in lines[1]
    assert lines[2].startswith("ferplus") and "FER+ votes" in lines[2] and "(default)" not in lines[2]
    assert str(tmp_path) not in "\n".join(lines)  # no absolute paths for a newcomer to read
