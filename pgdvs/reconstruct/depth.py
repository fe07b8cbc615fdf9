"""Consistent per-frame depth from flow triangulation over several baselines (no learned weights), optionally
shaped by an aligned monocular prior.

Steps per frame i:
1. ``triangulate_flow``: each flow i -> j with known poses gives a depth per pixel, its triangulation angle and
   its reprojection residual (the distance of the flow end point from where the triangulated point lands, which is
   large for moving objects and bad flow).
2. ``fuse_estimates``: weighted median over partners in log-depth.
3. ``solve_log_depth``: a sparse linear least-squares problem at a working resolution: data term on confident
   pixels + edge-aware smoothness (weights exp(-|dI| / sigma)) on log-depth, or on log-depth minus the aligned
   prior when one is given. Pixels without data (moving objects, textureless areas) are filled smoothly from
   their static surroundings.
4. Cross-frame consistency: every neighbour j's solved depth, carried into frame i through the flow and the
   relative pose, joins the candidates of step 2 and the solve is repeated.
5. ``bring_moving_forward``: a moving object's filled depth (an average of near and far surroundings) is
   brought no farther than the near end of the static pixels around it, which it hides; masked pixels whose
   own triangulation with the frames up to MOVING_GAP away fits (static pixels the mask took in, objects that
   move little against the camera's baseline) keep that instead.

Everything runs at a working size (``DepthConfig.work_side``, flows and K rescaled; pixel thresholds hold there)
and the log-depth is upsampled bilinearly; with a prior, only its smooth correction is upsampled.

Shapes: frames (N, H, W, 3) float32 [0, 1]; K (3, 3); c2w (N, 4, 4); flows (P, H, W, 2) for ``pairs`` (P of (i, j)).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..geometry import in_image, rescale_intrinsics
from ..warp import flow_consistency, sample_image
from .scale import pixels_at

LOG_DEPTH_RANGE = 12.0  # solved log-depth is clamped to median +- this (keeps exp() finite)
FULL_WEIGHT_ANGLE = np.deg2rad(2.0)  # triangulation weight grows as angle^2 (depth error ~ 1 / angle) up to here
RIM_PX = 3  # at 480 px: the ring of static pixels around a moving object that bounds its depth ...
RIM_QUANTILE = 5  # ... at this percentile of the ring's depths (the near end, robust to a few stray pixels)
MAX_OBJECT_SHARE = 0.25  # a moving region larger than this share of its frame is left to the smooth fill
MOVING_GAP = 2  # masked pixels keep their own triangulation with frames up to this far, where it fits


@dataclass
class DepthConfig:
    """work_side: longer side of the regularised solve (px); min_angle_deg: smallest triangulation angle used;
    max_residual_px / max_fb_px: reprojection residual and forward-backward flow error above which an estimate is
    dropped; smooth: smoothness weight; edge_sigma: image-gradient scale of the edge-aware weights;
    consistency_iters: rounds of cross-frame refinement; prior_smooth: smoothness of the correction to an aligned
    prior (stiffer keeps the prior's shape)."""

    work_side: int = 192
    min_angle_deg: float = 0.3
    max_residual_px: float = 1.0
    max_fb_px: float = 1.0
    smooth: float = 2.0
    edge_sigma: float = 0.06
    consistency_iters: int = 1
    prior_smooth: float = 20.0


@dataclass
class DepthResult:
    """depth (N, H, W) float32 > 0; confidence (N, H, W) float32 fused data weight; coverage (N,) fraction of
    pixels with triangulated data; prior_scale_shift (N, 2) disparity alignment (nan when no prior)."""

    depth: np.ndarray
    confidence: np.ndarray
    coverage: np.ndarray
    prior_scale_shift: np.ndarray


def triangulate_flow(flow: np.ndarray, K: np.ndarray, c2w_i: np.ndarray, c2w_j: np.ndarray):
    """Depth in frame i of every pixel from its flow to frame j (linear least squares along the ray of i).

    flow (H, W, 2); K (3, 3); c2w (4, 4) -> depth (H, W) (nan where undefined), angle (H, W) radians between the
    two rays, residual (H, W) pixels between the flow end point and the reprojection of the triangulated point.
    """
    h, w = flow.shape[:2]
    Kinv = np.linalg.inv(K)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ Kinv.T  # camera i, z = 1
    rel = np.linalg.inv(c2w_j) @ c2w_i  # i -> j
    a = rays @ rel[:3, :3].T  # ray direction in j per unit z-depth in i
    b = rel[:3, 3]
    end = np.stack([u + flow[..., 0], v + flow[..., 1], np.ones_like(u)], -1) @ Kinv.T
    # P = b + d a must satisfy P_x - x' P_z = 0 and P_y - y' P_z = 0 (x', y' normalised end point)
    ca = a[..., :2] - end[..., :2] * a[..., 2:3]
    cb = b[:2] - end[..., :2] * b[2]
    denom = (ca * ca).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = -(ca * cb).sum(-1) / denom
        point_j = b + depth[..., None] * a
        proj = point_j @ K.T
        proj = proj[..., :2] / proj[..., 2:3]
        residual = np.linalg.norm(proj - np.stack([u + flow[..., 0], v + flow[..., 1]], -1), axis=-1)
        ray_j = point_j / np.linalg.norm(point_j, axis=-1, keepdims=True)
        ray_i_in_j = a / np.linalg.norm(a, axis=-1, keepdims=True)
        angle = np.arccos(np.clip((ray_j * ray_i_in_j).sum(-1), -1, 1))
    bad = ~np.isfinite(depth) | (depth <= 0) | (point_j[..., 2] <= 0) | (denom < 1e-12)
    depth[bad] = np.nan
    residual = np.nan_to_num(residual, nan=1e9)
    return depth.astype(np.float32), np.nan_to_num(angle).astype(np.float32), residual.astype(np.float32)


def fuse_estimates(log_depths: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel weighted median. log_depths, weights (C, H, W) (nan estimates must have weight 0)
    -> (fused (H, W) log-depth, nan where no weight; total weight (H, W))."""
    values = np.where(weights > 0, log_depths, np.inf)
    order = np.argsort(values, axis=0)
    v = np.take_along_axis(values, order, 0)
    wts = np.take_along_axis(weights, order, 0)
    cum = np.cumsum(wts, axis=0)
    total = cum[-1]
    pick = (cum >= 0.5 * total[None]).argmax(0)
    fused = np.take_along_axis(v, pick[None], 0)[0]
    fused = np.where(total > 0, fused, np.nan)
    return fused.astype(np.float32), total.astype(np.float32)


def _edge_laplacian(guide: np.ndarray, sigma: float) -> sp.csr_matrix:
    """Graph Laplacian of the 4-neighbour grid with weights exp(-|dI| / sigma). guide (h, w, 3) -> (hw, hw)."""
    h, w = guide.shape[:2]
    idx = np.arange(h * w).reshape(h, w)
    dx = np.abs(guide[:, 1:] - guide[:, :-1]).mean(-1)
    dy = np.abs(guide[1:] - guide[:-1]).mean(-1)
    src = np.concatenate([idx[:, :-1].ravel(), idx[:-1].ravel()])
    dst = np.concatenate([idx[:, 1:].ravel(), idx[1:].ravel()])
    wts = np.exp(-np.concatenate([dx.ravel(), dy.ravel()]) / sigma) + 1e-3
    adj = sp.coo_matrix((np.r_[wts, wts], (np.r_[src, dst], np.r_[dst, src])), shape=(h * w, h * w)).tocsr()
    return sp.diags(np.asarray(adj.sum(1)).ravel()) - adj


def solve_log_depth(data: np.ndarray, weight: np.ndarray, guide: np.ndarray, smooth: float, sigma: float,
                    base: np.ndarray | None = None) -> np.ndarray:
    """Minimise sum w (z - data)^2 + smooth * sum_edges e_pq ((z - base)_p - (z - base)_q)^2 over log-depth z.

    data (h, w) log-depth (ignored where weight is 0 or nan); weight (h, w) >= 0; guide (h, w, 3) image;
    base (h, w) log-depth whose shape the solution keeps (None = piecewise smooth) -> z (h, w).
    Where no pixel has data the result is ``base`` (or 0) shifted to a zero median.
    """
    h, w = data.shape
    base = np.zeros((h, w)) if base is None else base.astype(np.float64)
    wt = np.where(np.isfinite(data), weight, 0.0).astype(np.float64).ravel()
    if wt.sum() <= 0:
        return (base - np.median(base)).astype(np.float32)
    d = np.where(np.isfinite(data), data, 0.0).astype(np.float64).ravel()
    # a weak pull of the correction towards its median keeps the system well-posed in data-free regions
    offset = np.median((d - base.ravel())[wt > 0])
    eps = 1e-4 * max(wt.max(), 1e-6)
    lap = _edge_laplacian(guide, sigma)
    A = (sp.diags(wt + eps) + smooth * lap).tocsc()
    rhs = wt * (d - base.ravel()) + eps * offset
    corr = spla.spsolve(A, rhs, permc_spec="MMD_AT_PLUS_A")  # the fastest ordering for grid systems here
    z = base.ravel() + corr
    z = np.clip(z, np.median(z) - LOG_DEPTH_RANGE, np.median(z) + LOG_DEPTH_RANGE)
    return z.reshape(h, w).astype(np.float32)


def align_prior(disparity: np.ndarray, depth: np.ndarray, weight: np.ndarray,
                iters: int = 3) -> tuple[np.ndarray, float, float]:
    """Fit s, b with 1 / depth = s * disparity + b on pixels with weight > 0 (trimmed least squares, dropping the
    worst 20 % each round), as the original aligns its depth networks. disparity, depth, weight (H, W)
    -> (aligned depth (H, W) > 0, s, b). Falls back to a median scale (b = 0) when the fit is degenerate."""
    valid = (weight > 0) & np.isfinite(depth) & (depth > 0) & np.isfinite(disparity)
    disp = disparity.astype(np.float64)
    target = 1.0 / depth[valid]
    x, wv = disp[valid], weight[valid].astype(np.float64)
    s, b = np.nan, np.nan
    if valid.sum() >= 16 and np.ptp(x) > 1e-6:
        keep = np.ones(len(x), bool)
        for _ in range(iters):
            A = np.stack([x[keep], np.ones(keep.sum())], 1) * np.sqrt(wv[keep])[:, None]
            s, b = np.linalg.lstsq(A, target[keep] * np.sqrt(wv[keep]), rcond=None)[0]
            err = np.abs(s * x + b - target)
            keep = err <= np.quantile(err, 0.8)
    if not np.isfinite(s) or s <= 0:
        med_x = np.median(x) if len(x) else np.median(disp)
        s = (np.median(target) if len(x) else 1.0) / max(med_x, 1e-6)
        b = 0.0
    inv = s * disp + b
    floor = 0.02 * np.median(np.abs(inv)) + 1e-6  # keeps far-away pixels finite (at most 50x the median depth)
    return (1.0 / np.maximum(inv, floor)).astype(np.float32), float(s), float(b)


def default_pairs(n: int, gaps=(1, 2, 4, 8)) -> list[tuple[int, int]]:
    """Forward and backward pairs (i, i+g), (i+g, i) for each gap g < n."""
    out = []
    for g in gaps:
        if g < n:
            out += [(i, i + g) for i in range(n - g)] + [(i + g, i) for i in range(n - g)]
    return out


def _resize(img: np.ndarray, hw: tuple[int, int], interp=cv2.INTER_AREA) -> np.ndarray:
    return cv2.resize(img, (hw[1], hw[0]), interpolation=interp)


def _work_hw(hw: tuple[int, int], side: int) -> tuple[int, int]:
    s = min(1.0, side / max(hw))
    return max(2, round(hw[0] * s)), max(2, round(hw[1] * s))


def _solve_frame(cands: list[np.ndarray], wts: list[np.ndarray], guide: np.ndarray, config: DepthConfig,
                 base: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Fuse one frame's candidates and regularise. cands, wts lists of (h, w); guide (h, w, 3); base (h, w) or
    None -> (log-depth (h, w), fused weight (h, w))."""
    hw = guide.shape[:2]
    if cands:
        fused, total = fuse_estimates(np.stack(cands), np.stack(wts))
    else:
        fused, total = np.full(hw, np.nan, np.float32), np.zeros(hw, np.float32)
    weight = np.where(np.isfinite(fused), total, 0).astype(np.float32)
    smooth = config.prior_smooth if base is not None else config.smooth
    return solve_log_depth(fused, weight, guide, smooth, config.edge_sigma, base), weight


def _downsample(frames, K, flows, dyn_mask, prior, work):
    """Everything at the working size: frames (N, h, w, 3), K, flows (P, h, w, 2) with rescaled vectors,
    dynamic mask (any overlap counts), prior (N, h, w)."""
    n, height, width = frames.shape[:3]
    sy, sx = work[0] / height, work[1] / width
    small = np.stack([_resize(f, work) for f in frames])
    k = rescale_intrinsics(torch.from_numpy(np.asarray(K, np.float64)), (height, width), work).numpy()
    fl = np.stack([_resize(f, work) * np.array([sx, sy], np.float32) for f in flows]) if len(flows) else flows
    dyn = None if dyn_mask is None else np.stack([_resize(m.astype(np.float32), work) > 0 for m in dyn_mask])
    pri = None if prior is None else np.stack([_resize(p.astype(np.float32), work) for p in prior])
    return small, k, fl, dyn, pri


def consistent_depth(frames: np.ndarray, K: np.ndarray, c2w: np.ndarray, pairs: list[tuple[int, int]],
                     flows: np.ndarray, dyn_mask: np.ndarray | None = None, prior_disparity: np.ndarray | None = None,
                     config: DepthConfig | None = None, init_depth: np.ndarray | None = None,
                     progress=None) -> DepthResult:
    """Dense, cross-frame consistent depth for every frame, computed at ``config.work_side`` and upsampled.

    frames (N, H, W, 3); K (3, 3); c2w (N, 4, 4); flows (P, H, W, 2) for ``pairs``; dyn_mask (N, H, W) bool
    (True = moving, excluded from the data terms and filled from the surroundings); prior_disparity (N, H, W)
    affine-invariant disparity (Depth Anything) or None; init_depth (N, H, W): depth of an earlier pass that
    replaces the first per-frame solve (the consistency rounds start from it). ``progress(fraction)`` is called
    per frame and round.
    """
    config = config or DepthConfig()
    n, height, width = frames.shape[:3]
    work = _work_hw((height, width), config.work_side)
    small, k_small, fl, dyn, prior = _downsample(frames, K, flows, dyn_mask, prior_disparity, work)
    static = np.ones((n, *work), bool) if dyn is None else ~_dilate(dyn, 1)
    fb_ok = _forward_backward_ok(pairs, fl, config.max_fb_px)
    min_angle = np.deg2rad(config.min_angle_deg)
    tri = [[] for _ in range(n)]  # per frame: (log-depth, weight) candidates
    moving = [[] for _ in range(n)]  # per frame: candidates on masked pixels from the nearest frames
    for k, (i, j) in enumerate(pairs):
        depth, angle, resid = triangulate_flow(fl[k], k_small, c2w[i], c2w[j])
        fits = fb_ok[k] & (angle >= min_angle) & (resid <= config.max_residual_px) & np.isfinite(depth)
        tri[i].append(_candidate(depth, angle, fits & static[i]))
        if dyn is not None and abs(j - i) <= MOVING_GAP:
            moving[i].append(_candidate(depth, angle, fits & ~static[i]))
    _drop_outliers(tri)
    coverage = np.array([np.mean(np.max([c[1] for c in tri[i]], 0) > 0) if tri[i] else 0.0 for i in range(n)])

    bases = [None] * n
    scale_shift = np.full((n, 2), np.nan)
    log_depth = np.zeros((n, *work), np.float32)
    weights = np.zeros((n, *work), np.float32)
    first = init_depth is None
    rounds = first + config.consistency_iters
    for i in range(n):
        cands, wts = [c[0] for c in tri[i]], [c[1] for c in tri[i]]
        if prior is not None:
            bases[i], scale_shift[i] = _aligned_prior_base(prior[i], cands, wts)
        if first:
            log_depth[i], weights[i] = _solve_frame(cands, wts, small[i], config, bases[i])
        else:
            log_depth[i] = np.log(np.maximum(_resize(init_depth[i].astype(np.float32), work), 1e-12))
        if progress and first:
            progress((i + 1) / (n * rounds))
    for r in range(config.consistency_iters):
        carried = _carry_neighbours(log_depth, k_small, c2w, pairs, fl, fb_ok, static)
        new = np.empty_like(log_depth)
        for i in range(n):
            cands = [c[0] for c in tri[i]] + [c[0] for c in carried[i]]
            wts = [c[1] for c in tri[i]] + [c[1] for c in carried[i]]
            new[i], weights[i] = _solve_frame(cands, wts, small[i], config, bases[i])
            if progress:
                progress((n * (r + first) + i + 1) / (n * rounds))
        log_depth = new
    if not (weights > 0).any():  # no parallax anywhere: depth is only known up to scale, use unit median
        log_depth -= np.median(log_depth)
    full = np.stack([_upsample_log_depth(log_depth[i], bases[i], prior_disparity, i, scale_shift[i], (height, width))
                     for i in range(n)])
    conf = np.stack([_resize(c, (height, width), cv2.INTER_LINEAR) for c in weights])
    depth = np.exp(full).astype(np.float32)
    if dyn_mask is not None:
        depth = bring_moving_forward(depth, dyn_mask)
        own = _moving_own_depth(moving, (height, width))
        depth = np.where(dyn_mask & np.isfinite(own), own, depth).astype(np.float32)
    return DepthResult(depth, conf, coverage.astype(np.float32), scale_shift)


def _candidate(depth: np.ndarray, angle: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One triangulation as a fusion candidate: (log-depth, weight growing as angle^2 up to FULL_WEIGHT_ANGLE,
    0 where not ``ok``), each (h, w) float32."""
    weight = np.where(ok, np.minimum(angle / FULL_WEIGHT_ANGLE, 1) ** 2, 0).astype(np.float32)
    return np.log(np.where(ok, depth, 1.0)).astype(np.float32), weight


def _moving_own_depth(moving: list[list[tuple[np.ndarray, np.ndarray]]], hw: tuple[int, int]) -> np.ndarray:
    """Masked pixels' own triangulation with the nearest frames, where it fits (the masks hold static pixels
    too, and an object moving little against the camera's baseline triangulates nearly right): weighted median
    per pixel, a 5 px median filter against speckle (:func:`median_of_known`), upsampled.
    -> (N, H, W) depth, nan where none fits."""
    out = np.full((len(moving), *hw), np.nan, np.float32)
    for i, cands in enumerate(moving):
        if not cands:
            continue
        fused, _ = fuse_estimates(np.stack([c[0] for c in cands]), np.stack([c[1] for c in cands]))
        if np.isfinite(fused).any():
            out[i] = np.exp(_resize(median_of_known(fused, 2), hw, cv2.INTER_NEAREST))
    return out


def median_of_known(values: np.ndarray, radius: int) -> np.ndarray:
    """Median over the known (finite) values of each (2 radius + 1)^2 window (shrunk at the border), at known
    pixels whose window is mostly known (a lone estimate is speckle); nan elsewhere. Unknown pixels take no part:
    filled with zeros, as a plain median filter needs, they would pull a log-depth toward 0.
    values (H, W) float -> (H, W) float32."""
    side = 2 * radius + 1
    values = torch.as_tensor(values, dtype=torch.float32)
    known = values.isfinite()

    def windows(field, fill):  # (side^2, H * W): every pixel's window, ``fill`` outside the image
        return torch.nn.functional.unfold(torch.nn.functional.pad(field[None, None], (radius,) * 4, value=fill),
                                          side)[0]

    median = windows(values, float("nan")).nanmedian(dim=0).values.reshape(values.shape)
    inside = windows(torch.ones_like(values), 0.0).sum(0).reshape(values.shape)
    mostly = 2 * windows(known.float(), 0.0).sum(0).reshape(values.shape) > inside
    return torch.where(mostly & known, median, float("nan")).numpy()


def bring_moving_forward(depth: np.ndarray, moving: np.ndarray, rim_px: int | None = None,
                         quantile: float = RIM_QUANTILE) -> np.ndarray:
    """Moving pixels have no triangulated depth; the smooth fill averages the surfaces around them, often far
    behind the object (a wall). An object hides what surrounds it, so each moving region (8-connected, per frame)
    is clamped to at most the ``quantile``-th percentile depth of the static pixels within ``rim_px`` of it
    (default RIM_PX at 480 px): for an object on the floor, about where it touches the floor. Rendering it there
    instead of at the fill's depth gains 0.5-3 dB on the synthetic scenes (true cameras and masks). A region over
    MAX_OBJECT_SHARE of the frame keeps the fill: it is rather a failed mask estimate (on static scenes, blobs
    of 30-47 % of a frame) spanning many surfaces, whose near end says little (a floor would be flattened).
    depth (N, H, W) > 0, moving (N, H, W) bool -> (N, H, W) float32."""
    n, height, width = depth.shape
    rim_px = rim_px or pixels_at(RIM_PX, (height, width))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim_px + 1, 2 * rim_px + 1))
    out = depth.astype(np.float32).copy()
    for i in range(n):
        count, labels = cv2.connectedComponents(without_large_regions(moving[i]).astype(np.uint8), connectivity=8)
        for c in range(1, count):
            region = labels == c
            rim = (cv2.dilate(region.astype(np.uint8), kernel) > 0) & ~moving[i]
            if rim.any():
                out[i][region] = np.minimum(out[i][region], np.percentile(depth[i][rim], quantile))
    return out


def without_large_regions(mask: np.ndarray) -> np.ndarray:
    """mask (H, W) bool without its 8-connected regions over MAX_OBJECT_SHARE of the frame: failed mask
    estimates spanning static surfaces rather than objects, which the moving-depth steps leave alone."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] <= MAX_OBJECT_SHARE * mask.size
    keep[0] = False  # the background
    return keep[labels]


def _drop_outliers(tri: list[list[tuple[np.ndarray, np.ndarray]]], max_ratio: float = 100.0) -> None:
    """Zero the weight of triangulated depths more than ``max_ratio`` times away from the clip's weighted median
    (near-degenerate rays and gross flow errors); edits ``tri`` in place."""
    values = np.concatenate([c[0][c[1] > 0] for cands in tri for c in cands] or [np.zeros(0)])
    if values.size == 0:
        return
    centre, limit = np.median(values), np.log(max_ratio)
    for cands in tri:
        for log_d, weight in cands:
            weight[np.abs(log_d - centre) > limit] = 0


def _aligned_prior_base(prior: np.ndarray, cands: list[np.ndarray], wts: list[np.ndarray]):
    """Log of the prior aligned to this frame's triangulated depth (unit median depth when there is none).
    -> (base log-depth (h, w), (s, b))."""
    if cands:
        fused, total = fuse_estimates(np.stack(cands), np.stack(wts))
        if (total > 0).sum() >= 16:
            aligned, s, b = align_prior(prior, np.exp(np.nan_to_num(fused)), total)
            return np.log(aligned), (s, b)
    aligned, s, b = align_prior(prior, np.ones_like(prior), np.zeros_like(prior))
    return np.log(aligned), (s, b)


def _upsample_log_depth(z, base, prior_full, i, scale_shift, hw):
    """Bilinear upsampling; with a prior the full-resolution aligned prior keeps its detail and only the smooth
    correction is upsampled."""
    up = _resize(z, hw, cv2.INTER_LINEAR)
    if base is None:
        return up
    inv = scale_shift[0] * prior_full[i].astype(np.float64) + scale_shift[1]
    base_full = -np.log(np.maximum(inv, 0.02 * np.median(np.abs(inv)) + 1e-6))
    return (base_full + _resize(z - base, hw, cv2.INTER_LINEAR)).astype(np.float32)


def _forward_backward_ok(pairs, flows, max_px) -> dict[int, np.ndarray]:
    """Per pair index: (h, w) bool, True where the flow passes the forward-backward check (True if no reverse)."""
    index = {p: k for k, p in enumerate(pairs)}
    out = {}
    for k, (i, j) in enumerate(pairs):
        back = index.get((j, i))
        if back is None:
            out[k] = np.ones(flows.shape[1:3], bool)
        else:
            diff = flow_consistency(torch.from_numpy(flows[k][None]), torch.from_numpy(flows[back][None]))[0]
            out[k] = diff.abs().sum(-1).numpy() <= max_px
    return out


def _carry_neighbours(log_depth, K, c2w, pairs, flows, fb_ok, static, weight: float = 0.5):
    """Depth of frame j carried into frame i: sample j's depth at the flow end point, lift it in j, express it in
    camera i. log_depth (N, h, w) -> per frame a list of (log-depth (h, w), weight (h, w))."""
    n, h, w = log_depth.shape
    out = [[] for _ in range(n)]
    Kinv = np.linalg.inv(K)
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    for k, (i, j) in enumerate(pairs):
        end_u, end_v = u + flows[k][..., 0], v + flows[k][..., 1]
        uv = torch.from_numpy(np.stack([end_u, end_v], -1))[None]
        src = torch.from_numpy(np.stack([log_depth[j], static[j].astype(np.float32)]))[None]
        sampled = sample_image(src, uv)[0].numpy()
        rays_j = np.stack([end_u, end_v, np.ones_like(end_u)], -1) @ Kinv.T
        rel = np.linalg.inv(c2w[i]) @ c2w[j]  # j -> i
        z_i = (rays_j * np.exp(sampled[0])[..., None]) @ rel[2, :3] + rel[2, 3]
        ok = fb_ok[k] & static[i] & (sampled[1] > 0.99) & in_image(uv[0], h, w).numpy() & (z_i > 0)
        out[i].append((np.log(np.where(ok, z_i, 1.0)).astype(np.float32), np.where(ok, weight, 0).astype(np.float32)))
    return out


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate each (H, W) mask of a (N, H, W) stack by a disk of ``radius`` px."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in mask])
