"""Class probabilities for a batch of uint8 faces, normalised exactly as in training.

Training, the experiments runner and ``ferlab evaluate`` all call :func:`predict_probs`, so a
reported number can never come from a slightly different preprocessing than the one the
model was selected with.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..preprocessing import normalise


def _as_nchw(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[1] == 1:
        return images
    raise ValueError(f"expected faces as (N, H, W) or (N, 1, H, W), got shape {images.shape}")


def _model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    return None


@torch.no_grad()
def predict_probs(model: nn.Module, images_uint8: np.ndarray, mean: float, std: float,
                  batch_size: int = 512, tta: bool = False, device: str | torch.device = "cpu") -> np.ndarray:
    """Softmax probabilities, (N, C) float64.

    ``images_uint8`` must be raw 0-255 pixels: a float array here would usually mean the caller
    already normalised, and normalising twice silently ruins accuracy, so it is refused.
    ``tta=True`` averages the softmax of each face and of its mirror image (faces are
    left-right symmetric enough that training already uses random flips).
    The model is put in eval mode for the call and its previous mode restored, so the trainer
    can call this between epochs.
    """
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8:
        raise TypeError(f"predict_probs wants raw uint8 pixels, got {images.dtype} (do not normalise first)")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    images = _as_nchw(images)
    if len(images) == 0:
        raise ValueError("predict_probs got no images")
    device = torch.device(device)
    model_dev = _model_device(model)
    if model_dev is not None and model_dev.type != device.type:
        raise ValueError(f"model is on {model_dev} but device={device}; move the model first")
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(images), batch_size):
            # copy: the source is often a read-only memory map
            x = torch.from_numpy(np.array(images[start:start + batch_size])).to(device)
            x = normalise(x, mean, std)
            p = model(x).double().softmax(dim=1)
            if tta:
                p = 0.5 * (p + model(torch.flip(x, dims=[3])).double().softmax(dim=1))
            out.append(p.cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)
