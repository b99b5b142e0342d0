"""Every registered architecture through every path a trained model takes (timm's
tests/test_models.py idea): checkpoint round trip, ONNX export parity with PyTorch, the
trainer's selection number equal to ``ferlab evaluate``'s, and the live ``Recognizer`` on a
real photo with both backends.

Models are built small where the architecture allows it (narrow FerNet) and with random
weights: the point is that each path computes the same function, not accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ferlab.research.nets import create_from_config, list_models, load_checkpoint, save_checkpoint

# Per-architecture config for the lifecycle: the smallest member of the family that still
# exercises its code (and pretrained=none: ImageNet loading is tested in test_models.py).
SMALL: dict[str, dict] = {
    "fernet": {"widths": [8, 16, 16, 16], "depths": [0, 1, 0, 0], "head": [16], "dropout": [0.5, 0.25]},
}


def _config(name: str) -> dict:
    return {"name": name, "pretrained": "none", **SMALL.get(name, {})}


@pytest.fixture(scope="module", params=list_models())
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    name = request.param
    torch.manual_seed(0)
    model = create_from_config(_config(name)).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters in every path
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp(name) / f"{name}.safetensors"
    save_checkpoint(path, model, {"model": _config(name), "metrics": {}})
    return name, path


def _faces(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_checkpoint_round_trip(saved: tuple[str, Path]) -> None:
    from ferlab.research.evaluation.predict import predict_probs

    name, path = saved
    a, b = load_checkpoint(path), load_checkpoint(path)
    assert a.meta["model"]["name"] == name
    pa = predict_probs(a.model, _faces(), a.mean, a.std)
    pb = predict_probs(b.model, _faces(), b.mean, b.std)
    np.testing.assert_array_equal(pa, pb)
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(value, b.model.state_dict()[key], rtol=0, atol=0)


def test_onnx_export_matches_torch(saved: tuple[str, Path], tmp_path: Path) -> None:
    from ferlab.research.evaluation.predict import predict_probs
    from ferlab.inference.backends import OnnxBackend
    from ferlab.probabilities import softmax
    from ferlab.inference.export import export_onnx
    from ferlab.inference.preprocess import faces_to_input

    _, path = saved
    out = export_onnx(path, tmp_path / "m.onnx", verify=True)
    ckpt = load_checkpoint(path)
    faces = _faces(8, seed=1)
    onnx_p = softmax(OnnxBackend(Path(out))(faces_to_input(faces, ckpt.mean, ckpt.std)))
    torch_p = predict_probs(ckpt.model, faces, ckpt.mean, ckpt.std)
    np.testing.assert_allclose(onnx_p, torch_p, atol=1e-4)


def test_selection_equals_evaluate(saved: tuple[str, Path], fer_data) -> None:
    """The number the trainer selects a checkpoint by is the number ``ferlab evaluate`` reports."""
    from ferlab.research.data import FerData
    from ferlab.research.evaluation.run import evaluate
    from ferlab.research.training.engine import evaluate as select_evaluate
    from ferlab.research.training.targets import build_targets

    _, path = saved
    val = fer_data.split("val").subset(48, seed=0)
    small = FerData(images=np.ascontiguousarray(val.images), labels=val.labels,
                    usage=np.ones(len(val), np.int8), names=list(val.names), source="lifecycle")
    ckpt = load_checkpoint(path)
    t = build_targets("fer2013", val, None, 0.1)  # what the trainer computes val_loss towards
    selected = select_evaluate(ckpt.model, val.images, val.labels, ckpt.mean, ckpt.std, batch_size=16,
                               loss_targets=(torch.arange(len(val)), t.probs, None))
    reported = evaluate(path, small, split="val", write=False, device="cpu")
    assert reported["n"] == len(val)
    assert selected["acc"] == pytest.approx(reported["accuracy"], abs=5e-7)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_recognizer_on_a_real_photo(saved: tuple[str, Path], samples_dir: Path, backend: str) -> None:
    from ferlab.inference.recognizer import Recognizer

    name, path = saved
    rec = Recognizer.from_pretrained(path, backend=backend)
    faces = rec.predict(samples_dir / "photos" / "obama_and_biden.jpg")
    assert len(faces) >= 2, f"{name}/{backend}: expected both faces of obama_and_biden.jpg"
    for face in faces:
        assert face.probs.shape == (7,)
        assert face.probs.sum() == pytest.approx(1.0, abs=1e-5)
    if backend == "onnx":  # the same faces and distributions as the PyTorch backend
        ref = Recognizer.from_pretrained(path, backend="torch").predict(samples_dir / "photos" / "obama_and_biden.jpg")
        assert [f.box for f in faces] == [f.box for f in ref]
        np.testing.assert_allclose(np.stack([f.probs for f in faces]), np.stack([f.probs for f in ref]), atol=1e-4)
