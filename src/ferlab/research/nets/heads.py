"""The classification head of section 6.1 and the widths of Table 3 / dropouts of Table 2."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ...constants import NUM_CLASSES


def make_head(in_features: int, hidden: Sequence[int] = (256,), dropout: Sequence[float] = (0.5, 0.25),
              num_classes: int = NUM_CLASSES) -> nn.Sequential:
    """Dropout(p1) -> [Linear -> BN -> ReLU -> Dropout(p2)]* -> Linear(., num_classes).

    ``hidden=()`` gives the plain ``fc 512->7`` of Exp. 2-3 (with Dropout(p1) only if p1 > 0);
    ``hidden=(256, 128)`` gives the deeper row of Table 3. Every hidden layer after the first
    reuses the second dropout rate.
    """
    p1 = float(dropout[0]) if len(dropout) > 0 else 0.0
    p2 = float(dropout[1]) if len(dropout) > 1 else p1
    layers: list[nn.Module] = []
    if p1 > 0:
        layers.append(nn.Dropout(p1))
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.BatchNorm1d(int(h)), nn.ReLU(inplace=True)]
        if p2 > 0:
            layers.append(nn.Dropout(p2))
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
