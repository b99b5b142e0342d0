"""ONNX export: self-describing file, dynamic batch, same numbers as PyTorch; INT8; backends."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from ferlab.cli import main
from ferlab.inference import Recognizer
from ferlab.inference.backends import OnnxBackend, TorchBackend, make_backend
from ferlab.probabilities import softmax
from ferlab.inference.export import export_onnx, load_calibration_faces
from ferlab.inference.onnx_format import read_metadata
from ferlab.research.nets import create, load_checkpoint
from ferlab.research.nets.checkpoint import Checkpoint


@pytest.fixture(scope="module")
def fernet_ckpt() -> Checkpoint:
    """The shipped architecture at default widths (random weights: agreement, not accuracy)."""
    import torch

    torch.manual_seed(0)
    return Checkpoint(create("fernet").eval(), {"model": {"name": "fernet"}, "mean": 0.5, "std": 0.25})


def test_export_metadata_and_dynamic_batch(fernet_ckpt: Checkpoint, tmp_path: Path) -> None:
    path = export_onnx(fernet_ckpt, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == fernet_ckpt.class_names
    assert float(meta["mean"]) == 0.5 and float(meta["std"]) == 0.25  # the checkpoint's, not constants
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim][1:] == [1, 48, 48]
    assert inp.type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert out.type.tensor_type.shape.dim[1].dim_value == 7
    assert read_metadata(path)["class_names"] == fernet_ckpt.class_names
    ort_be, torch_be = OnnxBackend(path), TorchBackend(fernet_ckpt.model)
    rng = np.random.default_rng(0)
    for n in (1, 4, 9):
        x = rng.standard_normal((n, 1, 48, 48)).astype(np.float32)
        a, b = ort_be(x), torch_be(x)
        assert a.shape == (n, 7)
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)  # logits agree to 1e-4
        np.testing.assert_allclose(softmax(a), softmax(b), atol=1e-5)


def test_auto_backend_uses_cached_onnx(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path / "cache"))
    ckpt = load_checkpoint(tiny_checkpoint)
    be = make_backend("auto", ckpt, tiny_checkpoint)
    assert isinstance(be, OnnxBackend)
    cached = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1
    assert isinstance(make_backend("torch", ckpt, tiny_checkpoint), TorchBackend)
    be2 = make_backend("onnx", ckpt, tiny_checkpoint)  # second use: read from the cache
    x = np.random.default_rng(1).standard_normal((3, 1, 48, 48)).astype(np.float32)
    np.testing.assert_allclose(be(x), be2(x))
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1


def test_cli_export_and_onnx_only_recognizer(tiny_checkpoint: Path, tmp_path: Path, samples_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--onnx", "--model", str(tiny_checkpoint), "-o", str(out)]) == 0
    assert "top-1 agreement 100.0%" in capsys.readouterr().out
    onnx_rec = Recognizer.from_pretrained(out)  # no checkpoint needed: metadata has everything
    torch_rec = Recognizer.from_pretrained(tiny_checkpoint, backend="torch")
    photo = samples_dir / "photos" / "two_people.jpg"
    a, b = onnx_rec.predict(photo), torch_rec.predict(photo)
    assert len(a) == len(b) == 2
    for fa, fb in zip(a, b):
        assert fa.box == fb.box
        np.testing.assert_allclose(fa.probs, fb.probs, atol=1e-5)


def test_int8_export(tiny_checkpoint: Path, fer_root: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    calib = load_calibration_faces(fer_root / "train", count=70, seed=0)
    assert calib.shape == (70, 48, 48) and calib.dtype == np.uint8
    path = export_onnx(ckpt, tmp_path / "int8.onnx", int8=True, calibration=calib)
    proto = onnx.load(str(path))
    assert any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in proto.graph.node)
    meta = read_metadata(path)
    assert meta["class_names"] == ckpt.class_names and "quantization" in meta
    faces = load_calibration_faces(fer_root / "train", count=64, seed=5)
    from ferlab.inference.export import normalise_faces

    x = normalise_faces(faces, ckpt.mean, ckpt.std)
    p8, p32 = softmax(OnnxBackend(path)(x)), softmax(TorchBackend(ckpt.model)(x))
    assert np.abs(p8 - p32).max() < 0.05  # quantisation error stays small on real faces


def test_int8_needs_calibration(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["export", "--onnx", "--int8", "--model", str(tiny_checkpoint), "-o", str(tmp_path / "x.onnx")])
    assert rc == 2 and "--calib" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_export_by_name_or_path_is_verified(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """export_onnx takes what --model takes and checks the file against PyTorch."""
    path = export_onnx(str(tiny_checkpoint), tmp_path / "t.onnx")
    assert isinstance(path, Path) and path == tmp_path / "t.onnx" and path.is_file()
    v = path.verification
    assert v is not None and v.inputs == 64 and not v.real_faces
    assert v.top1_agreement == 1.0 and v.max_prob_diff < 1e-4
    assert "top-1 agreement 100.0%" in str(v)
    assert export_onnx(str(tiny_checkpoint), tmp_path / "u.onnx", verify=False).verification is None


def test_export_that_disagrees_with_torch_fails_and_writes_nothing(tiny_checkpoint: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import ferlab.inference.export as export_mod
    from ferlab.inference.onnx_format import export_bytes
    from ferlab.errors import FerlabError

    ckpt = load_checkpoint(tiny_checkpoint)
    other = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(torch.randn_like(p))  # a different network: what a broken exporter would give
    monkeypatch.setattr(export_mod, "export_bytes", lambda checkpoint, opset: export_bytes(other, opset))
    with pytest.raises(FerlabError, match="disagrees with the PyTorch model"):
        export_onnx(ckpt, tmp_path / "bad.onnx")
    assert not list(tmp_path.iterdir())


def test_int8_verified_on_calibration_folder(tiny_checkpoint: Path, fer_root: Path, tmp_path: Path) -> None:
    path = export_onnx(str(tiny_checkpoint), tmp_path / "q.onnx", int8=True, calibration=fer_root / "train",
                       calibration_count=40)
    v = path.verification
    # checked on FER2013 PublicTest faces (test/*/PublicTest_*), never on what it was calibrated on
    assert v is not None and v.real_faces and v.what == "PublicTest faces" and v.inputs >= 500
    assert v.top1_agreement >= 0.98 and "PublicTest faces" in str(v)
    assert "reduce_range" in read_metadata(path)["quantization"]


def test_int8_weights_fit_every_cpu_kernel(tiny_checkpoint: Path, fer_root: Path, tmp_path: Path) -> None:
    """7-bit weights: u8 x s8 pair sums fit the int16 of AVX2's vpmaddubsw (no VNNI), so the
    model computes the same integers on CPUs with and without VNNI."""
    from onnx import numpy_helper

    calib = load_calibration_faces(fer_root / "train", count=48, seed=0)
    path = export_onnx(str(tiny_checkpoint), tmp_path / "q.onnx", int8=True, calibration=calib)
    proto = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    weights = [inits[n.input[0]] for n in proto.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8]
    assert weights and all(np.abs(w.astype(np.int32)).max() <= 64 for w in weights)
    assert 2 * 255 * max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 32767


def test_int8_below_agreement_is_refused(tiny_checkpoint: Path, fer_root: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    import ferlab.inference.export as export_mod
    from ferlab.errors import FerlabError
    from ferlab.inference.onnx_format import export_bytes

    other = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        for p in other.model.parameters():
            p.copy_(torch.randn_like(p) * 3)  # what a broken quantisation would compute
    monkeypatch.setattr(export_mod, "quantize_int8", lambda data, calib: export_bytes(other))
    with pytest.raises(FerlabError, match=r"INT8 model refused: .* PublicTest faces \(needs >= 98%\)"):
        export_onnx(str(tiny_checkpoint), tmp_path / "q.onnx", int8=True, calibration=fer_root / "train",
                    calibration_count=32)
    rc = main(["export", "--onnx", "--int8", "--model", str(tiny_checkpoint), "--calib", str(fer_root / "train"),
               "--calib-count", "32", "-o", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "INT8 model refused" in err[0] and "nothing written" in err[0]
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.slow
def test_shipped_fernet_int8_agrees_on_publictest(fer_root: Path, tmp_path: Path) -> None:
    """The shipped FerNet quantised as `ferlab export --int8` does: >= 98% on PublicTest faces
    (7-bit weights, so the same on CPUs with and without VNNI)."""
    pytest.importorskip("torch")
    path = export_onnx("fernet", tmp_path / "f8.onnx", int8=True, calibration=fer_root / "train")
    v = path.verification
    assert v is not None and v.what == "PublicTest faces" and v.inputs == 1000 and v.top1_agreement >= 0.98
