"""The 4-layer CNN trained from scratch in Exp. 1: the lower bound transfer learning must beat."""
from __future__ import annotations

import torch
from torch import nn

from ...constants import NUM_CLASSES


class ScratchCNN(nn.Module):
    """Conv(1,32,3)-BN-ReLU-MaxPool-Conv(32,64,3)-BN-ReLU-MaxPool-Conv(64,128,3)-GAP-Linear(128,7),
    exactly as written in Exp. 1 (the third conv has no BN/ReLU in the text; we keep a ReLU so
    GAP does not average signed responses away, and say so in the docs)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
