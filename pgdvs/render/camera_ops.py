"""Elementwise twins of ``pgdvs.geometry.transform_points`` / ``project_points`` for the hot paths.

Same maths and shapes, written as broadcast multiply-adds: CPU BLAS is slow on (P, 3) x (3, 3) products
(several times slower than this, worse with contended threads). Candidates to replace the geometry versions.
"""
from __future__ import annotations

import torch

from ..geometry import invert_pose


def _rows(matrix: torch.Tensor, points: torch.Tensor) -> list[torch.Tensor]:
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return [matrix[..., i, 0, None] * x + matrix[..., i, 1, None] * y + matrix[..., i, 2, None] * z
            + matrix[..., i, 3, None] for i in range(3)]


def transform(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """matrix (..., 4, 4) applied to points (..., P, 3) -> (..., P, 3)."""
    return torch.stack(_rows(matrix, points), dim=-1)


def project(points: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, eps: float = 1e-8):
    """World points (..., P, 3) into cameras K (..., 3, 3), c2w (..., 4, 4) -> (uv (..., P, 2), z (..., P));
    uv = (K cam)[:2] / max(z, eps), as ``pgdvs.geometry.project_points``."""
    x, y, z = _rows(invert_pose(c2w), points)
    zc = z.clamp(min=eps)
    u = (K[..., 0, 0, None] * x + K[..., 0, 1, None] * y + K[..., 0, 2, None] * z) / zc
    v = (K[..., 1, 0, None] * x + K[..., 1, 1, None] * y + K[..., 1, 2, None] * z) / zc
    return torch.stack([u, v], dim=-1), z


def unproject(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """Pixels uv (..., P, 2) at z-depth (..., P) -> world (..., P, 3), as ``pgdvs.geometry.unproject_pixels``."""
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    cam = torch.stack([(uv[..., 0] - cx) / fx * depth, (uv[..., 1] - cy) / fy * depth, depth], dim=-1)
    return transform(c2w, cam)
