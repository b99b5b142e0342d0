"""Models by name: which models are in the box (``ferlab/pretrained``), which one is the
default, and where any other checkpoint is found (a path, a run folder or ``$FERLAB_ZOO``).

Reads JSON sidecars only, so it works in the core install without PyTorch; the networks
themselves and checkpoint files are the research kit's (:mod:`ferlab.research.nets`).
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {"resolve_model": "hub", "shipped_models": "hub", "default_model": "hub", "ShippedModel": "hub"}


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
