"""Camera geometry as pure torch functions (kornia-style: shapes in every docstring).

Conventions used across the project:
- OpenCV cameras: x right, y down, z forward.
- ``c2w`` is a 4x4 camera-to-world matrix; ``K`` is 3x3 in pixels.
- Pixel (u, v) sits at integer coordinates (column u, row v), no +0.5 offset, as in the original PGDVS.
- Depth is z-depth along the optical axis, in the same units as the pose translations.
"""
from __future__ import annotations

import torch


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Integer pixel coordinates. Returns (H, W, 2) with [..., 0] = u (column), [..., 1] = v (row)."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def invert_pose(pose: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid 4x4 transforms. (..., 4, 4) -> (..., 4, 4)."""
    rot = pose[..., :3, :3]
    trans = pose[..., :3, 3:]
    out = torch.zeros_like(pose)
    out[..., :3, :3] = rot.transpose(-1, -2)
    out[..., :3, 3:] = -rot.transpose(-1, -2) @ trans
    out[..., 3, 3] = 1
    return out


def _affine_rows(matrix: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # Broadcast multiply-adds: CPU BLAS is several times slower on (P, 3) x (3, 3) products. The three output
    # rows at once (6 kernels instead of 18: on a GPU each launch costs more than its arithmetic).
    m = matrix[..., :3, :, None]  # (..., 3, 4, 1)
    x, y, z = (points[..., None, :, i] for i in range(3))  # (..., 1, P)
    return (m[..., 0, :] * x + m[..., 1, :] * y + m[..., 2, :] * z + m[..., 3, :]).unbind(-2)


def transform_points(transform: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply a 4x4 transform. transform (..., 4, 4), points (..., P, 3) -> (..., P, 3)."""
    return torch.stack(_affine_rows(transform, points), dim=-1)


def unproject_pixels(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """Lift pixels to world points.

    uv (..., P, 2) pixel coordinates, depth (..., P) z-depth, K (..., 3, 3), c2w (..., 4, 4) -> (..., P, 3) world.
    """
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    cam = torch.stack([x, y, depth], dim=-1)
    return transform_points(c2w, cam)


def unproject_depth(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """Lift a whole depth map. depth (..., H, W), K (..., 3, 3), c2w (..., 4, 4) -> (..., H, W, 3) world."""
    height, width = depth.shape[-2:]
    uv = pixel_grid(height, width, device=depth.device, dtype=depth.dtype).reshape(-1, 2)
    uv = uv.expand(*depth.shape[:-2], height * width, 2)
    pts = unproject_pixels(uv, depth.reshape(*depth.shape[:-2], -1), K, c2w)
    return pts.reshape(*depth.shape, 3)


def project_points(points: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, eps: float = 1e-8):
    """Project world points into a camera.

    points (..., P, 3), K (..., 3, 3), c2w (..., 4, 4) -> (uv (..., P, 2), z (..., P)).
    uv = (K @ cam)[:2] / max(z, eps) as in the original; check ``z > 0`` for points in front.
    """
    x, y, z = _affine_rows(invert_pose(c2w), points)
    return torch.stack(camera_to_pixels(x, y, z, K, eps), dim=-1), z


def camera_to_pixels(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, K: torch.Tensor, eps: float = 1e-8):
    """Pixel coordinates of points given in camera coordinates (OpenCV), as separate components.

    x, y, z (..., P), K (..., 3, 3) -> (u (..., P), v (..., P)); u, v = (K @ (x, y, z))[:2] / max(z, eps).
    """
    zc = z.clamp(min=eps)
    u = (K[..., 0, 0, None] * x + K[..., 0, 1, None] * y + K[..., 0, 2, None] * z) / zc
    v = (K[..., 1, 0, None] * x + K[..., 1, 1, None] * y + K[..., 1, 2, None] * z) / zc
    return u, v


def in_image(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """True where 0 <= u <= W-1 and 0 <= v <= H-1. uv (..., 2) -> (...) bool."""
    return (uv[..., 0] >= 0) & (uv[..., 0] <= width - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= height - 1)


def zbuffer_depth(points: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Nearest z of world points (P, 3) per pixel of the camera K (3, 3), c2w (4, 4), each point rounded to the
    nearest pixel. -> (H, W), +inf where no point lands."""
    height, width = hw
    uv, z = project_points(points, K, c2w)
    uv = torch.round(uv)
    ok = (z > 0) & in_image(uv, height, width)
    index = torch.where(ok, uv[:, 1] * width + uv[:, 0], height * width).long()  # misses go to a spare last cell
    zbuf = torch.full((height * width + 1,), torch.inf, dtype=z.dtype, device=points.device)
    zbuf.scatter_reduce_(0, index, z, reduce="amin")
    return zbuf[:-1].reshape(height, width)


def rescale_intrinsics(K: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """Intrinsics for an image resized from src_hw to dst_hw (area/bilinear resize, pixel centres aligned).

    With integer pixel centres, a resize maps u' + 0.5 = (u + 0.5) * s, so
    f' = f * s and c' = (c + 0.5) * s - 0.5. K (..., 3, 3) -> (..., 3, 3).
    """
    sy = dst_hw[0] / src_hw[0]
    sx = dst_hw[1] / src_hw[1]
    out = K.clone()
    out[..., 0, 0] = K[..., 0, 0] * sx
    out[..., 0, 1] = K[..., 0, 1] * sx
    out[..., 1, 1] = K[..., 1, 1] * sy
    out[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    out[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return out


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """OpenCV c2w looking from eye at target; ``up`` is the world direction that should appear up
    (image -y). eye, target, up (..., 3) -> (..., 4, 4)."""
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.cross(-up.expand_as(z), z, dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = x, y, z, eye
    c2w[..., 3, 3] = 1
    return c2w
