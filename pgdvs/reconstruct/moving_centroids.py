"""Depth of a moving object that no pixel's solve pins, from the path of its mask's centroid.

Per-pixel flow fails on a small object that spins or tumbles fast (rig-studio's tumbling ball: 0-50 % of its
flows pass the forward-backward check for six frames in a row), so none of its pixels gets a motion solve
(:mod:`moving_depth`), the neighbours have no trusted points to lend it, and it keeps the fill, 15-54 % too far.
Its mask still follows it: the centroid of a mask component is the image of (nearly) one point of the object in
every frame, and the same accelerating triangulation that solves a pixel from its flows solves that point from
the centroids of the component in the frames around (five frames, seven unknowns: redundant, so a misfit says
when the masks or the links between them are off). On the synthetic rig the ball's centroid solve lands within
2-6 % of its true depth in frames 8-13 (the fill: 15-54 % off); rig-studio's PSNR gap on saved inputs 1.69 -> 1.55 dB,
the other rig scenes unchanged (their objects are pinned by their own flows).

A component is linked to the component of the next (previous) frame whose centroid lies nearest to where the flow
carries it (the median over its pixels, checked or not: only the object's rough displacement is needed) or to
where it is (the flow of a fast spinning object may be anything), within LINK_PX and a factor AREA_RATIO in area;
the links chain over a window. The untrusted pixels of a component that is mostly untrusted
take the solved depth (flat: such objects are small), and count as trusted from then on.

Conventions: OpenCV cameras, K (N, 3, 3) pixels, c2w (N, 4, 4); depth (N, H, W) > 0; moving, trusted (N, H, W)
bool; pixel (u, v) at integer coordinates.
"""
from __future__ import annotations

import cv2
import numpy as np

from .scale import REFERENCE_SIDE

UNTRUSTED_SHARE = 0.5  # a component whose pixels are at least this share untrusted is solved from its centroid
MIN_AREA_PX = 100  # at 480 px (scaled with the image area): smaller components are left alone
LINK_PX = 16  # at 480 px: how far the next frame's component centroid may lie from where this one goes
AREA_RATIO = 2.0  # ... and how much larger or smaller it may be
CENTROID_FIT_PX = 1.0  # at 480 px: rms misfit to the linked centroids under which the solve is taken


def settle_by_centroids(depth: np.ndarray, moving: np.ndarray, trusted: np.ndarray, K: np.ndarray, c2w: np.ndarray,
                        chained, windows, max_spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Components of ``moving`` (8-connected) that are mostly untrusted take, on their untrusted pixels, the depth of
    their centroid solved by :func:`moving_depth.triangulate_moving` (accelerating) from the linked centroids over
    each of ``windows`` (frame offsets) that lies in the clip and links in full, the best fit kept when under
    CENTROID_FIT_PX with a spread under ``max_spread``. ``chained(i, o)`` -> (flow i -> i + o (H, W, 2), held)
    (:func:`motion_masks.chained_flows`, reaching every offset of ``windows``).
    -> (depth float32, trusted), both (N, H, W)."""
    from .moving_depth import triangulate_moving  # moving_depth calls this module

    n, height, width = depth.shape
    scale = max(height, width) / REFERENCE_SIDE
    out, trusted = depth.astype(np.float32).copy(), trusted.copy()
    parts = [_components(m, MIN_AREA_PX * scale ** 2) for m in moving]
    # each component's counterpart in the next and the previous frame (-1: none); step[-1] has one entry per frame
    step = {+1: [_links(parts[i], parts[i + 1], chained(i, 1)[0], LINK_PX * scale) for i in range(n - 1)],
            -1: [None] + [_links(parts[i], parts[i - 1], chained(i, -1)[0], LINK_PX * scale) for i in range(1, n)]}
    for i in range(n):
        labels, centres, areas = parts[i]
        for c in range(len(centres)):
            comp = labels == c + 1
            loose = comp & ~trusted[i]
            if loose.sum() < UNTRUSTED_SHARE * areas[c]:
                continue
            best, fit = None, CENTROID_FIT_PX * scale
            for window in windows:
                links = [_follow(step, i, c, o) for o in window]
                if any(link is None for link in links):
                    continue
                seen = [(o, parts[i + o][1][k][None], c2w[i + o]) for o, k in zip(window, links)]
                solve = triangulate_moving(centres[c][None], seen, K[i], c2w[i], accelerating=True)
                if np.isfinite(solve.depth[0]) and solve.residual[0] < fit and solve.spread[0] < max_spread:
                    best, fit = solve.depth[0], solve.residual[0]
            if best is not None:
                out[i][loose] = best
                trusted[i][loose] = True
    return out, trusted


def _components(mask: np.ndarray, min_area: float):
    """-> (labels (H, W) int, centroids (C, 2) (u, v), areas (C,)) of the 8-connected components of at least
    ``min_area`` pixels (label k + 1 is component k; smaller ones are labelled 0)."""
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_area) + 1
    relabel = np.zeros(count, np.int32)
    relabel[keep] = np.arange(1, len(keep) + 1)
    return relabel[labels], centroids[keep], stats[keep, cv2.CC_STAT_AREA].astype(np.float64)


def _links(here, there, flow: np.ndarray, reach: float) -> np.ndarray:
    """Per component of ``here`` (:func:`_components`), the index of its counterpart among the components of
    ``there`` (a neighbouring frame), or -1: the nearest, within ``reach`` px and AREA_RATIO in area, to where the
    component's centroid lands, moved by the median of ``flow`` (here -> there) over its pixels or not moved at all
    (the flow of a fast spinning object may be anything; it moves little between two frames)."""
    labels, centres, areas = here
    _, others, other_areas = there
    out = np.full(len(centres), -1)
    if len(others) == 0:
        return out
    for c in range(len(centres)):
        moved = centres[c] + np.median(flow[labels == c + 1], axis=0)
        dist = np.minimum(np.linalg.norm(others - moved, axis=1), np.linalg.norm(others - centres[c], axis=1))
        dist[(other_areas > AREA_RATIO * areas[c]) | (other_areas * AREA_RATIO < areas[c])] = np.inf
        k = int(np.argmin(dist))
        out[c] = k if dist[k] <= reach else -1
    return out


def _follow(step: dict, i: int, c: int, offset: int):
    """Component c of frame i followed ``offset`` frames along the links of :func:`_links`; None where a link is
    missing or the clip ends."""
    direction, frames = (1 if offset > 0 else -1), len(step[-1])
    for _ in range(abs(offset)):
        if not 0 <= i + direction < frames:
            return None
        c = int(step[direction][i][c])
        if c < 0:
            return None
        i += direction
    return c
