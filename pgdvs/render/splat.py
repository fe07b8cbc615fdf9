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


def _bilinear_targets(uv: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the bilinear kernel of each position lands: flat pixel index (4, P) long and weight (4, P), corners
    in the original kernel order (x0 y0, x1 y0, x0 y1, x1 y1). Corners outside the image (or of a non-finite
    position) get index H*W, a spare cell: a fixed-size scatter instead of boolean selection (a host sync)."""
    height, width = hw
    x, y = uv[:, 0], uv[:, 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    x1, y1 = x0 + 1, y0 + 1
    cx, cy = torch.stack([x0, x1]), torch.stack([y0, y1])  # (2, P)
    wx, wy = torch.stack([x1 - x, x - x0]), torch.stack([y1 - y, y - y0])
    inside = ((cy >= 0) & (cy < height))[:, None] & ((cx >= 0) & (cx < width))[None]  # (2 rows, 2 cols, P)
    index = torch.where(inside, cy[:, None] * width + cx[None], height * width).long()
    return index.reshape(4, -1), (wx[None] * wy[:, None]).reshape(4, -1)


def _scatter_add(index: torch.Tensor, values: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Sum values (4, P, C) into their pixels index (4, P) -> (H*W, C), the spare cell dropped."""
    height, width = hw
    acc = values.new_zeros(height * width + 1, values.shape[-1])
    acc.index_add_(0, index.reshape(-1), values.reshape(-1, values.shape[-1]))
    return acc[:-1]


def softmax_splat(values: torch.Tensor, uv: torch.Tensor, metric: torch.Tensor, hw: tuple[int, int],
                  eps: float = SPLAT_EPS) -> torch.Tensor:
    """Splat P samples onto an H x W canvas.

    values (P, C), uv (P, 2) target pixel positions (u = column, v = row), metric (P,) = Z -> (H, W, C).
    Non-finite positions are skipped, as in the original kernel.
    """
    return softmax_splat_density(values, uv, metric, hw, metric.new_zeros(metric.shape), eps)[0]


def softmax_splat_density(values: torch.Tensor, uv: torch.Tensor, metric: torch.Tensor, hw: tuple[int, int],
                          coverage: torch.Tensor, eps: float = SPLAT_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`softmax_splat` and, from the same scatter, the plain bilinear sum of coverage (P,) -> (H, W): with
    coverage 1 on the samples of a surface (0 elsewhere) it is their :func:`splat_density`."""
    chans = values.shape[1]
    index, b = _bilinear_targets(uv, hw)
    e = torch.exp(metric)[:, None]
    acc = _scatter_add(index, torch.cat([values * e, e, coverage[:, None]], dim=1)[None] * b[..., None], hw)
    out = acc[:, :chans] / (acc[:, chans:chans + 1] + eps)
    return out.reshape(*hw, chans), acc[:, chans + 1].reshape(hw)


def splat_density(uv: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Unnormalised bilinear coverage: sum of the kernel weights landing on each pixel. uv (P, 2) -> (H, W).

    About 1 inside a splatted surface at unit magnification, fractional on its border (anti-aliasing)."""
    index, b = _bilinear_targets(uv, hw)
    return _scatter_add(index, b[..., None], hw).reshape(hw)


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
