"""The PyTorch networks: the factory (timm-style ``create``), the registry of architectures and
checkpoint files (safetensors + JSON sidecar, or a box model's ONNX file read back).

Every network takes (N, 1, 48, 48) float input normalised by Eq. (27) and returns (N, 7) logits,
and exposes ``backbone``/``head`` (for staged unfreezing) and ``gradcam_layer``.

The names below are loaded on first use (PEP 562), so importing the package costs nothing.
"""
from __future__ import annotations

from ..._lazy import lazy_exports

_EXPORTS = {
    "create": "factory", "create_from_config": "factory", "list_models": "factory", "register": "factory",
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
}


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
