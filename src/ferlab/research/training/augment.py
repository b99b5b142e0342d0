"""Batched augmentation on the training device (thesis Table 6 and Eq. 21).

The whole training set sits on the device as uint8; each batch is augmented with one
``affine_grid``/``grid_sample`` call (flip, rotation and translation folded into one matrix)
and one vectorised random-erasing mask, instead of a per-sample PIL pipeline: on a GPU this
keeps the data path far ahead of the model, and on a CPU it costs a few ms per batch.
All randomness comes from an explicit generator, so an epoch is reproducible from its seed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config_schema import AugmentConfig


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def affine(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Random hflip (p), rotation (+-deg) and translation (+-fraction of side), zero fill,
    as torchvision's RandomHorizontalFlip + RandomRotation + RandomAffine(translate)."""
    n, dev = x.shape[0], x.device
    flip_p, rot, trans = cfg.hflip, cfg.rotation, cfg.translate
    s_lo, s_hi = cfg.scale
    if flip_p <= 0 and rot <= 0 and trans <= 0 and s_lo == s_hi == 1.0:
        return x
    flip = torch.where(torch.rand(n, generator=g, device=dev) < flip_p, -1.0, 1.0)
    ang = _uniform(n, -rot, rot, g, dev) * (math.pi / 180.0)
    scale = _uniform(n, s_lo, s_hi, g, dev)
    # normalised coordinates span 2 units per side, so a shift of t*side is 2t
    tx, ty = (_uniform(n, -trans, trans, g, dev) * 2.0 for _ in range(2))
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_erasing(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Eq. (21): with probability p, a rectangle of area s*H*W, s ~ U(s_l, s_h), log-uniform
    aspect ratio, is replaced by U(0,1) noise (on the [0,1] pixel scale, before normalising)."""
    p = cfg.erasing_p
    if p <= 0:
        return x
    n, _, h, w = x.shape
    dev = x.device
    area = _uniform(n, *cfg.erasing_scale, g, dev) * (h * w)
    lr0, lr1 = (math.log(v) for v in cfg.erasing_ratio)
    ratio = torch.exp(_uniform(n, lr0, lr1, g, dev))
    eh = torch.sqrt(area * ratio).round().clamp(1, h)
    ew = torch.sqrt(area / ratio).round().clamp(1, w)
    top = (torch.rand(n, generator=g, device=dev) * (h - eh + 1)).floor()
    left = (torch.rand(n, generator=g, device=dev) * (w - ew + 1)).floor()
    apply = torch.rand(n, generator=g, device=dev) < p
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    mask = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
            & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]) & apply[:, None, None])
    value = cfg.erasing_value
    if value == "noise":
        fill = torch.rand(x.shape, generator=g, device=dev, dtype=x.dtype)
    else:
        fill = torch.full_like(x, float(value))
    return torch.where(mask[:, None], fill, x)


def augment_batch(x01: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """(B,1,H,W) float in [0,1] -> augmented batch, still in [0,1] scale, as the ``augment``
    section ``cfg`` says."""
    return random_erasing(affine(x01, cfg, g), cfg, g)
