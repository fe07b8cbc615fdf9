"""Z-buffered point rasterisation with a radius in NDC, K points per pixel, normalised-weight compositing.

Same semantics as the PyTorch3D path the original uses (``PointsRasterizer`` with ``bin_size=0`` followed by
``NormWeightedCompositor``), re-implemented in pure torch:

- NDC: +x left, +y up; the shorter image side spans [-1, 1], the longer one [-s, s] with s = long/short.
  Output pixel (row y, col x) has its centre at NDC (x_ndc(W-1-x), y_ndc(H-1-y)) with
  x_ndc(i) = -r/2 + (r*i + r/2)/W, r = 2*W/min(H, W) (or 2 when W is the shorter side).
- A point with view depth z < 0 is skipped; it covers a pixel when its squared NDC distance d2 < radius^2.
- Each pixel keeps the K covering points with the smallest (z, point index), ascending.
- Compositing weight w = 1 - d2/radius^2; colour = sum(w*c) / max(sum(w), 1e-4); background 0.

``rasterize_points`` is the fast path (vectorised, chunked over points); ``rasterize_points_reference`` is the
brute-force twin used by the parity tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry import project_points as project

COMPOSITE_EPS = 1e-4


@dataclass
class Fragments:
    """Per-pixel hits, nearest first. idx (H, W, K) long (-1 = empty), zbuf (H, W, K), dists (H, W, K) = d2."""

    idx: torch.Tensor
    zbuf: torch.Tensor
    dists: torch.Tensor


def _ndc_range(size: int, other: int) -> float:
    return 2.0 * size / other if size > other else 2.0


def pixel_centers_ndc(hw: tuple[int, int], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """NDC centres of output columns and rows: (x (W,), y (H,)), PyTorch3D's flipped, non-square convention."""
    height, width = hw

    def centres(size, other):
        rng = _ndc_range(size, other)
        i = torch.arange(size - 1, -1, -1, device=device, dtype=torch.float32)  # flipped axis
        return -rng / 2 + (rng * i + rng / 2) / size

    return centres(width, height), centres(height, width)


def opencv_to_ndc(uv: torch.Tensor, hw: tuple[int, int], pixel_offset: float = 0.0) -> torch.Tensor:
    """OpenCV pixel coordinates -> PyTorch3D NDC, as ``cameras_from_opencv_projection`` does.

    uv (..., 2) -> (..., 2). With ``pixel_offset=0`` (the original) a point at integer pixel u lands between
    output columns u-1 and u, because PyTorch3D puts pixel centres at u + 0.5; ``pixel_offset=0.5`` moves it
    onto output column u (the project's integer-centre convention).
    """
    height, width = hw
    scale = min(height, width) / 2.0
    x = -(uv[..., 0] + pixel_offset - width / 2.0) / scale
    y = -(uv[..., 1] + pixel_offset - height / 2.0) / scale
    return torch.stack([x, y], dim=-1)


def points_to_ndc(points: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, hw: tuple[int, int],
                  pixel_offset: float = 0.0) -> torch.Tensor:
    """World points (P, 3) -> (P, 3) [x_ndc, y_ndc, view z] for an OpenCV camera K (3, 3), c2w (4, 4)."""
    uv, z = project(points, K, c2w)
    return torch.cat([opencv_to_ndc(uv, hw, pixel_offset), z[:, None]], dim=-1)


def _candidates(ndc: torch.Tensor, start: int, hw, radius: float, xs: torch.Tensor, ys: torch.Tensor):
    """All (pixel, point, z, d2) where a point of this chunk covers a pixel centre, in point-major order."""
    height, width = hw
    r_px = radius * min(height, width) / 2.0
    rx, ry = _ndc_range(width, height), _ndc_range(height, width)
    # continuous output column / row of each point (inverse of pixel_centers_ndc)
    col = (width - 1) - ((ndc[:, 0] + rx / 2) * width - rx / 2) / rx
    row = (height - 1) - ((ndc[:, 1] + ry / 2) * height - ry / 2) / ry
    slack = 1e-3  # the window only has to contain every hit; the exact NDC test below decides
    span = int(2 * r_px + 2 * slack) + 2
    offs = torch.arange(span, device=ndc.device)
    cc = torch.floor(col - r_px - slack).long()[:, None] + offs  # (P, span)
    rr = torch.floor(row - r_px - slack).long()[:, None] + offs
    col_ok, row_ok = (cc >= 0) & (cc < width), (rr >= 0) & (rr < height)
    dx = ndc[:, :1] - xs[cc.clamp(0, width - 1)]
    dy = ndc[:, 1:2] - ys[rr.clamp(0, height - 1)]
    d2 = dy[:, :, None] * dy[:, :, None] + dx[:, None, :] * dx[:, None, :]  # (P, span_rows, span_cols)
    hit = (d2 < radius * radius) & row_ok[:, :, None] & col_ok[:, None, :] & (ndc[:, 2] >= 0)[:, None, None]
    p, i, j = hit.nonzero(as_tuple=True)
    return rr[p, i] * width + cc[p, j], p + start, ndc[p, 2], d2[p, i, j]


