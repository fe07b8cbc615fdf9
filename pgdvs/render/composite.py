"""Composite of the static and dynamic layers.

- ``hard`` (the original, method reference §9): rgb = (1 - M) * static + M * dynamic, M = binary coverage.
- ``soft`` (project default): blends with the dynamic layer's fractional alpha (anti-aliased border instead
  of the one-pixel-too-wide binary mask), after closing small holes inside the coverage (their colour
  interpolated from the surrounding dynamic pixels) so the background does not flicker through a stretched
  object.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import CompositeConfig
from .dynamic import DynamicLayer
from .static import StaticLayer


@dataclass
class Composite:
    """rgb (H, W, 3) in [0, 1], depth (H, W), dyn_mask (H, W) bool, valid (H, W) bool."""

    rgb: torch.Tensor
    depth: torch.Tensor
    dyn_mask: torch.Tensor
    valid: torch.Tensor


def close_holes(dyn: DynamicLayer, radius: int) -> DynamicLayer:
    """Morphological closing of the coverage; newly covered pixels get the alpha-weighted mean colour/depth of
    the dynamic pixels in their (2r+1)^2 window."""
    size = 2 * radius + 1
    alpha = dyn.alpha[None, None]
    closed = -F.max_pool2d(-F.max_pool2d(alpha, size, 1, radius), size, 1, radius)
    if not bool((closed[0, 0] > dyn.alpha).any()):
        return dyn
    stack = torch.cat([dyn.rgb * dyn.alpha[..., None], (dyn.depth * dyn.alpha)[..., None], dyn.alpha[..., None]], -1)
    box = F.avg_pool2d(stack.permute(2, 0, 1)[None], size, 1, radius, count_include_pad=False)[0].permute(1, 2, 0)
    mean = box[..., :4] / box[..., 4:].clamp(min=1e-12)
    new = (closed[0, 0] > dyn.alpha) & (box[..., 4] > 0)
    rgb = torch.where(new[..., None], mean[..., :3], dyn.rgb)
    depth = torch.where(new, mean[..., 3], dyn.depth)
    alpha = torch.where(new, closed[0, 0], dyn.alpha)
    return DynamicLayer(rgb, alpha > 0.5, alpha, depth)


def composite(static: StaticLayer, dyn: DynamicLayer, cfg: CompositeConfig) -> Composite:
    if cfg.mode == "hard":
        alpha = dyn.mask.float()
    elif cfg.mode == "soft":
        if cfg.fill_holes_px > 0:
            dyn = close_holes(dyn, cfg.fill_holes_px)
        alpha = dyn.alpha
    else:
        raise ValueError(f"composite mode {cfg.mode!r}; allowed: hard, soft")
    a = alpha[..., None]
    rgb = ((1 - a) * static.rgb + a * dyn.rgb).clamp(0.0, 1.0)
    mask = dyn.mask
    depth = torch.where(mask, dyn.depth, static.depth)
    return Composite(rgb, depth, mask, static.valid | mask)
