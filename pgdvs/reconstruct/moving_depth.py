"""Depth of moving objects from their motion over three frames, and object rims that follow their interior.

A moving point breaks the static triangulation of ``depth.triangulate_flow``: the object's own motion between
the frames reads as parallax, so its depth comes out several percent off (more when it moves fast against the
camera's baseline). With the flows to both neighbours the point can be triangulated under constant velocity
instead: its position in frame i + o is X + o v, with X on the ray of frame i (four unknowns: depth and v; two
equations per neighbour). That is exact for an object that moves steadily, and it is well posed when the
camera moves differently from the object (on the synthetic rig, whose input frames come from alternating
cameras, the moving pixels' median depth error falls from 5.9 % to 2.7 %). It is not well posed when the camera
barely moves against the object (a slow handheld camera): there the solve's spread says so and nothing changes.

Flow at an object's outline follows the object on one side and the background on the other, so whatever is
triangulated there lies between the two; splatted at that depth, the object's rim smears over the new view. The
rim therefore takes the depth of the object's interior where the solve pinned it, extended outward
(:func:`extend_interior_depth`).

Conventions: OpenCV cameras, K (3, 3) pixels, c2w (N, 4, 4); flows_fwd[i] is i -> i+1 and flows_bwd[i] is
i+1 -> i, each (N-1, H, W, 2) (x, y); depth (N, H, W) > 0; moving (N, H, W) bool, True = dynamic.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError
from .depth import without_large_regions
from .scale import pixels_at

AGREE_LOG = 0.2  # a constant-velocity depth replaces the current one only within exp(+-0.2) of it (x0.82 - x1.22)
MAX_SPREAD = 0.2  # ... and only where 1 px of flow error moves it by less than 20 % (rig: ~7 %, handheld: 50-180 %)
VELOCITY_DAMPING = 0.1  # ridge weight on the velocity: where the motion is unobservable it shrinks to 0 (static)
RIM_BAND_PX = 8  # at 480 px: the width of an object's outline whose depth comes from its interior


def triangulate_constant_velocity(uv: np.ndarray, end_prev: np.ndarray, end_next: np.ndarray, K: np.ndarray,
                                  c2w_prev: np.ndarray, c2w: np.ndarray, c2w_next: np.ndarray,
                                  damping: float = VELOCITY_DAMPING) -> tuple[np.ndarray, np.ndarray]:
    """Depth in frame i of points moving at constant velocity, seen at ``uv`` in frame i, ``end_prev`` in frame
    i-1 and ``end_next`` in frame i+1 (each (P, 2) pixels). Unknowns per point: depth d along the ray of i and
    world velocity v per frame; each neighbour's observation gives two linear equations (cross-multiplied
    projection), solved in least squares with ``damping`` |v|^2 added (world units: scenes here have median
    depth near 1). K (3, 3) is shared by the three frames; c2w (4, 4) each.
    -> depth (P,), nan where the solve gives no point in front of all three cameras; spread (P,): the depth's
    standard error per px of flow error, relative to the depth (large where the camera barely moves against the
    object: a slow handheld camera cannot tell the object's motion from its depth)."""
    uv, end_prev, end_next = (np.asarray(a, np.float64).reshape(-1, 2) for a in (uv, end_prev, end_next))
    Kinv = np.linalg.inv(K)
    ray = _homogeneous(uv) @ Kinv.T  # camera i, z = 1
    normal = np.zeros((len(uv), 4, 4))
    rhs = np.zeros((len(uv), 4))
    for offset, end, pose in ((-1, end_prev, c2w_prev), (1, end_next, c2w_next)):
        w2c = np.linalg.inv(pose)
        rel = w2c @ c2w  # i -> neighbour
        a = ray @ rel[:3, :3].T  # the neighbour's view of the point per unit depth in i
        moved = offset * w2c[:3, :3]  # ... and of the velocity
        seen = _homogeneous(end) @ Kinv.T
        for k in (0, 1):  # P_k - x'_k P_z = 0 with P = rel_t + d a + moved v
            row = np.concatenate([(a[:, k] - seen[:, k] * a[:, 2])[:, None],
                                  moved[k][None] - seen[:, k, None] * moved[2][None]], 1)
            target = -(rel[k, 3] - seen[:, k] * rel[2, 3])
            normal += row[:, :, None] * row[:, None, :]
            rhs += row * target[:, None]
    normal[:, 1:, 1:] += damping * np.eye(3)
    with np.errstate(invalid="ignore"):
        inverse = np.linalg.inv(normal + 1e-12 * np.eye(4))
    solution = (inverse @ rhs[..., None])[..., 0]
    depth, velocity = solution[:, 0], solution[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.sqrt(np.abs(inverse[:, 0, 0])) / (K[0, 0] * np.abs(depth))  # 1 px = 1 / f normalised
    point = ray * depth[:, None] @ c2w[:3, :3].T + c2w[:3, 3]
    ahead = depth > 0
    for offset, pose in ((-1, c2w_prev), (1, c2w_next)):
        z = ((point + offset * velocity) - pose[:3, 3]) @ pose[:3, 2]
        ahead &= z > 0
    return np.where(ahead & np.isfinite(depth), depth, np.nan), spread


def extend_interior_depth(depth: np.ndarray, moving: np.ndarray, band: int, trusted: np.ndarray) -> np.ndarray:
    """The outer ``band`` px of each frame's moving pixels take the log-depth of the interior (the ``trusted``
    moving pixels farther in than ``band``) averaged with a Gaussian of that width; a rim with no such interior
    within reach (thin objects) keeps its depth.
    depth (N, H, W) > 0, moving and trusted (N, H, W) bool -> (N, H, W) float32."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    out = depth.astype(np.float32).copy()
    for i in np.flatnonzero(moving.any(axis=(1, 2))):
        core = cv2.erode(moving[i].astype(np.uint8), kernel) > 0
        inner = core & trusted[i]
        weight = cv2.GaussianBlur(inner.astype(np.float32), (0, 0), band)
        total = cv2.GaussianBlur(np.where(inner, np.log(out[i]), 0).astype(np.float32), (0, 0), band)
        rim = moving[i] & ~core & (weight > 0.02)  # within about two widths of the interior
        out[i][rim] = np.exp(total[rim] / weight[rim])
    return out


def refine_moving_depth(depth: np.ndarray, moving: np.ndarray, flows_fwd: np.ndarray, flows_bwd: np.ndarray,
                        K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Moving pixels of every frame with both neighbours take their constant-velocity depth where it lies within
    exp(+-AGREE_LOG) of ``depth`` (their static triangulation or the fill before it: far off, the three-frame
    solve is the one that failed, e.g. where the flow is wrong) and the solve pins the depth (spread under
    MAX_SPREAD); then every moving region's rim takes the depth of its interior pixels that got one
    (RIM_BAND_PX at 480 px). Elsewhere (a slow handheld camera) nothing changes: an interior with no
    trusted depth of its own is a poor guide for its rim. Static pixels are never changed, nor are regions over
    MAX_OBJECT_SHARE of their frame (``depth.without_large_regions``, as ``bring_moving_forward`` treats them).
    depth (N, H, W) > 0; moving (N, H, W) bool; flows (N-1, H, W, 2); K (3, 3) or (N, 3, 3) (frame i's serves its
    neighbours too: one camera per clip, as reconstructed); c2w (N, 4, 4) -> (N, H, W) float32."""
    depth, moving = np.asarray(depth), np.asarray(moving, bool)
    n, height, width = depth.shape
    if moving.shape != depth.shape or np.shape(flows_fwd) != (n - 1, height, width, 2) \
            or np.shape(flows_bwd) != (n - 1, height, width, 2):
        raise InputError(f"refine_moving_depth: depth {depth.shape}, moving {moving.shape} and flows "
                         f"{np.shape(flows_fwd)} / {np.shape(flows_bwd)} do not describe the same (N, H, W) frames")
    Ks = np.broadcast_to(K, (n, 3, 3))
    moving = np.stack([without_large_regions(m) for m in moving])
    out = depth.astype(np.float32).copy()
    trusted = np.zeros_like(moving)
    for i in range(1, n - 1):
        rows, cols = np.nonzero(moving[i])
        if len(rows) == 0:
            continue
        uv = np.stack([cols, rows], 1).astype(np.float64)
        end_prev, end_next = uv + flows_bwd[i - 1][rows, cols], uv + flows_fwd[i][rows, cols]
        solved, spread = triangulate_constant_velocity(uv, end_prev, end_next, Ks[i], c2w[i - 1], c2w[i], c2w[i + 1])
        current = out[i][rows, cols]
        with np.errstate(invalid="ignore", divide="ignore"):
            agree = (np.abs(np.log(solved / current)) < AGREE_LOG) & (spread < MAX_SPREAD)
        out[i][rows[agree], cols[agree]] = solved[agree]
        trusted[i][rows[agree], cols[agree]] = True
    return extend_interior_depth(out, moving, pixels_at(RIM_BAND_PX, (height, width)), trusted)


def _homogeneous(uv: np.ndarray) -> np.ndarray:
    return np.concatenate([uv, np.ones_like(uv[:, :1])], 1)
