"""Detect camera motion that leaves depth unobservable (static camera, pure rotation, almost no parallax) and
build usable cameras for those clips.

The test works on flow correspondences over the widest available frame gaps: the median flow length says whether
the camera moved at all, and the median residual after a RANSAC homography (which explains any pure rotation)
measures parallax. A planar scene also fits a homography, so a "rotation" verdict is only acted on when SfM
cannot build a model either (see ``pgdvs.reconstruct.pipeline``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from .scale import REFERENCE_SIDE  # the pixel thresholds below hold at this image side

STATIC_FLOW_PX = 0.5  # median flow below this over the widest gaps: the camera did not move
MIN_PARALLAX_PX = 0.5  # homography residual below this: rotation only (or a plane)
LOW_PARALLAX_PX = 1.5  # below this, depth from triangulation is poorly conditioned


@dataclass
class MotionReport:
    """kind: "static" | "rotation" | "low_parallax" | "general"; flow_px: median flow length and parallax_px:
    median homography residual, the largest over the sampled pairs (px at the analysed resolution; the
    thresholds scale with the image size); message: one line for the user."""

    kind: str
    flow_px: float
    parallax_px: float
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def correspondences(flow: np.ndarray, step: int = 8, valid: np.ndarray | None = None):
    """Grid samples of a flow field. flow (H, W, 2), valid (H, W) bool or None
    -> (src (M, 2), dst (M, 2)) float32 pixel coordinates."""
    h, w = flow.shape[:2]
    v, u = np.mgrid[step // 2:h:step, step // 2:w:step]
    v, u = v.ravel(), u.ravel()
    if valid is not None:
        keep = valid[v, u]
        v, u = v[keep], u[keep]
    src = np.stack([u, v], 1).astype(np.float32)
    return src, src + flow[v, u]


def analyse_motion(flows: np.ndarray, back_flows: np.ndarray | None = None, step: int = 8) -> MotionReport:
    """Classify camera motion from a few flows between distant frames.

    flows (P, H, W, 2); back_flows (P, H, W, 2) the reverse flows, or None. With them, only pixels that pass the
    forward-backward check are used (flow fails first at wide gaps and would pass for parallax); a pair with
    fewer than 20 % such pixels is skipped. -> MotionReport.
    """
    from .flow import consistency_error

    mags, resid = [], []
    for k, flow in enumerate(flows):
        valid = None
        if back_flows is not None:
            valid = consistency_error(flow[None], back_flows[k][None])[0] <= 1.0
            if valid.mean() < 0.2:
                continue
        src, dst = correspondences(flow, step, valid)
        if len(src) < 8:
            continue
        mags.append(np.median(np.linalg.norm(dst - src, axis=1)))
        H, _ = cv2.findHomography(src, dst, cv2.RANSAC, 1.0)
        if H is None:
            resid.append(np.inf)
            continue
        proj = cv2.perspectiveTransform(src[None], H)[0]
        resid.append(np.median(np.linalg.norm(proj - dst, axis=1)))
    if not mags and back_flows is not None:  # every pair failed the check: judge from the raw flow instead
        return analyse_motion(flows, None, step)
    flow_px = float(np.max(mags)) if mags else 0.0
    parallax = float(np.nanmax(resid)) if resid else 0.0
    scale = max(flows.shape[1:3]) / REFERENCE_SIDE
    if flow_px < STATIC_FLOW_PX * scale:
        kind, msg = "static", "the camera does not move: poses are fixed and depth is a smooth guess"
    elif parallax < MIN_PARALLAX_PX * scale:
        kind, msg = "rotation", "the camera only rotates (or films a plane): depth cannot be measured"
    elif parallax < LOW_PARALLAX_PX * scale:
        kind, msg = "low_parallax", "the camera barely translates: depth is poorly constrained"
    else:
        kind, msg = "general", "enough camera translation for multi-view depth"
    return MotionReport(kind, flow_px, min(parallax, 1e6), msg)


def rotation_only_poses(flows: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Chain rotations from the homographies of neighbour flows (frame i -> i+1), cameras at the origin.

    flows (N-1, H, W, 2), K (3, 3) -> c2w (N, 4, 4) with frame 0 the identity. For a rotation R_rel = R_j^T R_i,
    H = K R_rel K^-1, so R_rel = K^-1 H K (projected to the nearest rotation).
    """
    n = len(flows) + 1
    c2w = np.tile(np.eye(4), (n, 1, 1))
    Kinv = np.linalg.inv(K)
    for i, flow in enumerate(flows):
        src, dst = correspondences(flow)
        H, _ = cv2.findHomography(src, dst, cv2.RANSAC, 1.0)
        rel = np.eye(3) if H is None else nearest_rotation(Kinv @ H @ K)
        c2w[i + 1, :3, :3] = c2w[i, :3, :3] @ rel.T
    return c2w


def nearest_rotation(m: np.ndarray) -> np.ndarray:
    """Closest rotation to a 3x3 matrix (SVD), with the scale of a homography removed. (3, 3) -> (3, 3)."""
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        r = u @ np.diag([1, 1, -1]) @ vt
    return Rotation.from_matrix(r).as_matrix()
