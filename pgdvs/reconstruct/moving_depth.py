"""Depth of moving objects from their motion over three or five frames, checked against the frames around them.

A moving point breaks the static triangulation of ``depth.triangulate_flow``: the object's own motion between
the frames reads as parallax, so its depth comes out several percent off (more when it moves fast against the
camera's baseline). With the flows to both neighbours the point can be triangulated under constant velocity
instead: its position in frame i + o is X + o v, with X on the ray of frame i (four unknowns: depth and v; two
equations per neighbour). That is exact for an object that moves steadily, and it is well posed when the
camera moves differently from the object (on the synthetic rig, whose input frames come from alternating
cameras, the moving pixels' median depth error falls from 5.9 % to 2.7 %). It is not well posed when the camera
barely moves against the object (a slow handheld camera): there the solve's spread says so and nothing changes.
Constant velocity misplaces an object that speeds up or falls (a thrown ball), and three frames cannot tell:
with two frames either side the point is also solved with an acceleration, and that solve is redundant, so
its misfit to the flows says where it holds.

A solve needs every flow of its window to hold. Where a flow fails (an object's patch matched to the background, a
periodic texture) the pixel keeps the fill, often the background's depth. The trusted points of the frames around
it know where the object is: each one's solved motion carries it to this frame's time, where it lands on a pixel
(:func:`vote_from_neighbours`). Those votes fill the untrusted pixels and overrule a trusted one that they agree
against. The same points, carried over by the object's rigid pose in this frame, settle a region whose own solves
they agree are off (:mod:`moving_transfer`). Then rims take their interior's depth (:mod:`moving_rims`). Before
any of it, masked pixels that a static point explains are taken for background and leave the region
(:mod:`still_pixels`).

Conventions: OpenCV cameras, K (3, 3) pixels, c2w (N, 4, 4); flows_fwd[i] is i -> i+1 and flows_bwd[i] is
i+1 -> i, each (N-1, H, W, 2) (x, y); depth (N, H, W) > 0; moving (N, H, W) bool, True = dynamic.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..errors import InputError
from .depth import without_large_regions
from ..geometry import zbuffer_depth
from .motion_masks import chained_flows
from .moving_centroids import settle_by_centroids
from .moving_rims import RIM_BAND_PX, extend_interior_depth
from .moving_transfer import TRANSFER_REACH, carry_rigid_neighbours
from .still_pixels import still_pixels
from .scale import REFERENCE_SIDE, pixels_at

AGREE_LOG = 0.2  # a constant-velocity depth replaces the current one only within exp(+-0.2) of it (x0.82 - x1.22)
MAX_SPREAD = 0.2  # ... and only where 1 px of flow error moves it by less than 20 % (rig: ~7 %, handheld: 50-180 %)
VELOCITY_DAMPING = 0.1  # ridge weight on the velocity: where the motion is unobservable it shrinks to 0 (static)
ACCEL_FIT_PX = 0.5  # at 480 px: rms misfit to the flows under which the five-frame accelerating solve is taken
# the frames (offsets) of the accelerating solve, tried in turn, the best fit kept: centred, then wholly before or
# after the frame, for frames beside a cut in the flow (a rig's camera jump) or an object's bounce
ACCEL_WINDOWS = ((-2, -1, 1, 2), (-4, -3, -2, -1), (1, 2, 3, 4))
STILL_OFFSETS = (-4, -3, -2, -1, 1, 2, 3, 4)  # the frames whose flows say whether a masked pixel is background
VOTE_REACH = 3  # frames either side whose trusted points vote on a frame's moving depth
VOTE_MIN = 2  # ... at least this many frames' votes land on a pixel
VOTE_SPREAD_LOG = 0.05  # ... and they agree within exp(+-0.05) of their median
VOTE_AGREE_LOG = 0.05  # a trusted depth off the votes' median by more than exp(+-0.05) takes the median
# the frames either side whose chained flows the refinement reads
MOVING_REACH = max(TRANSFER_REACH, *(abs(o) for window in ACCEL_WINDOWS for o in window))


class MovingSolve(NamedTuple):
    """Per point (P,): depth along frame i's ray (nan where the solve gives no point in front of every camera),
    spread (the depth's standard error per px of flow error, relative to the depth), residual (rms px between the
    observations and the solved motion); per point (P, 3) in world units: point (in frame i), velocity (per
    frame), accel (per frame^2, zero unless solved)."""

    depth: np.ndarray
    spread: np.ndarray
    residual: np.ndarray
    point: np.ndarray
    velocity: np.ndarray
    accel: np.ndarray

    def at(self, offset: int) -> np.ndarray:
        """The points' world positions (P, 3) in frame i + ``offset``."""
        return self.point + offset * self.velocity + 0.5 * offset ** 2 * self.accel


