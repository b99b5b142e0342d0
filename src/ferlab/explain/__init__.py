"""Grad-CAM (thesis section 4.11) and the per-class attention study of section 8."""
from .gradcam import GradCAM, gradcam_maps
from .images import gradcam
from .study import gradcam_study

__all__ = ["GradCAM", "gradcam", "gradcam_maps", "gradcam_study"]