def _keep_nearest(pix, pt, z, d2, k: int):
    """Per pixel keep the k candidates with the smallest (z, point index), sorted by pixel then rank.

    Inputs come with equal z in ascending point index and the sort is stable, so ties break as in PyTorch3D's
    heap. z >= 0, so its float32 bit pattern orders like the value and packs with the pixel into one int64 key.
    """
    zbits = z.contiguous().view(torch.int32).long()
    order = torch.sort((pix << 31) | zbits, stable=True).indices
    pix, pt, z, d2 = pix[order], pt[order], z[order], d2[order]
    pos = torch.arange(pix.shape[0], device=pix.device)
    is_start = torch.ones_like(pix, dtype=torch.bool)
    is_start[1:] = pix[1:] != pix[:-1]
    rank = pos - torch.cummax(torch.where(is_start, pos, torch.zeros_like(pos)), 0).values
    keep = rank < k
    return pix[keep], pt[keep], z[keep], d2[keep], rank[keep]


def rasterize_points(ndc: torch.Tensor, hw: tuple[int, int], radius: float, points_per_pixel: int,
                     chunk: int = 1 << 16) -> Fragments:
    """Rasterise points given as ndc (P, 3) = [x_ndc, y_ndc, view z]. Returns Fragments of shape (H, W, K).

    Memory is bounded by ``chunk`` points at a time; the running per-pixel top-K is merged with each chunk.
    """
    height, width = hw
    k = points_per_pixel
    dev = ndc.device
    xs, ys = pixel_centers_ndc(hw, dev)
    empty_l = torch.empty(0, dtype=torch.long, device=dev)
    empty_f = torch.empty(0, dtype=torch.float32, device=dev)
    kept = (empty_l, empty_l, empty_f, empty_f, empty_l)
    for start in range(0, ndc.shape[0], chunk):
        cand = _candidates(ndc[start:start + chunk].float(), start, hw, radius, xs, ys)
        kept = _keep_nearest(*[torch.cat([a, b]) for a, b in zip(kept[:4], cand)], k)
    pix, pt, z, d2, rank = kept
    idx = torch.full((height * width, k), -1, dtype=torch.long, device=dev)
    zbuf = torch.full((height * width, k), -1.0, device=dev)
    dists = torch.full((height * width, k), -1.0, device=dev)
    idx[pix, rank], zbuf[pix, rank], dists[pix, rank] = pt, z, d2
    shape = (height, width, k)
    return Fragments(idx.reshape(shape), zbuf.reshape(shape), dists.reshape(shape))


def rasterize_points_reference(ndc: torch.Tensor, hw: tuple[int, int], radius: float,
                               points_per_pixel: int) -> Fragments:
    """Brute-force twin of :func:`rasterize_points`: loop over pixels and points (tiny inputs only)."""
    height, width = hw
    k = points_per_pixel
    xs, ys = pixel_centers_ndc(hw, ndc.device)
    idx = torch.full((height, width, k), -1, dtype=torch.long)
    zbuf = torch.full((height, width, k), -1.0)
    dists = torch.full((height, width, k), -1.0)
    pts = ndc.float().cpu()
    for y in range(height):
        for x in range(width):
            hits = []
            for p in range(pts.shape[0]):
                px, py, pz = pts[p]
                if pz < 0:
                    continue
                dx, dy = px - xs[x].cpu(), py - ys[y].cpu()
                d2 = dx * dx + dy * dy
                if d2 < radius * radius:
                    hits.append((float(pz), p, float(d2)))
            for slot, (pz, p, d2) in enumerate(sorted(hits)[:k]):
                idx[y, x, slot], zbuf[y, x, slot], dists[y, x, slot] = p, pz, d2
    return Fragments(idx, zbuf, dists)


def point_weights(frags: Fragments, radius: float) -> torch.Tensor:
    """Compositing weights w = 1 - d2/r^2 where a point hit, else 0. (H, W, K)."""
    hit = frags.idx >= 0
    return torch.where(hit, 1.0 - frags.dists / (radius * radius), torch.zeros_like(frags.dists))


def composite_norm_weighted(frags: Fragments, features: torch.Tensor, radius: float) -> torch.Tensor:
    """NormWeightedCompositor: features (P, C) -> image (H, W, C) = sum(w*c)/max(sum(w), 1e-4), black background."""
    w = point_weights(frags, radius)
    total = w.sum(-1, keepdim=True).clamp(min=COMPOSITE_EPS)
    padded = torch.cat([features, features.new_zeros(1, features.shape[1])])  # row P: empty slots (-1)
    feats = padded[torch.where(frags.idx >= 0, frags.idx, features.shape[0])]  # (H, W, K, C)
    return (w[..., None] * feats / total[..., None]).sum(-2)


def render_points(points: torch.Tensor, colors: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor,
                  hw: tuple[int, int], radius: float, points_per_pixel: int, pixel_offset: float = 0.0):
    """Render a coloured cloud like the original's PointsRenderer.

    points (P, 3) world, colors (P, C) -> (image (H, W, C), coverage (H, W) bool, depth (H, W) of the nearest
    hit, 0 where empty). Coverage is the original's mask: all-ones features composited, > 0.
    """
    ndc = points_to_ndc(points, K, c2w, hw, pixel_offset)
    frags = rasterize_points(ndc, hw, radius, points_per_pixel)
    image = composite_norm_weighted(frags, colors, radius)
    coverage = point_weights(frags, radius).sum(-1) > 0
    depth = torch.where(coverage, frags.zbuf[..., 0], torch.zeros_like(frags.zbuf[..., 0]))
    return image, coverage, depth
