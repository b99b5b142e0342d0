"""ResNet-18/50 for 48x48 grayscale faces (thesis section 6.1, Exp. 5-6).

The torchvision implementations are reused unchanged; only the stem and head are replaced:
``stem="thesis"`` is a 1-channel 3x3 stride-1 conv1 with the max-pool removed (48->48->24->12->6
spatially, so layer4 still has a 6x6 map for Grad-CAM); ``stem="original"`` keeps the 7x7/2 conv
and max-pool (the pre-Exp. 6 baseline, fed grey replicated to ``in_chans`` channels).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FerlabError
from .heads import make_head

# torchvision's ImageNet weights (IMAGENET1K_V1): the file names torchvision caches them as.
IMAGENET_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-0676ba61.pth"}
WEIGHTS_ENV = "FERLAB_IMAGENET_WEIGHTS"


class FerResNet(nn.Module):
    """torchvision ResNet trunk + the thesis head. ``backbone``/``head`` split the parameters
    for staged unfreezing (Exp. 4)."""

    def __init__(self, arch: str = "resnet18", *, in_chans: int = 1, stem: str = "thesis",
                 head: Sequence[int] = (256,), dropout: Sequence[float] = (0.5, 0.25)) -> None:
        super().__init__()
        import torchvision

        if arch not in IMAGENET_FILES:
            raise FerlabError(f"unknown ResNet {arch!r}; choose one of {', '.join(IMAGENET_FILES)}")
        trunk = getattr(torchvision.models, arch)(weights=None)
        if stem == "thesis":
            trunk.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
            trunk.maxpool = nn.Identity()
        elif stem == "original":
            if in_chans != 3:
                trunk.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            raise FerlabError(f"unknown stem {stem!r}; choose thesis or original")
        self.in_chans = in_chans
        self.stem_kind = stem
        feat = trunk.fc.in_features
        trunk.fc = nn.Identity()
        self.backbone = trunk
        self.head = make_head(feat, head, dropout)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.backbone.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_chans:
            x = x.expand(-1, self.in_chans, -1, -1)  # grey -> replicated RGB (pre-Exp. 6)
        return self.head(self.backbone(x))


def adapt_conv1(weight: torch.Tensor, in_chans: int, kernel_size: int) -> torch.Tensor:
    """Turn ImageNet's (64, 3, 7, 7) conv1 into the thesis stem.

    Channels: ``in_chans=1`` averages over RGB, W_new = (1/3) sum_c W_c (section 6.1), which
    makes the filter respond to a grey image exactly as the RGB filter does to the same grey
    image replicated into three channels, up to the factor 3 that the mean removes.
    Size: 7x7 -> 3x3 by area resampling (adaptive average pooling: each output tap is the mean
    of the 3x3 window of taps centred on taps 1, 3, 5), times (7/3)^2 so that a flat kernel
    keeps its sum: the filter keeps its orientation and polarity at the coarser scale and its
    response to a flat patch (DC gain) stays about the same, so the pretrained BN statistics
    remain sensible. Cropping the central 3x3 taps instead would keep only a fraction of most
    filters and lose their low-frequency shape.
    """
    w = weight.float()
    if in_chans == 1:
        w = w.mean(dim=1, keepdim=True)
    elif in_chans != w.shape[1]:
        raise FerlabError(f"cannot adapt a {w.shape[1]}-channel conv1 to {in_chans} channels")
    if kernel_size != w.shape[-1]:
        w = F.adaptive_avg_pool2d(w, kernel_size) * (w.shape[-1] / kernel_size) ** 2
    return w.to(weight.dtype)


def find_imagenet_weights(arch: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Local file given explicitly, by $FERLAB_IMAGENET_WEIGHTS, or in torch's hub cache."""
    candidates: list[Path] = []
    if path not in (None, "", "imagenet"):
        candidates.append(Path(path).expanduser())
        if not candidates[0].is_file():
            raise FerlabError(f"ImageNet weights file not found: {candidates[0]} "
                              f"(or pass --pretrained none to train from scratch)")
        return candidates[0]
    if os.environ.get(WEIGHTS_ENV):
        env = Path(os.environ[WEIGHTS_ENV]).expanduser()
        candidates.append(env / IMAGENET_FILES[arch] if env.is_dir() else env)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILES[arch])
    for c in candidates:
        if c.is_file():
            return c
    # Where a network exists, torchvision downloads into the hub cache.
    try:
        import torchvision

        weights = getattr(torchvision.models, f"ResNet{arch[6:]}_Weights").IMAGENET1K_V1
        weights.get_state_dict(progress=False)
        if candidates[-1].is_file():
            return candidates[-1]
    except Exception:  # no network: fall through to the clear error below
        pass
    raise FerlabError(
        f"ImageNet weights for {arch} not found (looked in {', '.join(map(str, candidates))}) and "
        f"they cannot be downloaded here. Put torchvision's {IMAGENET_FILES[arch]} there, give its path "
        f"with model.pretrained=PATH or ${WEIGHTS_ENV}, or pass --pretrained none to train from scratch.")


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as exc:
        raise FerlabError(f"cannot read weights file {path}: {exc}") from None
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise FerlabError(f"weights file {path} does not hold a state dict")
    return sd


def load_imagenet(model: FerResNet, arch: str, path: str | os.PathLike[str] | None = None) -> list[str]:
    """Copy ImageNet weights into the trunk (conv1 adapted, fc dropped); returns missing keys."""
    file = find_imagenet_weights(arch, path)
    sd = load_state_dict_file(file)
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    if "conv1.weight" not in sd:
        raise FerlabError(f"{file} is not a torchvision ResNet state dict (no conv1.weight)")
    conv1 = model.backbone.conv1
    sd["conv1.weight"] = adapt_conv1(sd["conv1.weight"], conv1.in_channels, conv1.kernel_size[0])
    result = model.backbone.load_state_dict(sd, strict=False)
    if result.unexpected_keys:
        raise FerlabError(f"{file} does not match {arch}: unexpected keys {result.unexpected_keys[:5]}")
    if result.missing_keys:
        raise FerlabError(f"{file} does not match {arch}: missing keys {result.missing_keys[:5]}")
    return list(result.missing_keys)
