"""Dynamic layer as in PGDVS (method reference §7): lift the dynamic pixels of frames t1 and t2 (matched by
optical flow), interpolate linearly to t, clean with the kNN outlier filter, then softmax-splat with the noise
trick (or rasterise as points).

``bidirectional`` (project default) also builds the cloud from frame t2 with the backward flow and blends the
two splats by time, so the layer is continuous when t crosses an integer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..warp import flow_consistency, sample_image
from ..geometry import in_image, project_points as project, unproject_pixels as unproject
from .config import DynamicConfig
from .frames import Frames, Target, temporal_pair
from .knn import keep_by_spread, outlier_keep_mask, window_sqdist
from .points import render_points
from .splat import softmax_splat_density


@dataclass
class DynamicCloud:
    """Points of frame ``src`` at time t. points (P, 3) world, pix (P,) flat pixel index on frame src's grid,
    colors (P, 3) (frame ``dst`` at the flow match, as the original's point renderer uses)."""

    src: int
    dst: int
    points: torch.Tensor
    pix: torch.Tensor
    colors: torch.Tensor


@dataclass
class DynamicLayer:
    """rgb (H, W, 3) (0 outside the mask), mask (H, W) bool, alpha (H, W) float in [0, 1], depth (H, W)."""

    rgb: torch.Tensor
    mask: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def _flow(frames: Frames, src: int, dst: int) -> torch.Tensor | None:
    """Flow src -> dst (H, W, 2) for neighbouring frames; zero flow for src == dst; None when not stored."""
    if src == dst:
        return torch.zeros(*frames.hw, 2, device=frames.device)
    if dst == src + 1:
        return frames.flow_fwd[src] if frames.flow_fwd is not None else None
    if dst == src - 1:
        return frames.flow_bwd[dst] if frames.flow_bwd is not None else None
    raise ValueError(f"frames {src} and {dst} are not neighbours")


def _lookup(image: torch.Tensor, uv: torch.Tensor, mode: str, half_pixel: bool) -> torch.Tensor:
    """Sample image (H, W, C) at uv (P, 2) -> (P, C); ``half_pixel`` reproduces the original's u - 0.5 grid."""
    uv = uv - 0.5 if half_pixel else uv
    return sample_image(image.permute(2, 0, 1)[None], uv[None], mode=mode)[0].T


def dynamic_cloud(frames: Frames, src: int, dst: int, t: float, cfg: DynamicConfig) -> DynamicCloud | None:
    """Lift the dynamic pixels of frame ``src``, match them in ``dst`` by flow, interpolate to time t, clean.

    Returns None when the needed flow is missing.
    """
    height, width = frames.hw
    flow = _flow(frames, src, dst)
    if flow is None:
        return None
    mask = frames.dyn[src].reshape(-1)
    if cfg.use_flow_consistency and src != dst:
        back = _flow(frames, dst, src)
        if back is not None:
            diff = flow_consistency(flow[None], back[None])[0]
            mask = mask & (diff.abs().sum(-1) <= cfg.flow_consistency_threshold).reshape(-1)
    pix = torch.nonzero(mask).squeeze(1)
    uv = frames.grid()[pix]
    uv2 = uv + flow.reshape(-1, 2)[pix]
    ok = torch.nonzero(in_image(uv2, height, width)).squeeze(1)
    pix, uv, uv2 = pix[ok], uv[ok], uv2[ok]
    pts = unproject(uv, frames.depth[src].reshape(-1)[pix], frames.K[src], frames.c2w[src])
    if src == dst:
        colors = frames.rgb[src].reshape(-1, 3)[pix]
    else:
        colors = _lookup(frames.rgb[dst], uv2, "bilinear", cfg.half_pixel_lookup)
        w_dst = (t - src) / (dst - src)  # constant velocity between the two frames
        if w_dst != 0:  # at t = src the points are those of src (the lift in dst has weight 0)
            depth2 = _lookup(frames.depth[dst][..., None], uv2, "nearest", cfg.half_pixel_lookup)[:, 0]
            pts2 = unproject(uv2, depth2, frames.K[dst], frames.c2w[dst])
            pts = (1.0 - w_dst) * pts + w_dst * pts2
    if cfg.remove_outliers and pts.shape[0] > 0:
        if cfg.outlier_window > 0:
            d2 = window_sqdist(pts, pix, frames.hw, cfg.outlier_knn, cfg.outlier_window)
            keep = keep_by_spread(d2.mean(1), cfg.outlier_std, cfg.outlier_median_factor)
        else:
            keep = outlier_keep_mask(pts, cfg.outlier_knn, cfg.outlier_std, cfg.outlier_median_factor)
        keep = torch.nonzero(keep).squeeze(1)
        pts, pix, colors = pts[keep], pix[keep], colors[keep]
    return DynamicCloud(src, dst, pts, pix, colors)


def _noise(hw, seed: int, device) -> torch.Tensor:
    """Gaussian noise clamped to [0, 1] (H, W, 3), drawn on the CPU so every device gets the same values."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*hw, 3, generator=gen).clamp(0.0, 1.0).to(device)


def splat_cloud(frames: Frames, cloud: DynamicCloud, target: Target, cfg: DynamicConfig,
                noise: torch.Tensor) -> DynamicLayer:
    """Softmax splatting of frame ``cloud.src`` with the noise trick (method reference §7.3).

    The original splats the whole frame (static pixels as noise, zero displacement). With ``metric_floor``
    only the object's pixels are splatted, so only they are looked up (same values, a fraction of the work).
    """
    height, width = frames.hw
    n_pix = height * width
    uv_t, z_t = project(cloud.points, target.K, target.c2w)
    grid = frames.grid()
    if cfg.metric_floor is None:
        pix = torch.arange(n_pix, device=frames.device)
        valid = torch.zeros(n_pix, device=frames.device)
        valid[cloud.pix] = 1.0
        rgb1 = frames.rgb[cloud.src].reshape(-1, 3)
        rgb1 = rgb1 * valid[:, None] + noise.reshape(-1, 3) * (1.0 - valid[:, None])
        # static (and dropped) pixels keep zero displacement, dynamic ones move to their projection
        uv = grid.clone()
        z = torch.zeros(n_pix, device=frames.device)
        uv[cloud.pix], z[cloud.pix] = uv_t, z_t
    else:
        pix, valid, uv, z = cloud.pix, torch.ones(cloud.pix.shape[0], device=frames.device), uv_t, z_t
        rgb1 = frames.rgb[cloud.src].reshape(-1, 3)[pix]
    # colour match with frame t2 through the flow: W(I2, F12) at the splatted pixels
    match = grid[pix] + _flow(frames, cloud.src, cloud.dst).reshape(-1, 2)[pix]
    err = (rgb1 - _lookup(frames.rgb[cloud.dst], match, "bilinear", False)).abs().mean(-1)
    metric = (-cfg.alpha * err).clamp(-cfg.alpha, cfg.alpha)
    if cfg.metric_floor is not None:
        # a bad colour match (e.g. on the rim, where the warp of frame t2 mixes in background) no longer drops
        # the pixel against the 1e-7 term
        metric = metric.clamp(min=-cfg.metric_floor)
    # valid marks the cloud's samples: the density is theirs (splatted at uv_t)
    out, density = softmax_splat_density(torch.cat([rgb1, valid[:, None], z[:, None]], dim=1), uv, metric, target.hw,
                                         valid)
    mask = out[..., 3] > cfg.mask_threshold
    rgb = out[..., :3] * mask[..., None]
    depth = torch.where(mask, out[..., 4] / out[..., 3].clamp(min=1e-12), 0.0)
    if cfg.alpha_gain > 0:  # partial coverage on the border instead of the binary mask (a 1-pixel seam)
        alpha = (density * cfg.alpha_gain).clamp(max=1.0) * mask
    else:
        alpha = mask.float()
    return DynamicLayer(rgb, mask, alpha, depth)


def rasterize_cloud(cloud: DynamicCloud, target: Target, cfg: DynamicConfig) -> DynamicLayer:
    """Point-renderer variant (method reference §7.4): radius in NDC, K points per pixel, black background."""
    rgb, mask, depth = render_points(cloud.points, cloud.colors, target.K, target.c2w, target.hw,
                                     cfg.point_radius, cfg.points_per_pixel, cfg.point_pixel_offset)
    return DynamicLayer(rgb, mask, mask.float(), depth)


def empty_layer(hw, device) -> DynamicLayer:
    zeros = torch.zeros(*hw, device=device)
    return DynamicLayer(torch.zeros(*hw, 3, device=device), zeros.bool(), zeros, zeros.clone())


def blend_layers(a: DynamicLayer, b: DynamicLayer, w_b: float) -> DynamicLayer:
    """Time blend of the splats from t1 (weight 1 - w_b) and t2 (weight w_b).

    alpha = min(1, 2 * (w_a * alpha_a + w_b * alpha_b)): either side alone fully covers at mid-interval (one
    frame may see parts of the object the other does not), and a side with weight 0 contributes nothing, so
    the result is continuous across integer t.
    """
    wa, wb = (1.0 - w_b) * a.alpha, w_b * b.alpha
    total = wa + wb
    norm = total.clamp(min=1e-12)
    rgb = (wa[..., None] * a.rgb + wb[..., None] * b.rgb) / norm[..., None]
    depth = (wa * a.depth + wb * b.depth) / norm
    alpha = (2.0 * total).clamp(max=1.0)
    return DynamicLayer(rgb, alpha > 0.5, alpha, depth)


class DynamicRenderer:
    """Renders the dynamic layer of any target; caches the noise image and the clouds of the latest time (the
    cloud depends on t only, so a frozen-time camera move lifts and filters it once)."""

    def __init__(self, frames: Frames, cfg: DynamicConfig):
        self.frames = frames
        self.cfg = cfg
        self._noise = _noise(frames.hw, cfg.noise_seed, frames.device)
        self._has_dynamic = frames.dyn.flatten(1).any(1).tolist()  # per frame, on the host: no sync per render
        self._clouds: dict[tuple[int, int, float], DynamicCloud | None] = {}

    def _cloud(self, src: int, dst: int, t: float) -> DynamicCloud | None:
        key = (src, dst, t)
        if key not in self._clouds:
            if len(self._clouds) >= 2:  # the two sides of one time
                del self._clouds[next(iter(self._clouds))]
            self._clouds[key] = dynamic_cloud(self.frames, src, dst, t, self.cfg)
        return self._clouds[key]

    def _one_side(self, src: int, dst: int, target: Target) -> DynamicLayer | None:
        if not self._has_dynamic[src]:
            return empty_layer(target.hw, self.frames.device)
        cloud = self._cloud(src, dst, target.t)
        if cloud is None:
            return None
        if self.cfg.renderer == "points":
            return rasterize_cloud(cloud, target, self.cfg)
        return splat_cloud(self.frames, cloud, target, self.cfg, self._noise)

    def render(self, target: Target) -> DynamicLayer:
        t1, t2 = temporal_pair(target.t, self.frames.n)
        forward = self._one_side(t1, t2, target)
        if forward is None:  # no forward flow stored: nothing can be matched
            forward = empty_layer(target.hw, self.frames.device)
        if not self.cfg.bidirectional or target.t == t1:  # at integer t the t2 side has weight 0
            return forward
        backward = self._one_side(t2, t1, target)
        if backward is None:
            return forward
        return blend_layers(forward, backward, target.t - t1)
