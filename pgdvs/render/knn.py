"""k-nearest-neighbour squared distances and the original's statistical outlier removal.

Distances are **squared** Euclidean (PyTorch3D ``knn_points`` convention) so thresholds match the original.
Neighbours are found either with chunked brute force in torch (any device) or with scipy's cKDTree (CPU,
much faster for the ~1e4-1e5 points of a dynamic cloud); either way the returned distances are recomputed
from the coordinates in float32, so both backends give the same numbers (on one device: CUDA sums in another
order, to within rounding).

``window_sqdist`` is the project default's cheaper search for clouds lifted from an image: neighbours are
looked for only among the points of nearby source pixels (cheaper on CPU, no O(P^2) work on CUDA).
"""
from __future__ import annotations

import torch


def _neighbours_torch(points: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Indices (P, k) of the k nearest points (self included), brute force in float64 to avoid cancellation."""
    pts = points.double()
    pts = pts - pts.mean(0)
    sq = (pts * pts).sum(-1)
    out = []
    for start in range(0, pts.shape[0], chunk):
        q = pts[start:start + chunk]
        d2 = sq[start:start + chunk, None] + sq[None, :] - 2.0 * q @ pts.T
        out.append(torch.topk(d2, k, dim=1, largest=False).indices)
    return torch.cat(out)


def _neighbours_kdtree(points: torch.Tensor, k: int) -> torch.Tensor:
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().double().numpy()
    _, idx = cKDTree(pts).query(pts, k=k, workers=torch.get_num_threads())
    return torch.from_numpy(idx.reshape(len(pts), k)).to(points.device)


def knn_sqdist(points: torch.Tensor, k: int, backend: str = "auto", chunk: int = 1024) -> torch.Tensor:
    """Squared distances (P, k) from each point to its k nearest *other* points, ascending.

    points (P, 3). Like PyTorch3D with K = k + 1 minus the self column; when P <= k the missing neighbours
    count as distance 0 (PyTorch3D pads with zeros). backend: "auto" (kdtree on CPU, torch elsewhere),
    "torch" or "kdtree".
    """
    n = points.shape[0]
    kk = min(k + 1, n)
    if n == 0:
        return points.new_zeros(0, k)
    if backend == "auto":
        backend = "kdtree" if points.device.type == "cpu" else "torch"
    idx = _neighbours_kdtree(points, kk) if backend == "kdtree" else _neighbours_torch(points, kk, chunk)
    diff = points[idx].float() - points[:, None, :].float()
    d2 = torch.sort((diff * diff).sum(-1), dim=1).values[:, 1:]
    if kk < k + 1:
        d2 = torch.cat([d2, d2.new_zeros(n, k + 1 - kk)], dim=1)
    return d2


def knn_sqdist_reference(points: torch.Tensor, k: int) -> torch.Tensor:
    """Brute-force twin of :func:`knn_sqdist` (full P x P matrix of differences)."""
    diff = points[None, :, :].float() - points[:, None, :].float()
    d2 = torch.sort((diff * diff).sum(-1), dim=1).values[:, 1:k + 1]
    if d2.shape[1] < k:
        d2 = torch.cat([d2, d2.new_zeros(points.shape[0], k - d2.shape[1])], dim=1)
    return d2


def window_sqdist(points: torch.Tensor, pix: torch.Tensor, hw: tuple[int, int], k: int, radius: int = 4) -> torch.Tensor:
    """The k smallest squared distances (P, k), unsorted, from each point to the other points whose source
    pixels lie in the (2r+1)^2 window around its own: a kNN restricted to the image neighbourhood.

    points (P, 3) lifted from flat pixel indices pix (P,) of an H x W grid (unique). On a surface the nearest
    3D points are the nearest pixels, so this matches :func:`knn_sqdist` there, at O(P r^2) cost on any device.
    Points with fewer than k window neighbours repeat their farthest one; none at all gives +inf.
    """
    height, width = hw
    n = points.shape[0]
    k = min(k, (2 * radius + 1) ** 2 - 1)
    padded_width = width + 2 * radius  # a border of empty slots: no bounds checks
    slot = torch.full(((height + 2 * radius) * padded_width,), n, dtype=torch.long, device=points.device)
    centre = (pix // width + radius) * padded_width + pix % width + radius
    slot[centre] = torch.arange(n, device=points.device)
    window = range(-radius, radius + 1)
    shifts = torch.tensor([dy * padded_width + dx for dy in window for dx in window if dy or dx], device=points.device)
    other = torch.index_select(slot, 0, (centre[:, None] + shifts[None]).flatten())  # (P * M,), n = empty
    coords = torch.cat([points, torch.full((1, 3), torch.inf, device=points.device)]).T.contiguous()
    sq = (torch.index_select(coords, 1, other).view(3, n, -1) - coords[:, :n, None]) ** 2  # (3, P, M)
    d2 = torch.topk(sq[0] + sq[1] + sq[2], k, dim=1, largest=False, sorted=False).values
    found = torch.isfinite(d2)
    farthest = torch.where(found, d2, 0.0).amax(1, keepdim=True)
    farthest = torch.where(found.any(1, keepdim=True), farthest, torch.inf)
    return torch.where(found, d2, farthest)


def keep_by_spread(mean_d2: torch.Tensor, std_factor: float, median_factor: float = 0.0) -> torch.Tensor:
    """The original's rule on m = mean squared neighbour distance (P,): keep m < median(m) + f * std(m).

    ``torch.median`` (lower median) and unbiased ``torch.std`` as the original; a single point therefore has
    std NaN and is dropped, exactly as there. ``median_factor`` > 0 (not in the original) also keeps every
    point with m < median_factor * median(m): on a clean cloud the std is small and the original threshold cuts
    the object's border, while flying pixels sit far above a few medians. Non-finite m (a point with no
    neighbour at all, :func:`window_sqdist`) is dropped and left out of the statistics, which it would make NaN.
    """
    finite = torch.isfinite(mean_d2)
    measured = mean_d2[finite]
    if measured.shape[0] <= 1:  # no spread to measure (the original's std is NaN and drops the point)
        return torch.zeros(mean_d2.shape[0], dtype=torch.bool, device=mean_d2.device)
    median = torch.median(measured)
    keep = mean_d2 < median + torch.std(measured) * std_factor
    if median_factor > 0:
        keep |= mean_d2 < median_factor * median
    return keep & finite


def outlier_keep_mask(points: torch.Tensor, k: int, std_factor: float, median_factor: float = 0.0,
                      backend: str = "auto") -> torch.Tensor:
    """The original's statistical filter with exact kNN: points (P, 3) -> keep (P,) bool (:func:`keep_by_spread`
    on the mean of the k squared nearest-neighbour distances)."""
    return keep_by_spread(knn_sqdist(points, k, backend).mean(1), std_factor, median_factor)
