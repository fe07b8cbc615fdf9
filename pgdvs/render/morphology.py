"""Square max filters on image grids, separable and pure torch.

``F.max_pool2d`` with stride 1 on a single-channel CPU image runs on one thread and costs ~5 ms at 480x270;
two passes of shifted elementwise maxima give the same values several times faster. Shapes: (..., H, W).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def max_filter(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Maximum over the (2r+1)^2 window of every pixel, ignoring what lies outside the image (like max_pool2d
    with padding r). image (..., H, W) float -> same shape."""
    if radius <= 0:
        return image
    out = image
    for dim, pad in ((-1, (radius, radius)), (-2, (0, 0, radius, radius))):
        padded = F.pad(out, pad, value=-torch.inf)
        size = out.shape[dim]
        out = padded.narrow(dim, 0, size)
        for shift in range(1, 2 * radius + 1):
            out = torch.maximum(out, padded.narrow(dim, shift, size))
    return out


def min_filter(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Minimum over the (2r+1)^2 window (outside the image ignored). image (..., H, W) float -> same shape."""
    return -max_filter(-image, radius)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Square dilation of bool masks (..., H, W) by ``radius`` pixels."""
    if radius <= 0:
        return mask
    return max_filter(mask.float(), radius) > 0
