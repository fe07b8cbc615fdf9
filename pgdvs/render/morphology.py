"""Square max filters on image grids, separable and pure torch.

``F.max_pool2d`` with stride 1 on a single-channel CPU image runs on one thread and costs ~5 ms at 480x270;
two passes of shifted elementwise maxima give the same values several times faster there. On a GPU
``max_pool2d`` is one kernel instead of 4r + 1, and is used. Shapes: (..., H, W).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def max_filter(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Maximum over the (2r+1)^2 window of every pixel, ignoring what lies outside the image (like max_pool2d
    with padding r). image (..., H, W) float -> same shape."""
    if radius <= 0:
        return image
    if image.device.type != "cpu":  # one kernel there, where launches (not arithmetic) bound the time
        flat = image.reshape(-1, 1, *image.shape[-2:])
        return F.max_pool2d(flat, 2 * radius + 1, 1, radius).reshape(image.shape)
    out = F.pad(image, (radius, radius, radius, radius), value=-torch.inf)
    for dim, size in ((-1, image.shape[-1]), (-2, image.shape[-2])):
        padded = out
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
