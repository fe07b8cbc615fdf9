"""A tiny analytic clip for the mask tests: a textured background plane (z = 10) and a reddish textured square
(side 2, z = 5) moving diagonally in front of it, seen by a camera that translates and yaws. Depth, the
dynamic mask and both flows are exact; ``world`` gives each pixel's surface point (to place static blobs).
"""
from __future__ import annotations

import cv2
import numpy as np

BG_Z, FG_Z, FG_HALF = 10.0, 5.0, 1.0


def _texture(rng: np.random.Generator, tint) -> np.ndarray:
    tex = cv2.GaussianBlur(rng.random((256, 256, 3)).astype(np.float32), (0, 0), 2.0)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return tex * np.float32(tint) + np.float32(1 - np.asarray(tint)) * 0.3


def _sample(tex: np.ndarray, x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
    mx, my = (x * scale + 128).astype(np.float32), (y * scale + 128).astype(np.float32)
    return cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def toy_clip(n: int = 8, hw: tuple[int, int] = (72, 96), seed: int = 0, obj_step=(0.12, 0.08), cam_step=(0.08, 0.02),
             yaw_step: float = 0.004, camouflage: bool = False, plain: bool = False, half: float = FG_HALF,
             contrast: float = 1.0) -> dict:
    """Camera i at (cam_step * i, 0) yawed by yaw_step * i radians; square (side 2 ``half``) centre moves by
    obj_step per frame; ``camouflage``: the square wears the background's texture at its scale (only motion tells
    them apart); ``plain``: it is one flat colour (its motion only shows at its outline); ``contrast`` scales the
    square's texture about its mean (a faint texture).
    -> dict(frames (N, H, W, 3) float32, K (N, 3, 3), c2w (N, 4, 4), depth (N, H, W), mask (N, H, W) bool,
    fwd / bwd (N-1, H, W, 2) exact flows i -> i+1 / i+1 -> i, world (N, H, W, 3), flow(i, j) -> (H, W, 2))."""
    rng = np.random.default_rng(seed)
    tex_bg, tex_fg = _texture(rng, (1, 1, 1)), _texture(rng, (1.0, 0.55, 0.45))
    fg_tex, fg_scale = (tex_bg, 12) if camouflage else (tex_fg, 40)
    fg_tex = fg_tex.mean((0, 1)) + np.float32(contrast) * (fg_tex - fg_tex.mean((0, 1)))
    h, w = hw
    K = np.array([[0.9 * w, 0, (w - 1) / 2], [0, 0.9 * w, (h - 1) / 2], [0, 0, 1.0]])
    c2w = np.tile(np.eye(4), (n, 1, 1))
    centres = np.zeros((n, 3))
    for i in range(n):
        a = yaw_step * i
        c2w[i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        c2w[i, :3, 3] = [cam_step[0] * i, cam_step[1] * i, 0]
        centres[i] = [-0.6 + obj_step[0] * i, -0.3 + obj_step[1] * i, FG_Z]
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    frames, depth = np.zeros((n, h, w, 3), np.float32), np.zeros((n, h, w), np.float32)
    mask, world = np.zeros((n, h, w), bool), np.zeros((n, h, w, 3))
    for i in range(n):
        d = pix @ np.linalg.inv(K).T @ c2w[i, :3, :3].T  # camera z of d is 1: ray parameter = z-depth
        o = c2w[i, :3, 3]
        s_bg, s_fg = (BG_Z - o[2]) / d[..., 2], (FG_Z - o[2]) / d[..., 2]
        p_bg, p_fg = o + s_bg[..., None] * d, o + s_fg[..., None] * d
        local = p_fg - centres[i]
        hit = (np.abs(local[..., 0]) <= half) & (np.abs(local[..., 1]) <= half)
        mask[i], depth[i] = hit, np.where(hit, s_fg, s_bg)
        world[i] = np.where(hit[..., None], p_fg, p_bg)
        fg = np.float32([0.8, 0.4, 0.3]) if plain else _sample(fg_tex, local[..., 0], local[..., 1], fg_scale)
        frames[i] = np.where(hit[..., None], fg, _sample(tex_bg, p_bg[..., 0], p_bg[..., 1], 12))

    def flow(i, j):
        moved = world[i] + np.where(mask[i][..., None], centres[j] - centres[i], 0)
        uv = ((moved - c2w[j, :3, 3]) @ c2w[j, :3, :3]) @ K.T
        return (uv[..., :2] / uv[..., 2:] - pix[..., :2]).astype(np.float32)

    return dict(frames=np.clip(frames, 0, 1), K=np.repeat(K[None], n, 0), c2w=c2w, depth=depth, mask=mask,
                fwd=np.stack([flow(i, i + 1) for i in range(n - 1)]),
                bwd=np.stack([flow(i + 1, i) for i in range(n - 1)]), world=world, flow=flow)


def static_blob(clip: dict, x=(2.5, 3.7), y=(1.0, 2.0)) -> np.ndarray:
    """(N, H, W) bool: a patch of the background plane (world x, y ranges), i.e. a would-be false positive
    that moves with the camera only."""
    wx, wy = clip["world"][..., 0], clip["world"][..., 1]
    return (wx > x[0]) & (wx < x[1]) & (wy > y[0]) & (wy < y[1]) & ~clip["mask"]


def mean_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean over frames of IoU between (N, H, W) bool masks (frames empty in both count as 1)."""
    scores = [(p & g).sum() / (p | g).sum() if (p | g).any() else 1.0 for p, g in zip(pred, gt)]
    return float(np.mean(scores))
