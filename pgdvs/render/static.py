"""Static layer: the background of any target, with moving objects removed.

Interface (what the GNT renderer implements to plug in)::

    class MyStatic:                                   # StaticRenderer protocol
        def __init__(self, frames: Frames, cfg: StaticConfig): ...
        def render(self, target: Target) -> StaticLayer: ...

    register_static_renderer("gnt", MyStatic)         # then StaticConfig(renderer="gnt")

``frames`` holds every input frame on the render device (rgb, depth, dynamic masks, K, c2w);
``nearest_views(frames.centers, target.c2w[:3, 3], cfg.n_src_views)`` is the original's spatial source set.

Built-in renderers:
- ``ibr`` (masked IBR, project default, no learned weights): target depth from the static geometry of the
  nearest frames (z-buffer of their static pixels, background-biased hole filling), then colour gathered from
  the nearest ``n_src_views`` frames by backward projection. A source sample is excluded when it falls on a
  (dilated) dynamic mask or fails the depth test, so background hidden by a moving object in one frame is
  filled from frames where it was visible; blending weights favour sources whose viewing ray is closest in
  angle. The weight-free counterpart of GNT's masked attention.
- ``geo`` (the original's fused static point cloud baseline, method reference §8).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..warp import sample_image
from ..geometry import (in_image, invert_pose, pixel_grid, project_points as project,
                        transform_points as transform, unproject_depth, unproject_pixels as unproject)
from .config import StaticConfig
from .frames import Frames, Target, nearest_views
from .knn import outlier_keep_mask
from .points import render_points


@dataclass
class StaticLayer:
    """rgb (H, W, 3), depth (H, W) (0 where unknown), valid (H, W) bool."""

    rgb: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor


class StaticRenderer(Protocol):
    def render(self, target: Target) -> StaticLayer: ...


StaticFactory = Callable[[Frames, StaticConfig], StaticRenderer]
STATIC_RENDERERS: dict[str, StaticFactory] = {}


def register_static_renderer(name: str, factory: StaticFactory) -> None:
    """Make ``StaticConfig(renderer=name)`` build ``factory(frames, cfg)``."""
    STATIC_RENDERERS[name] = factory


def make_static_renderer(frames: Frames, cfg: StaticConfig) -> StaticRenderer:
    if cfg.renderer not in STATIC_RENDERERS:
        raise InputError(f"static renderer {cfg.renderer!r} is unknown; allowed values: {', '.join(STATIC_RENDERERS)}")
    return STATIC_RENDERERS[cfg.renderer](frames, cfg)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Square dilation of bool masks (..., H, W) by ``radius`` pixels."""
    if radius <= 0:
        return mask
    flat = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    return (F.max_pool2d(flat, 2 * radius + 1, 1, radius) > 0).reshape(mask.shape)


def fill_holes_background(depth: torch.Tensor, levels: int) -> torch.Tensor:
    """Fill holes (+inf) of a depth map (H, W) from a max-pooled pyramid: a hole takes the farthest known depth
    around it at the finest level that has one (holes in a z-buffer are mostly disocclusions, i.e. background).
    ``levels`` halvings reach holes about 2^levels pixels wide; larger ones stay +inf."""
    known = torch.where(torch.isinf(depth), torch.full_like(depth, -torch.inf), depth)[None, None]
    pyramid = [known]
    for _ in range(levels):
        if min(pyramid[-1].shape[-2:]) < 2 or not bool(torch.isinf(pyramid[-1]).any()):
            break
        pyramid.append(F.max_pool2d(pyramid[-1], 3, 2, 1))
    filled = pyramid[-1]
    for level in reversed(pyramid[:-1]):
        up = F.max_pool2d(F.interpolate(filled, size=level.shape[-2:], mode="nearest"), 3, 1, 1)
        filled = torch.where(torch.isinf(level), up, level)
    out = filled[0, 0]
    return torch.where(torch.isinf(out), torch.full_like(out, torch.inf), out)


def zbuffer_depth(points: torch.Tensor, target: Target) -> torch.Tensor:
    """Nearest z of world points (P, 3) per target pixel, rounded to the nearest pixel. (H, W), +inf = empty."""
    height, width = target.hw
    uv, z = project(points, target.K, target.c2w)
    px = torch.round(uv).long()
    ok = (z > 0) & (px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height)
    zbuf = torch.full((height * width,), torch.inf, device=points.device)
    zbuf.scatter_reduce_(0, px[ok, 1] * width + px[ok, 0], z[ok], reduce="amin")
    return zbuf.reshape(height, width)