def triangulate_moving(uv: np.ndarray, observations: list[tuple[int, np.ndarray, np.ndarray]], K: np.ndarray,
                       c2w: np.ndarray, accelerating: bool = False, damping: float = VELOCITY_DAMPING
                       ) -> MovingSolve:
    """Depth in frame i of moving points seen at ``uv`` (P, 2) in frame i and at ``end`` (P, 2) in each observed
    frame i + offset, ``observations`` a list of (offset, end, c2w (4, 4) of that frame). Unknowns per point: depth
    d along the ray of i, world velocity v per frame and, when ``accelerating``, acceleration a: the point is at
    X + o v + o^2 a / 2 in frame i + o. Each observation gives two linear equations (cross-multiplied
    projection), solved in least squares with ``damping`` (|v|^2 + |a|^2) added (world units: scenes here have
    median depth near 1). K (3, 3) is shared by the frames; c2w (4, 4) is frame i's.
    -> :class:`MovingSolve`. Its spread is large where the camera barely moves against the object (a slow
    handheld camera cannot tell the object's motion from its depth); its residual is 0 when the solve is exactly
    determined."""
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    Kinv = np.linalg.inv(K)
    ray = _homogeneous(uv) @ Kinv.T  # camera i, z = 1
    size = 7 if accelerating else 4
    normal = np.zeros((len(uv), size, size))
    rhs = np.zeros((len(uv), size))
    for offset, end, pose in observations:
        w2c = np.linalg.inv(pose)
        rel = w2c @ c2w  # i -> the observed frame
        a = ray @ rel[:3, :3].T  # the observed frame's view of the point per unit depth in i
        motion = [offset * w2c[:3, :3]] + ([0.5 * offset ** 2 * w2c[:3, :3]] if accelerating else [])
        seen = _homogeneous(np.asarray(end, np.float64).reshape(-1, 2)) @ Kinv.T
        for k in (0, 1):  # P_k - x'_k P_z = 0 with P = rel_t + d a + motion terms
            row = np.concatenate([(a[:, k] - seen[:, k] * a[:, 2])[:, None]]
                                 + [m[k][None] - seen[:, k, None] * m[2][None] for m in motion], 1)
            target = -(rel[k, 3] - seen[:, k] * rel[2, 3])
            normal += row[:, :, None] * row[:, None, :]
            rhs += row * target[:, None]
    normal[:, 1:, 1:] += damping * np.eye(size - 1)
    with np.errstate(invalid="ignore"):
        inverse = np.linalg.inv(normal + 1e-12 * np.eye(size))
    solution = (inverse @ rhs[..., None])[..., 0]
    depth, velocity = solution[:, 0], solution[:, 1:4]
    accel = solution[:, 4:7] if accelerating else np.zeros_like(velocity)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.sqrt(np.abs(inverse[:, 0, 0])) / (K[0, 0] * np.abs(depth))  # 1 px = 1 / f normalised
    solve = MovingSolve(depth, spread, np.zeros(len(uv)), ray * depth[:, None] @ c2w[:3, :3].T + c2w[:3, 3],
                        velocity, accel)
    ahead = depth > 0
    squared = np.zeros(len(uv))
    for offset, end, pose in observations:
        cam = (solve.at(offset) - pose[:3, 3]) @ pose[:3, :3]
        ahead &= cam[:, 2] > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            proj = cam @ K.T
            squared += ((proj[:, :2] / proj[:, 2:] - np.asarray(end, np.float64).reshape(-1, 2)) ** 2).sum(1)
    return solve._replace(depth=np.where(ahead & np.isfinite(depth), depth, np.nan),
                          residual=np.sqrt(squared / len(observations)))


