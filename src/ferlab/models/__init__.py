"""Models: the factory (timm-style ``create``), the registry of architectures, checkpoint I/O
and model-name resolution (shipped names, checkpoint files, run folders).

Every model takes (N, 1, 48, 48) float input normalised by Eq. (27) and returns (N, 7) logits,
and exposes ``backbone``/``head`` (for staged unfreezing) and ``gradcam_layer``.

The names below are loaded on first use (PEP 562), so ``ferlab.models.hub`` (which shipped
model is which, from JSON sidecars) works without importing PyTorch.
"""
from __future__ import annotations

from .._lazy import lazy_exports


_EXPORTS = {
    "create": "factory", "create_from_config": "factory", "list_models": "factory", "register": "factory",
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "resolve_model": "hub", "shipped_models": "hub", "default_model": "hub", "ShippedModel": "hub",
}


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