class MaskedIBR:
    """Masked image-based rendering (see module docstring)."""

    def __init__(self, frames: Frames, cfg: StaticConfig):
        self.frames = frames
        self.cfg = cfg
        self._sources: dict[int, torch.Tensor] = {}  # frame -> (5, H, W): rgb, depth, dilated dynamic mask

    def _source(self, views: list[int]) -> list[torch.Tensor]:
        """(5, H, W) lookup stack of each view, cached (consecutive targets share most of their views)."""
        fr = self.frames
        for v in views:
            if v not in self._sources:
                dyn = _dilate(fr.dyn[v], self.cfg.mask_dilate_px).float()
                self._sources[v] = torch.cat([fr.rgb[v], fr.depth[v][..., None], dyn[..., None]], -1).permute(2, 0, 1)
        stale = [v for v in self._sources if v not in views]  # oldest first
        for v in stale[: max(0, len(self._sources) - 2 * (self.cfg.n_src_views + self.cfg.depth_views))]:
            del self._sources[v]
        return [self._sources[v] for v in views]

    def _target_depth(self, target: Target) -> torch.Tensor:
        fr, cfg = self.frames, self.cfg
        views = nearest_views(fr.centers, target.c2w[:3, 3], cfg.depth_views).tolist()
        src = self._source(views)
        grid = pixel_grid(*fr.hw, device=fr.device).reshape(-1, 2)
        pts = []
        for v, stack in zip(views, src):
            static = (stack[4] <= 0).reshape(-1)
            pts.append(unproject(grid[static], stack[3].reshape(-1)[static], fr.K[v], fr.c2w[v]))
        pts = torch.cat(pts)
        return fill_holes_background(zbuffer_depth(pts, target), cfg.hole_fill_levels)

    def render(self, target: Target) -> StaticLayer:
        fr, cfg = self.frames, self.cfg
        height, width = target.hw
        depth = self._target_depth(target)
        known = torch.isfinite(depth).reshape(-1)
        uv_t = pixel_grid(height, width, device=fr.device).reshape(-1, 2)[known]
        world = unproject(uv_t, depth.reshape(-1)[known], target.K, target.c2w)
        to_target = F.normalize(target.c2w[:3, 3] - world, dim=-1)
        num = torch.zeros(3, world.shape[0], device=fr.device)
        den = torch.zeros(world.shape[0], device=fr.device)
        num_any, den_any = num.clone(), den.clone()
        views = nearest_views(fr.centers, target.c2w[:3, 3], cfg.n_src_views).tolist()
        for start in range(0, len(views), cfg.views_per_chunk):
            chunk = views[start:start + cfg.views_per_chunk]
            uv, z = project(world[None], fr.K[chunk], fr.c2w[chunk])  # (V, P, 2), (V, P)
            inside = in_image(uv, *fr.hw) & (z > 0)
            s = torch.stack([sample_image(src[None], uv[i:i + 1])[0] for i, src in enumerate(self._source(chunk))])
            # s (V, 5, P): rgb, depth, dynamic
            visible = (z - s[:, 3]).abs() <= cfg.depth_tolerance * s[:, 3]
            # view weight from the angle between the rays to target and source: 1 - cos ~ angle^2 / 2
            to_source = F.normalize(fr.centers[chunk][:, None] - world[None], dim=-1)
            one_minus_cos = (1.0 - (to_target[None] * to_source).sum(-1)).clamp(min=0.0)
            w = (2.0 * one_minus_cos + cfg.angle_eps ** 2) ** (-cfg.angle_power / 2) * inside
            use = w * (visible & (s[:, 4] <= 1e-3))
            num += (use[:, None] * s[:, :3]).sum(0)
            den += use.sum(0)
            num_any += (w[:, None] * s[:, :3]).sum(0)
            den_any += w.sum(0)
        # where no source saw static background, fall back to every in-view sample (as PGDVS's attention does)
        rgb_known = torch.where(den > 0, num / den.clamp(min=1e-12), num_any / den_any.clamp(min=1e-12)).T
        rgb = torch.zeros(height * width, 3, device=fr.device)
        rgb[known] = rgb_known
        valid = torch.zeros(height * width, dtype=torch.bool, device=fr.device)
        valid[known] = den_any > 0
        depth = torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth))
        return StaticLayer(rgb.reshape(height, width, 3), depth, valid.reshape(height, width))


def _covered_pixels(points: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor, hw) -> torch.Tensor:
    """Pixels hit by projected points, the original's way: no depth test, coordinates truncated. (H, W) bool."""
    height, width = hw
    pix = transform(invert_pose(c2w), points) @ K.T
    uv = pix[:, :2] / pix[:, 2:]
    ok = (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
    cov = torch.zeros(height, width, dtype=torch.bool, device=points.device)
    cov[uv[ok, 1].long(), uv[ok, 0].long()] = True
    return cov


def fuse_static_cloud(frames: Frames, cfg: StaticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The geo baseline's cloud: static pixels of frame 0, then of each later frame only where the cloud so far
    does not project. Returns points (P, 3), colors (P, 3)."""
    rgb_all = []
    cloud = torch.zeros(0, 3, device=frames.device)
    for i in range(frames.n):
        take = ~frames.dyn[i]
        if i > 0:
            take = take & ~_covered_pixels(cloud, frames.K[i], frames.c2w[i], frames.hw)
        cloud = torch.cat([cloud, unproject_depth(frames.depth[i], frames.K[i], frames.c2w[i])[take]])
        rgb_all.append(frames.rgb[i][take])
    colors = torch.cat(rgb_all)
    if cfg.geo_remove_outliers and cloud.shape[0] > 0:
        keep = outlier_keep_mask(cloud, cfg.geo_outlier_knn, cfg.geo_outlier_std)
        cloud, colors = cloud[keep], colors[keep]
    return cloud, colors


class FusedPointCloud:
    """The original's ``geo`` static renderer: fused cloud (built once, lazily) rendered as points."""

    def __init__(self, frames: Frames, cfg: StaticConfig):
        self.frames = frames
        self.cfg = cfg
        self._cloud: tuple[torch.Tensor, torch.Tensor] | None = None

    def render(self, target: Target) -> StaticLayer:
        if self._cloud is None:
            self._cloud = fuse_static_cloud(self.frames, self.cfg)
        points, colors = self._cloud
        rgb, coverage, depth = render_points(points, colors, target.K, target.c2w, target.hw,
                                             self.cfg.point_radius, self.cfg.points_per_pixel,
                                             self.cfg.point_pixel_offset)
        return StaticLayer(rgb, depth, coverage)


register_static_renderer("ibr", MaskedIBR)
register_static_renderer("geo", FusedPointCloud)