def refine_moving_depth(depth: np.ndarray, moving: np.ndarray, flows_fwd: np.ndarray, flows_bwd: np.ndarray,
                        K: np.ndarray, c2w: np.ndarray, chained=None) -> np.ndarray:
    """Masked pixels whose flows over STILL_OFFSETS a static point fits keep that point's depth and leave the moving
    region (:func:`still_pixels.still_pixels`: background in the mask's halo). The remaining moving pixels of every
    frame with both neighbours take their constant-velocity depth (frames i +- 1) where
    it lies within exp(+-AGREE_LOG) of ``depth`` (their static triangulation or the fill before it: far off, the
    three-frame solve is the one that failed, e.g. where the flow is wrong) and the solve pins the depth (spread
    under MAX_SPREAD). The accelerating solve over five frames (ACCEL_WINDOWS: the frame and four others before,
    around or after it; flows over several frames chained from the neighbour flows) replaces it wherever all its
    flows pass the forward-backward check and it fits them within ACCEL_FIT_PX, whatever ``depth`` says: it is
    redundant, so its fit tells when it holds, and it follows a thrown or falling object, which constant
    velocity misplaces (rig-garden's ball: 1.5x too far in the air, where the fill is the wall's), and frames
    beside a rig's camera jump, where the flow to one side fails (rig PSNR of saved synthetic reconstructions
    31.06 dB; with the centred window only 31.51, with all three 31.93). The neighbours' trusted points then vote
    (:func:`vote_from_neighbours`) and are carried over by each region's rigid pose
    (:func:`moving_transfer.carry_rigid_neighbours`), and every moving region's rim takes the depth its trusted
    interior implies (:func:`moving_rims.extend_interior_depth`, RIM_BAND_PX at 480 px); before that, an object that
    no pixel's solve pinned (a small, fast spinning one whose flow fails) takes the depth of its mask's centroid
    solved over the frames around (:func:`moving_centroids.settle_by_centroids`). Elsewhere (a slow
    handheld camera) nothing changes: an interior with no trusted depth of its own is a poor guide for its rim.
    Static pixels are never changed, nor are regions over MAX_OBJECT_SHARE of their frame
    (``depth.without_large_regions``, as ``bring_moving_forward`` treats them).
    depth (N, H, W) > 0; moving (N, H, W) bool; flows (N-1, H, W, 2); K (3, 3) or (N, 3, 3) (frame i's serves its
    neighbours too: one camera per clip, as reconstructed); c2w (N, 4, 4); ``chained``: the flows'
    :func:`motion_masks.chained_flows` (check tolerance 1 px at 480) reaching MOVING_REACH frames, when the caller
    has them (else they are chained here) -> (N, H, W) float32."""
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
    scale = max(height, width) / REFERENCE_SIDE
    if chained is None:
        chained = chained_flows(flows_fwd, flows_bwd, MOVING_REACH, max(1.0, scale))
    tracks = {}  # frame -> the solves of its trusted pixels
    for i in range(n):
        still, still_depth = still_pixels(moving[i], i, STILL_OFFSETS, chained, Ks[i], c2w, scale)
        out[i][still], moving[i] = still_depth[still], moving[i] & ~still
        rows, cols = np.nonzero(moving[i])
        if len(rows) == 0:
            continue
        uv = np.stack([cols, rows], 1).astype(np.float64)
        agree = np.zeros(len(rows), bool)
        kept = MovingSolve(*[np.full((len(rows),) + shape, np.nan) for shape in ((), (), (), (3,), (3,), (3,))])
        if 0 < i < n - 1:
            seen = [(o, uv + chained(i, o)[0][rows, cols], c2w[i + o]) for o in (-1, 1)]
            kept = triangulate_moving(uv, seen, Ks[i], c2w[i])
            with np.errstate(invalid="ignore", divide="ignore"):
                agree = (np.abs(np.log(kept.depth / out[i][rows, cols])) < AGREE_LOG) & (kept.spread < MAX_SPREAD)
        best = np.full(len(rows), np.inf)
        for window in ACCEL_WINDOWS:
            if not all(0 <= i + o < n for o in window):
                continue
            seen = [(o, uv + chained(i, o)[0][rows, cols], c2w[i + o]) for o in window]
            solve = triangulate_moving(uv, seen, Ks[i], c2w[i], accelerating=True)
            with np.errstate(invalid="ignore"):
                held = np.logical_and.reduce([chained(i, o)[1][rows, cols] for o in window])
                fits = held & (solve.residual < ACCEL_FIT_PX * scale) \
                    & (solve.residual < best) & (solve.spread < MAX_SPREAD) & np.isfinite(solve.depth)
            kept = MovingSolve(*[np.where(fits.reshape(-1, *[1] * (a.ndim - 1)), a, b) for a, b in zip(solve, kept)])
            best, agree = np.where(fits, solve.residual, best), agree | fits
        out[i][rows[agree], cols[agree]] = kept.depth[agree]
        trusted[i][rows[agree], cols[agree]] = True
        tracks[i] = MovingSolve(*[field[agree] for field in kept])
    out, trusted = vote_from_neighbours(out, moving, trusted, tracks, Ks, c2w)
    out, trusted = carry_rigid_neighbours(out, moving, trusted, Ks, c2w, chained)
    out, trusted = settle_by_centroids(out, moving, trusted, Ks, c2w, chained, ACCEL_WINDOWS, MAX_SPREAD)
    return extend_interior_depth(out, moving, pixels_at(RIM_BAND_PX, (height, width)), trusted)


