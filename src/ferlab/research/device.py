"""The one rule for ``--device``, shared by train, evaluate, the experiments and Grad-CAM.

``auto`` (also ``None`` or empty) means the first CUDA device when PyTorch sees one, else the
CPU, so a command does the same thing whichever of them it is. Asking for CUDA on a machine
without it is a user error with a one-line message, not a traceback from deep inside PyTorch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import FerlabError

if TYPE_CHECKING:
    import torch

AUTO = "auto"


def resolve_device(spec: str | torch.device | None = AUTO) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (or a ``torch.device``) -> ``torch.device``."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or AUTO).strip()
    if spec == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise FerlabError(f"--device {spec} asked for, but no CUDA device is available (use --device cpu or auto)")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise FerlabError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
