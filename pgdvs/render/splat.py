"""Softmax splatting (Niklaus & Liu 2020): bilinear forward warping weighted by exp(metric).

out(q) = sum_p b(p->q) * e^Z(p) * v(p) / (sum_p b(p->q) * e^Z(p) + 1e-7), b = bilinear kernel: each source
sample spreads to the 4 integer pixels around its (fractional) target position; corners outside are dropped.
No shift by max(Z): the 1e-7 term interacts with small weights, a shift would change results.

``softmax_splat`` accumulates with ``index_add_`` (pure torch, CPU and CUDA); ``softmax_splat_reference`` is
the loop twin used by the parity tests.
"""
from __future__ import annotations

import torch

from ..geometry import pixel_grid

SPLAT_EPS = 1e-7


def _corners(uv: torch.Tensor):
    """The 4 bilinear corners of each position: list of (x (P,), y (P,), weight (P,)), original kernel order."""
    x, y = uv[:, 0], uv[:, 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    x1, y1 = x0 + 1, y0 + 1
    return [
        (x0, y0, (x1 - x) * (y1 - y)),
        (x1, y0, (x - x0) * (y1 - y)),
        (x0, y1, (x1 - x) * (y - y0)),
        (x1, y1, (x - x0) * (y - y0)),
    ]


def softmax_splat(values: torch.Tensor, uv: torch.Tensor, metric: torch.Tensor, hw: tuple[int, int],
                  eps: float = SPLAT_EPS) -> torch.Tensor:
    """Splat P samples onto an H x W canvas.

    values (P, C), uv (P, 2) target pixel positions (u = column, v = row), metric (P,) = Z -> (H, W, C).
    Non-finite positions are skipped, as in the original kernel.
    """
    height, width = hw
    chans = values.shape[1]
    ok = torch.isfinite(uv).all(-1)
    values, uv, metric = values[ok], uv[ok], metric[ok]
    weighted = torch.cat([values * torch.exp(metric)[:, None], torch.exp(metric)[:, None]], dim=1)
    acc = torch.zeros(height * width, chans + 1, dtype=values.dtype, device=values.device)
    for cx, cy, b in _corners(uv):
        inside = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
        index = (cy[inside] * width + cx[inside]).long()
        acc.index_add_(0, index, weighted[inside] * b[inside, None])
    out = acc[:, :chans] / (acc[:, chans:] + eps)
    return out.reshape(height, width, chans)


def splat_density(uv: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Unnormalised bilinear coverage: sum of the kernel weights landing on each pixel. uv (P, 2) -> (H, W).

    About 1 inside a splatted surface at unit magnification, fractional on its border (anti-aliasing)."""
    height, width = hw
    uv = uv[torch.isfinite(uv).all(-1)]
    acc = torch.zeros(height * width, dtype=uv.dtype, device=uv.device)
    for cx, cy, b in _corners(uv):
        inside = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
        acc.index_add_(0, (cy[inside] * width + cx[inside]).long(), b[inside])
    return acc.reshape(height, width)


def softmax_splat_image(image: torch.Tensor, flow: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """Image form, as the original calls it: image (H, W, C), flow (H, W, 2), metric (H, W) -> (H, W, C)."""
    height, width = flow.shape[:2]
    uv = (pixel_grid(height, width, device=flow.device, dtype=flow.dtype) + flow).reshape(-1, 2)
    return softmax_splat(image.reshape(height * width, -1), uv, metric.reshape(-1), (height, width))


def softmax_splat_reference(values: torch.Tensor, uv: torch.Tensor, metric: torch.Tensor, hw: tuple[int, int],
                            eps: float = SPLAT_EPS) -> torch.Tensor:
    """Loop twin of :func:`softmax_splat` (tiny inputs only)."""
    height, width = hw
    chans = values.shape[1]
    num = torch.zeros(height, width, chans, dtype=torch.float64)
    den = torch.zeros(height, width, dtype=torch.float64)
    for p in range(values.shape[0]):
        u, v = float(uv[p, 0]), float(uv[p, 1])
        if not (torch.isfinite(uv[p]).all()):
            continue
        e = float(torch.exp(metric[p]))
        x0, y0 = int(torch.floor(uv[p, 0])), int(torch.floor(uv[p, 1]))
        for cx, cy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
            if 0 <= cx < width and 0 <= cy < height:
                b = (1 - abs(u - cx)) * (1 - abs(v - cy))
                num[cy, cx] += b * e * values[p].double()
                den[cy, cx] += b * e
    return (num / (den[..., None] + eps)).to(values.dtype)
