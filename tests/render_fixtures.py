"""Tiny analytic scenes for the render tests: a textured fronto-parallel background plane and a textured square
moving in front of it, seen by cameras translating sideways. Depth, masks and flows are exact (ray casting),
and any (camera, time) can be rendered as ground truth.
"""
from __future__ import annotations

import numpy as np

from pgdvs.scene import Scene

BG_Z = 4.0
FG_Z = 2.5
FG_HALF = 0.35


def texture(x: np.ndarray, y: np.ndarray, phase: float) -> np.ndarray:
    """Smooth colour pattern (..., 3) in [0.1, 0.9] of surface coordinates x, y."""
    return np.stack([
        0.5 + 0.4 * np.sin(3.1 * x + phase) * np.cos(2.3 * y),
        0.5 + 0.4 * np.cos(2.2 * x - 1.7 * y + phase),
        0.5 + 0.4 * np.sin(1.3 * x + 2.9 * y + 2 * phase),
    ], axis=-1)


def intrinsics(hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    return np.array([[0.9 * w, 0, (w - 1) / 2], [0, 0.9 * w, (h - 1) / 2], [0, 0, 1]], dtype=np.float64)


def camera(x: float, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, 3] = (x, y, z)
    return c2w


def square_center(t: float, velocity: float) -> np.ndarray:
    return np.array([-0.3 + velocity * t, 0.05, FG_Z])


def render_view(K, c2w, t, hw, velocity=0.12, square=True, bg_velocity=0.0):
    """Ray-cast one view at time t: rgb (H, W, 3) float32, depth (H, W), dyn (H, W) bool, world points (H, W, 3)."""
    h, w = hw
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ c2w[:3, :3].T
    origin = c2w[:3, 3]
    s_bg = (BG_Z - origin[2]) / dirs[..., 2]
    p_bg = origin + s_bg[..., None] * dirs
    shift = bg_velocity * t
    rgb = texture(p_bg[..., 0] - shift, p_bg[..., 1], 0.0)
    depth = s_bg * 1.0  # d has camera z = 1, so the ray parameter is z-depth (cameras look along +z)
    dyn = np.full((h, w), bg_velocity != 0.0)
    points = p_bg
    if square:
        c = square_center(t, velocity)
        s_fg = (c[2] - origin[2]) / dirs[..., 2]
        p_fg = origin + s_fg[..., None] * dirs
        hit = (np.abs(p_fg[..., 0] - c[0]) <= FG_HALF) & (np.abs(p_fg[..., 1] - c[1]) <= FG_HALF)
        rgb = np.where(hit[..., None], texture(4 * (p_fg[..., 0] - c[0]), 4 * (p_fg[..., 1] - c[1]), 1.0), rgb)
        depth = np.where(hit, s_fg, depth)
        dyn = dyn | hit
        points = np.where(hit[..., None], p_fg, points)
    return rgb.astype(np.float32), depth.astype(np.float32), dyn, points


def _flow(points, moving, K, c2w_next, dt, velocity, bg_velocity, hw):
    """Pixel motion of each surface point from one frame to the next (time step dt). (H, W, 2)."""
    h, w = hw
    motion = np.where(moving[..., None], np.array([velocity * dt, 0, 0]), np.array([bg_velocity * dt, 0, 0]))
    moved = points + motion
    cam = (moved - c2w_next[:3, 3]) @ c2w_next[:3, :3]
    uv = cam @ K.T
    uv = uv[..., :2] / uv[..., 2:]
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return (uv - np.stack([u, v], -1)).astype(np.float32)


def make_scene(n=6, hw=(48, 64), velocity=0.12, square=True, bg_velocity=0.0, cam_step=0.08) -> Scene:
    """Input video: camera i at x = cam_step * i, time i. Exact depth, masks and both flows."""
    K = intrinsics(hw)
    c2ws = [camera(cam_step * i) for i in range(n)]
    views = [render_view(K, c2ws[i], i, hw, velocity, square, bg_velocity) for i in range(n)]
    fwd, bwd = [], []
    for i in range(n - 1):
        for src, dst, dt, out in ((i, i + 1, 1.0, fwd), (i + 1, i, -1.0, bwd)):
            pts = views[src][3]
            out.append(_flow(pts, _on_square(pts, src, velocity, square), K, c2ws[dst], dt, velocity, bg_velocity, hw))
    return Scene(
        rgb=np.stack([vw[0] for vw in views]), K=np.repeat(K[None], n, 0), c2w=np.stack(c2ws),
        depth=np.stack([vw[1] for vw in views]), dyn_mask=np.stack([vw[2] for vw in views]),
        flow_fwd=np.stack(fwd), flow_bwd=np.stack(bwd), meta={"source": "render-test"},
    )


def _on_square(points, t, velocity, square):
    if not square:
        return np.zeros(points.shape[:2], bool)
    c = square_center(t, velocity)
    return (np.abs(points[..., 2] - c[2]) < 1e-6) & (np.abs(points[..., 0] - c[0]) <= FG_HALF + 1e-9)
