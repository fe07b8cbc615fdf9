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
from .morphology import max_filter, min_filter
from .static import StaticLayer


@dataclass
class Composite:
    """rgb (H, W, 3) in [0, 1], depth (H, W), dyn_mask (H, W) bool, valid (H, W) bool."""

    rgb: torch.Tensor
    depth: torch.Tensor
    dyn_mask: torch.Tensor
    valid: torch.Tensor


def _bounding_box(mask: torch.Tensor) -> list[int] | None:
    """[row0, row1, col0, col1] (inclusive) of the True pixels of mask (H, W), None when there are none. One
    transfer from the device (a nonzero and four scalars would be five)."""
    rows, cols = mask.any(1).cumsum(0), mask.any(0).cumsum(0)  # hits so far along each axis
    # first hit: the number of leading zeros; last hit: where the count reaches its maximum
    box = torch.stack([(rows == 0).sum(), rows.argmax(), (cols == 0).sum(), cols.argmax(), rows[-1]]).tolist()
    return box[:4] if box[4] > 0 else None


def close_holes(dyn: DynamicLayer, radius: int) -> DynamicLayer:
    """Morphological closing of the coverage; newly covered pixels get the alpha-weighted mean colour/depth of
    the dynamic pixels in their (2r+1)^2 window. Works on the coverage's bounding box grown by 2r (exact: no
    pixel further out can change)."""
    box = _bounding_box(dyn.alpha > 0)
    if box is None:
        return dyn
    height, width = dyn.alpha.shape
    y0, y1 = max(box[0] - 2 * radius, 0), min(box[1] + 2 * radius + 1, height)
    x0, x1 = max(box[2] - 2 * radius, 0), min(box[3] + 2 * radius + 1, width)
    crop = DynamicLayer(*(x[y0:y1, x0:x1] for x in (dyn.rgb, dyn.mask, dyn.alpha, dyn.depth)))
    closed = _close_holes_dense(crop, radius)
    if closed is crop:
        return dyn
    out = DynamicLayer(dyn.rgb.clone(), dyn.mask.clone(), dyn.alpha.clone(), dyn.depth.clone())
    for full, part in zip((out.rgb, out.mask, out.alpha, out.depth), (closed.rgb, closed.mask, closed.alpha, closed.depth)):
        full[y0:y1, x0:x1] = part
    return out


def _close_holes_dense(dyn: DynamicLayer, radius: int) -> DynamicLayer:
    """:func:`close_holes` over the whole layer (returns ``dyn`` itself when nothing changes)."""
    size = 2 * radius + 1
    closed = min_filter(max_filter(dyn.alpha, radius), radius)
    if not bool((closed > dyn.alpha).any()):
        return dyn
    stack = torch.cat([dyn.rgb * dyn.alpha[..., None], (dyn.depth * dyn.alpha)[..., None], dyn.alpha[..., None]], -1)
    box = F.avg_pool2d(stack.permute(2, 0, 1)[None], size, 1, radius, count_include_pad=False)[0].permute(1, 2, 0)
    mean = box[..., :4] / box[..., 4:].clamp(min=1e-12)
    new = (closed > dyn.alpha) & (box[..., 4] > 0)
    rgb = torch.where(new[..., None], mean[..., :3], dyn.rgb)
    depth = torch.where(new, mean[..., 3], dyn.depth)
    alpha = torch.where(new, closed, dyn.alpha)
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
