"""FerNet: a compact CNN for CPUs, the model shipped for laptops.

ResNet-18 at 48x48 without max-pool costs ~1.25 GMACs per face (counted with FlopCounterMode);
this VGG-style network with residual stages costs about a quarter of that and keeps full 48x48
resolution only in a thin stem, so a laptop CPU can train it in hours and run it at about
a millisecond or two per face (maintainers/benchmarks/results-cpu.md has the measured numbers).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...constants import NUM_CLASSES
from .heads import make_head


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Stage(nn.Module):
    """Downsample (max-pool), widen with one conv, then ``depth`` residual pairs of convs."""

    def __init__(self, cin: int, cout: int, depth: int, pool: bool) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.widen = _cbr(cin, cout)
        self.blocks = nn.ModuleList(
            nn.Sequential(_cbr(cout, cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            for _ in range(depth))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.widen(self.pool(x))
        for block in self.blocks:
            x = self.act(x + block(x))
        return x


class FerNet(nn.Module):
    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), depths: Sequence[int] = (0, 1, 1, 1),
                 head: Sequence[int] = (256,), dropout: Sequence[float] = (0.5, 0.25),
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        cin = 1
        for i, (w, d) in enumerate(zip(widths, depths)):
            stages.append(_Stage(cin, w, d, pool=i > 0))
            cin = w
        self.backbone = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = make_head(cin, head, dropout, num_classes)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.backbone[-3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
