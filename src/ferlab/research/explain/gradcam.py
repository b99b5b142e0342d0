"""Grad-CAM (thesis section 4.11, Eqs. 24-25) with hooks on ``model.gradcam_layer``.

A forward hook on the layer keeps its activations A; dS_c/dA is then taken with
``torch.autograd.grad`` instead of a module backward hook and ``.backward()``: that leaves the
parameters' ``.grad`` untouched (explaining a model mid-training cannot corrupt the next
optimiser step) and works with the in-place ReLUs the layers end in, which module backward
hooks reject. The forward hook is always removed (context manager), so a model that was
explained can still be exported, pickled or traced without a stray hook.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class GradCAM:
    """``with GradCAM(model) as cam: maps, logits = cam(x, targets)``."""

    def __init__(self, model: nn.Module, layer: nn.Module | None = None) -> None:
        self.model = model
        self.layer = layer if layer is not None else model.gradcam_layer
        self._handle: Any = None
        self._acts: torch.Tensor | None = None

    def _forward_hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._acts = output

    def __enter__(self) -> GradCAM:
        self._handle = self.layer.register_forward_hook(self._forward_hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._acts = None

    def __call__(self, x: torch.Tensor, targets: int | Sequence[int] | torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class maps at the layer's resolution, (N, h, w) >= 0, and the logits (N, C).

        ``targets``: one class for all, one per sample, or None for each sample's predicted
        class. Samples are independent in eval mode, so the gradient of the summed target
        scores gives every sample its own gradient in one pass.
        """
        if self._handle is None:
            raise RuntimeError("use GradCAM as a context manager: with GradCAM(model) as cam: ...")
        was_training = self.model.training
        self.model.eval()  # BN batch statistics would mix samples and make maps batch-dependent
        try:
            with torch.enable_grad():
                # input requires grad so the layer's output has a graph even if the backbone is frozen
                x = x.detach().clone().requires_grad_(True)
                logits = self.model(x)
                if targets is None:
                    idx = logits.argmax(dim=1)
                else:
                    idx = torch.as_tensor(targets, device=logits.device).long().expand(len(logits))
                acts = self._acts
                if acts is None or not acts.requires_grad:
                    raise RuntimeError("gradcam_layer produced no activations with a graph; is it used in forward()?")
                score = logits.gather(1, idx[:, None]).sum()  # S_c, pre-softmax (Eq. 24)
                (grads,) = torch.autograd.grad(score, acts)
            weights = grads.mean(dim=(2, 3), keepdim=True)  # Eq. 24, alpha_k^c (Z = h*w)
            cams = F.relu((weights * acts).sum(dim=1))  # Eq. 25
            return cams.detach(), logits.detach()
        finally:
            self._acts = None
            self.model.train(was_training)


def upsample(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling to the input size; a convex combination of non-negative values, so
    the map stays >= 0."""
    return F.interpolate(cams[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def gradcam_maps(model: nn.Module, x: torch.Tensor, targets: int | Sequence[int] | torch.Tensor | None = None,
                 layer: nn.Module | None = None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM for normalised inputs ``x`` (N, 1, H, W): maps upsampled to (N, H, W), raw
    scale (not normalised, so maps of different faces can be averaged by their mass), and
    softmax probabilities (N, C) of the same forward pass."""
    maps, probs = [], []
    device = next(model.parameters()).device
    with GradCAM(model, layer) as cam:
        for s in range(0, len(x), batch_size):
            xb = x[s:s + batch_size].to(device)
            tb = targets
            if targets is not None and not isinstance(targets, int):
                tb = torch.as_tensor(targets)[s:s + batch_size]
            m, logits = cam(xb, tb)
            maps.append(upsample(m, tuple(x.shape[-2:])).cpu().numpy())
            probs.append(logits.double().softmax(dim=1).cpu().numpy())
    return np.concatenate(maps).astype(np.float32), np.concatenate(probs)


def normalise_max(cam: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] for display; an all-zero map (no positive evidence) stays zero."""
    peak = float(cam.max())
    return cam / peak if peak > 0 else np.zeros_like(cam)
