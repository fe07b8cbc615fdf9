"""Pixels of a motion mask that a static point explains: background in the mask's halo.

Motion masks are built wide (accumulated over time, dilated), so a frame's mask also covers background beside its
objects. Treated as moving, such a pixel takes its object's depth from the rim rule and is splatted with the
object, a smear of background colour at the object's depth in every new view. Where its flows to the frames around
it pass the forward-backward check and a single static point fits them all, it is background: it keeps that point's
depth and leaves the moving region. A moving point fits its flows as a static one only where its motion runs along
every epipolar line at once, which the rig's sweeping cameras rule out and which then changes little anyway.

Conventions: OpenCV cameras, K (3, 3) pixels, c2w (4, 4); flows (H, W, 2) (x, y); pixel (u, v) at integer
coordinates.
"""
from __future__ import annotations

import numpy as np

STILL_FIT_PX = 0.3  # at 480 px: rms misfit of a static point to a pixel's flows under which the pixel is background
STILL_MIN_FLOWS = 2  # ... over at least this many of the frames around it


def still_pixels(mask: np.ndarray, i: int, offsets, chained, K: np.ndarray, c2w: np.ndarray, scale: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of frame i's ``mask`` (H, W) bool that a static point explains, over the frames i + o for o in
    ``offsets`` (those inside the clip), each through ``chained(i, o)`` -> (flow i -> i + o (H, W, 2), where it
    passes the forward-backward check (H, W) bool) (:func:`motion_masks.chained_flows`). Per pixel the static
    point's depth along its ray is the least-squares fit to its forward-backward consistent flows (two linear
    equations each); the pixel is still where STILL_MIN_FLOWS or more held and the point reprojects onto them
    within STILL_FIT_PX * ``scale`` rms.
    K (3, 3); c2w (N, 4, 4) -> (still (H, W) bool, depth (H, W) float32, nan off ``still``)."""
    rows, cols = np.nonzero(mask)
    still, depth = np.zeros(mask.shape, bool), np.full(mask.shape, np.nan, np.float32)
    K_inv = np.linalg.inv(K)
    ray = np.stack([cols, rows, np.ones_like(cols)], 1) @ K_inv.T  # camera i, z = 1
    seen = []  # per frame: the ray per unit depth a (P, 3) and camera i's centre t (3,) in it, the observed
    for o in offsets:  # normalised pixel (P, 2), held (P,)
        if not 0 <= i + o < len(c2w):
            continue
        there, held = chained(i, o)
        end = np.stack([cols, rows], 1) + there[rows, cols]
        end = (np.concatenate([end, np.ones_like(end[:, :1])], 1) @ K_inv.T)[:, :2]
        rel = np.linalg.inv(c2w[i + o]) @ c2w[i]
        seen.append((ray @ rel[:3, :3].T, rel[:3, 3], end, held[rows, cols]))
    if len(seen) < STILL_MIN_FLOWS:
        return still, depth
    numerator, denominator = np.zeros(len(rows)), np.zeros(len(rows))
    for a, t, end, held in seen:  # P_k - x'_k P_z = 0 with P = d a + t, one unknown d
        for k in (0, 1):
            coefficient = a[:, k] - end[:, k] * a[:, 2]
            target = -(t[k] - end[:, k] * t[2])
            numerator += held * coefficient * target
            denominator += held * coefficient ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        d = numerator / denominator
    squared, count, ahead = np.zeros(len(rows)), np.zeros(len(rows)), d > 0
    for a, t, end, held in seen:
        cam = d[:, None] * a + t
        ahead &= ~held | (cam[:, 2] > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            miss = ((cam[:, :2] / cam[:, 2:] - end) * K[0, 0]) ** 2  # normalised -> px (square pixels)
        squared += np.where(held, miss.sum(1), 0.0)
        count += held
    with np.errstate(invalid="ignore", divide="ignore"):
        fits = (count >= STILL_MIN_FLOWS) & ahead & (np.sqrt(squared / count) < STILL_FIT_PX * scale)
    still[rows[fits], cols[fits]] = True
    depth[rows[fits], cols[fits]] = d[fits]
    return still, depth