def vote_from_neighbours(depth: np.ndarray, moving: np.ndarray, trusted: np.ndarray, tracks: dict,
                         K: np.ndarray, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's moving pixels as the trusted points of the VOTE_REACH frames either side see them: a point
    solved in frame j at X with velocity v and acceleration a is at X + o v + o^2 a / 2 in frame j + o; projected
    into that frame, it votes for the depth of the pixel it lands on (the nearest, where several land). Where at
    least VOTE_MIN frames vote and agree within VOTE_SPREAD_LOG of their median, an untrusted moving pixel takes
    the median and a trusted one whose depth lies off it by more than VOTE_AGREE_LOG does too (both count as
    trusted from then on). Rig PSNR of saved synthetic reconstructions 32.37 -> 33.04 dB.
    depth (N, H, W) > 0; moving, trusted (N, H, W) bool; tracks: frame -> :class:`MovingSolve` of its trusted
    points; K (N, 3, 3); c2w (N, 4, 4) -> (depth float32, trusted), both (N, H, W)."""
    n, height, width = depth.shape
    out, trusted = depth.astype(np.float32).copy(), trusted.copy()
    for i in np.flatnonzero(moving.any(axis=(1, 2))):
        camera = torch.tensor(K[i]), torch.tensor(c2w[i])
        votes = [zbuffer_depth(torch.from_numpy(tracks[j].at(i - j)), *camera, (height, width))
                 for j in range(max(0, i - VOTE_REACH), min(n, i + VOTE_REACH + 1))
                 if j != i and j in tracks and len(tracks[j].depth)]
        if len(votes) < VOTE_MIN:
            continue
        log_votes = torch.log(torch.stack(votes)).numpy()  # +inf where a frame's points miss the pixel
        log_votes[np.isinf(log_votes)] = np.nan
        voted = moving[i] & (np.isfinite(log_votes).sum(0) >= VOTE_MIN)
        if not voted.any():
            continue
        here = log_votes[:, voted]
        median = np.nanmedian(here, 0)
        off = np.abs(np.log(out[i][voted]) - median) > VOTE_AGREE_LOG
        take = (np.nanmax(np.abs(here - median), 0) < VOTE_SPREAD_LOG) & (~trusted[i][voted] | off)
        rows, cols = np.nonzero(voted)
        out[i][rows[take], cols[take]] = np.exp(median[take])
        trusted[i][rows[take], cols[take]] = True
    return out, trusted


def _homogeneous(uv: np.ndarray) -> np.ndarray:
    return np.concatenate([uv, np.ones_like(uv[:, :1])], 1)
