"""Model outputs for a batch of uint8 faces, normalised exactly as in training.

Checkpoint selection in the trainer, the experiments runner and ``ferlab evaluate`` all call
:func:`predict_logits` (``predict_probs`` is its softmax), so the validation accuracy written
into a checkpoint's sidecar is the number ``ferlab evaluate --split val`` reports for it, and a
reported number can never come from a preprocessing other than the one the model was
selected with.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ...inference.preprocess import normalise
from ...probabilities import softmax


def _as_nchw(images: Any) -> Any:
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[1] == 1:
        return images
    raise ValueError(f"expected faces as (N, H, W) or (N, 1, H, W), got shape {tuple(images.shape)}")


def _model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    return None


def _check_faces(images: Any) -> Any:
    """uint8 faces as (N, 1, H, W), NumPy or torch; anything else is refused."""
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8:
            raise TypeError(f"predict wants raw uint8 pixels, got {images.dtype} (do not normalise first)")
    else:
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"predict wants raw uint8 pixels, got {images.dtype} (do not normalise first)")
    images = _as_nchw(images)
    if len(images) == 0:
        raise ValueError("predict got no images")
    return images


@torch.no_grad()
def predict_logits(model: nn.Module, images_uint8: np.ndarray | torch.Tensor, mean: float, std: float, *,
                   batch_size: int = 512, tta: bool = False, device: str | torch.device = "cpu",
                   amp: bool = False, channels_last: bool = False) -> torch.Tensor:
    """float32 logits on ``device``: (N, C), or (2, N, C) with ``tta`` (each face, then its mirror).

    ``images_uint8`` must be raw 0-255 pixels (a NumPy array, possibly a read-only memory map, or
    a uint8 tensor already on the device): a float array here would usually mean the caller
    already normalised, and normalising twice silently ruins accuracy, so it is refused.
    ``amp`` runs the forward pass under bf16 autocast and ``channels_last`` changes the memory
    layout; both are off by default because ``ferlab evaluate`` reports fp32 numbers.
    The model is put in eval mode for the call and its previous mode restored, so the trainer
    can call this between epochs.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    images = _check_faces(images_uint8)
    device = torch.device(device)
    model_dev = _model_device(model)
    if model_dev is not None and model_dev.type != device.type:
        raise ValueError(f"model is on {model_dev} but device={device}; move the model first")
    was_training = model.training
    model.eval()
    views: list[list[torch.Tensor]] = [[], []] if tta else [[]]
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            # NumPy: copy, since the source is often a read-only memory map
            x = batch.to(device) if isinstance(batch, torch.Tensor) else torch.from_numpy(np.array(batch)).to(device)
            x = normalise(x, mean, std)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for out, inp in zip(views, (x, torch.flip(x, dims=[3]))):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    out.append(model(inp).float())
    finally:
        model.train(was_training)
    logits = [torch.cat(v) for v in views]
    return torch.stack(logits) if tta else logits[0]


def probs_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """float64 softmax of :func:`predict_logits`' output; with TTA views (2, N, C) the mean of
    the two softmaxes (faces are left-right symmetric enough that training uses random flips)."""
    return torch.from_numpy(softmax(logits.detach().float().cpu().numpy()))


def predict_probs(model: nn.Module, images_uint8: np.ndarray, mean: float, std: float,
                  batch_size: int = 512, tta: bool = False, device: str | torch.device = "cpu") -> np.ndarray:
    """Softmax probabilities, (N, C) float64 NumPy (see :func:`predict_logits`)."""
    logits = predict_logits(model, images_uint8, mean, std, batch_size=batch_size, tta=tta, device=device)
    return probs_from_logits(logits).cpu().numpy()
