"""Pose interpolation (slerp for rotations, lerp for centres) and trajectory smoothing, numpy in float64.

Times are fractional frame indices in [0, N-1]; values outside are clamped to the ends.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation


def _bracket(n: int, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left frame index (T,) int in [0, n-2] and weight (T,) in [0, 1] for each time."""
    t = np.clip(np.asarray(times, dtype=np.float64), 0, n - 1)
    i0 = np.minimum(np.floor(t).astype(int), max(n - 2, 0))
    return i0, t - i0


def slerp(rot0: np.ndarray, rot1: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Spherical interpolation of rotation matrices along the shortest arc.

    rot0, rot1 (T, 3, 3), weight (T,) with 0 -> rot0 and 1 -> rot1. Returns (T, 3, 3).
    """
    r0 = Rotation.from_matrix(rot0)
    step = (r0.inv() * Rotation.from_matrix(rot1)).as_rotvec()
    return (r0 * Rotation.from_rotvec(step * np.asarray(weight)[:, None])).as_matrix()


def interpolate_poses(c2w: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Camera-to-world poses at fractional times: slerp of rotations, lerp of centres between the two
    neighbouring frames (the original's ``linear_pose_interp``). c2w (N, 4, 4), times (T,) -> (T, 4, 4)."""
    if len(c2w) == 1:
        return np.repeat(c2w.astype(np.float64), len(times), axis=0)
    i0, w = _bracket(len(c2w), times)
    out = np.zeros((len(i0), 4, 4))
    out[:, :3, :3] = slerp(c2w[i0, :3, :3], c2w[i0 + 1, :3, :3], w)
    out[:, :3, 3] = (1 - w)[:, None] * c2w[i0, :3, 3] + w[:, None] * c2w[i0 + 1, :3, 3]
    out[:, 3, 3] = 1
    return out


def interpolate_intrinsics(K: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Linear interpolation of intrinsics. K (N, 3, 3), times (T,) -> (T, 3, 3)."""
    if len(K) == 1:
        return np.repeat(K.astype(np.float64), len(times), axis=0)
    i0, w = _bracket(len(K), times)
    return (1 - w)[:, None, None] * K[i0] + w[:, None, None] * K[i0 + 1]


def _reflect_ends(c2w: np.ndarray, pad: int) -> np.ndarray:
    """Extend a trajectory by ``pad`` poses at each end by point reflection through the end pose, which
    continues constant-velocity motion: centre 2 c_0 - c_k, rotation R_0 R_k^T R_0. (N, 4, 4) -> (N + 2 pad, 4, 4)."""
    def mirror(end, others):
        out = np.array(others)
        out[:, :3, :3] = end[:3, :3] @ others[:, :3, :3].transpose(0, 2, 1) @ end[:3, :3]
        out[:, :3, 3] = 2 * end[:3, 3] - others[:, :3, 3]
        return out
    return np.concatenate([mirror(c2w[0], c2w[pad:0:-1]), c2w, mirror(c2w[-1], c2w[-2:-pad - 2:-1])])


def smooth_poses(c2w: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a trajectory (``sigma`` in frames): centres are filtered directly, rotations as
    sign-aligned quaternions re-normalised (a weighted chordal mean, exact enough for nearby rotations).
    The ends are extended by point reflection, so steady motion (a line, a constant pan) is kept as it is
    and only the shake goes. c2w (N, 4, 4) -> (N, 4, 4)."""
    out = np.array(c2w, dtype=np.float64)
    if sigma <= 0 or len(c2w) < 2:
        return out
    pad = min(int(4 * sigma + 0.5), len(out) - 1)
    ext = _reflect_ends(out, pad)
    quat = Rotation.from_matrix(ext[:, :3, :3]).as_quat()
    flips = np.cumprod(np.where(np.sum(quat[1:] * quat[:-1], axis=1) < 0, -1.0, 1.0))
    quat[1:] *= flips[:, None]  # q and -q are the same rotation; keep neighbours on one hemisphere
    quat = gaussian_filter1d(quat, sigma, axis=0, mode="nearest")[pad: pad + len(out)]
    out[:, :3, :3] = Rotation.from_quat(quat / np.linalg.norm(quat, axis=1, keepdims=True)).as_matrix()
    out[:, :3, 3] = gaussian_filter1d(ext[:, :3, 3], sigma, axis=0, mode="nearest")[pad: pad + len(out)]
    return out
