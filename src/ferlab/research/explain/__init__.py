"""Grad-CAM (thesis section 4.11) and the per-class attention study of section 8."""
from __future__ import annotations

from ..._lazy import lazy_exports


# Loaded on first use (PEP 562), so building the ``ferlab`` parser (which imports this area's
# cli module) needs no PyTorch: the core install lists every command and names the extra.
_LAZY = {'GradCAM': 'gradcam', 'gradcam_maps': 'gradcam', 'gradcam': 'images', 'gradcam_study': 'study'}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
