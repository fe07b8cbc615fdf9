"""Static layer: the background of any target, with moving objects removed.

Interface (what the GNT renderer implements to plug in)::

    class MyStatic:                                   # StaticRenderer protocol
        def __init__(self, frames: Frames, cfg: StaticConfig): ...
        def render(self, target: Target) -> StaticLayer: ...

    register_static_renderer("gnt", MyStatic)         # then StaticConfig(renderer="gnt")

``frames`` holds every input frame on the render device (rgb, depth, dynamic masks, K, c2w);
``nearest_views(frames.host_centers, target.center, cfg.n_src_views)`` is the original's spatial source set
(on the CPU: no device sync).

Built-in renderers:
- ``ibr`` (masked IBR, project default, no learned weights): target depth from the static geometry of the
  nearest frames (z-buffer of their static pixels, background-biased hole filling), then colour gathered from
  the nearest ``n_src_views`` frames by backward projection. A source sample is excluded when it falls on a
  (dilated) dynamic mask or the surface it sees does not reproject onto the target pixel (parallax test), so
  background hidden by a moving object in one frame is filled from frames where it was visible; blending
  weights favour sources whose viewing ray is closest in angle. The weight-free counterpart of GNT's masked attention.
- ``geo`` (the original's fused static point cloud baseline, method reference §8).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..warp import sample_image
from ..geometry import (camera_to_pixels, in_image, invert_pose, project_points as project,
                        transform_points as transform, unproject_depth, unproject_pixels as unproject, zbuffer_depth)
from .config import StaticConfig
from .frames import Frames, Target, nearest_views
from .knn import outlier_keep_mask
from .morphology import dilate, max_filter
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


def fill_holes_background(depth: torch.Tensor, levels: int) -> torch.Tensor:
    """Fill holes (+inf) of a depth map (H, W) from a max-pooled pyramid: a hole takes the farthest known depth
    around it at the finest level that has one (holes in a z-buffer are mostly disocclusions, i.e. background).
    ``levels`` halvings reach holes about 2^levels pixels wide; larger ones stay +inf."""
    known = torch.where(torch.isinf(depth), -torch.inf, depth)[None, None]
    pyramid = [known]
    # all levels, also below one without holes (it passes up unchanged): stopping there costs a host sync per level
    for _ in range(levels):
        if min(pyramid[-1].shape[-2:]) < 2:
            break
        pyramid.append(max_filter(pyramid[-1], 1)[..., ::2, ::2])  # = max_pool2d(3, stride 2, pad 1)
    filled = pyramid[-1]
    for level in reversed(pyramid[:-1]):
        up = max_filter(F.interpolate(filled, size=level.shape[-2:], mode="nearest"), 1)
        filled = torch.where(torch.isinf(level), up, level)
    out = filled[0, 0]
    return torch.where(torch.isinf(out), torch.inf, out)


@dataclass
class _Lookups:
    """The target pixels with a depth and their points: pixels (P, 2), world (P, 3), to_target (P, 3) unit vectors
    from the points to the target camera, local (P, 3) the points in the target camera's coordinates, w2c (4, 4)
    the target's world-to-camera transform."""

    pixels: torch.Tensor
    world: torch.Tensor
    to_target: torch.Tensor
    local: torch.Tensor
    w2c: torch.Tensor

    def take(self, index: torch.Tensor) -> _Lookups:
        return _Lookups(self.pixels[index], self.world[index], self.to_target[index], self.local[index], self.w2c)


class MaskedIBR:
    """Masked image-based rendering (see module docstring)."""

    def __init__(self, frames: Frames, cfg: StaticConfig):
        self.frames = frames
        self.cfg = cfg
        self._sources: dict[int, torch.Tensor] = {}  # frame -> (5, H, W): rgb, depth, dilated dynamic mask
        self._points: dict[int, torch.Tensor] = {}  # frame -> (P, 3) world points of its static pixels

    def _trim(self, cache: dict, views: list[int]) -> None:
        """Drop the oldest entries not in ``views`` beyond twice the views one target uses."""
        stale = [v for v in cache if v not in views]  # oldest first
        for v in stale[: max(0, len(cache) - 2 * (self.cfg.n_src_views + self.cfg.depth_views))]:
            del cache[v]

    def _source(self, views: list[int]) -> list[torch.Tensor]:
        """(5, H, W) lookup stack of each view, cached (consecutive targets share most of their views)."""
        fr = self.frames
        for v in views:
            if v not in self._sources:
                dyn = dilate(fr.dyn[v], self.cfg.mask_dilate_px).float()
                self._sources[v] = torch.cat([fr.rgb[v], fr.depth[v][..., None], dyn[..., None]], -1).permute(2, 0, 1)
        self._trim(self._sources, views)
        return [self._sources[v] for v in views]

    def _static_points(self, views: list[int]) -> torch.Tensor:
        """World points of the static pixels (outside the dilated mask) of ``views``, concatenated (P, 3); cached."""
        fr = self.frames
        for v, stack in zip(views, self._source(views)):
            if v not in self._points:
                static = torch.nonzero(stack[4].reshape(-1) <= 0).squeeze(1)
                self._points[v] = unproject(fr.grid()[static], stack[3].reshape(-1)[static], fr.K[v], fr.c2w[v])
        self._trim(self._points, views)
        return torch.cat([self._points[v] for v in views])

    def _target_depth(self, target: Target) -> torch.Tensor:
        views = nearest_views(self.frames.host_centers, target.center, self.cfg.depth_views).tolist()
        return fill_holes_background(zbuffer_depth(self._static_points(views), target.K, target.c2w, target.hw),
                                     self.cfg.hole_fill_levels)

    def _gather(self, views: list[int], looks: _Lookups, target: Target) -> torch.Tensor:
        """Samples of source ``views`` for the target's ``looks`` (P points), summed over the views (8, P): rgb
        numerator and weight of the static-visible samples, then the same for every in-view sample (fallback)."""
        fr, cfg = self.frames, self.cfg
        world = looks.world
        n = world.shape[0]
        step = max(1, cfg.views_per_chunk * fr.hw[0] * fr.hw[1] // max(n, 1))  # see StaticConfig.views_per_chunk
        total = None
        for start in range(0, len(views), step):
            chunk = views[start:start + step]
            index = torch.tensor(chunk, device=fr.device)
            c2w = fr.c2w.index_select(0, index)
            uv, z = project(world[None], fr.K.index_select(0, index), c2w)  # (V, P, 2), (V, P)
            inside = in_image(uv, *fr.hw) & (z > 0)
            s = sample_image(torch.stack(self._source(chunk)), uv)  # (V, 5, P): rgb, depth, dynamic
            visible = lands_on_target(s[:, 3] / z.clamp(min=1e-8), looks.local, transform(looks.w2c, c2w[:, :3, 3]),
                                      target.K, looks.pixels, cfg.visibility_px)
            # view weight from the angle between the rays to target and source: 1 - cos ~ angle^2 / 2
            to_source = F.normalize(c2w[:, None, :3, 3] - world[None], dim=-1)
            one_minus_cos = (1.0 - (looks.to_target[None] * to_source).sum(-1)).clamp(min=0.0)
            w = (2.0 * one_minus_cos + cfg.angle_eps ** 2) ** (-cfg.angle_power / 2) * inside
            use = w * (visible & (s[:, 4] <= 1e-3))
            weights = torch.stack([use, w], 1)[:, :, None]  # (V, 2, 1, P)
            part = torch.cat([weights * s[:, None, :3], weights], 2).sum(0).reshape(8, n)
            total = part if total is None else total + part
        return total

    def render(self, target: Target) -> StaticLayer:
        fr, cfg = self.frames, self.cfg
        height, width = target.hw
        depth = self._target_depth(target)
        finite = torch.isfinite(depth)
        known = torch.nonzero(finite.reshape(-1)).squeeze(1)
        pixels = fr.grid(target.hw)[known]
        world = unproject(pixels, depth.reshape(-1)[known], target.K, target.c2w)
        w2c = invert_pose(target.c2w)
        looks = _Lookups(pixels, world, F.normalize(target.c2w[:3, 3] - world, dim=-1), transform(w2c, world), w2c)
        views = nearest_views(fr.host_centers, target.center, cfg.n_src_views).tolist()
        first = (nearest_views(fr.host_centers, target.center, cfg.primary_views).tolist() if cfg.primary_views
                 else views)
        acc = self._gather(first, looks, target)
        rest = [v for v in views if v not in first]
        if rest:  # farther views only for the pixels no nearer view saw as static background
            todo = torch.nonzero(acc[3] <= 0).squeeze(1)
            if todo.numel():
                acc.index_add_(1, todo, self._gather(rest, looks.take(todo), target))
        # where no source saw static background, fall back to every in-view sample (as PGDVS's attention does)
        sums = acc.view(2, 4, known.shape[0])
        mean = sums[:, :3] / sums[:, 3:].clamp(min=1e-12)  # (2, 3, P): static-visible, any
        rgb_known = torch.where(acc[3] > 0, mean[0], mean[1]).T
        rgb = torch.zeros(height * width, 3, device=fr.device).index_copy_(0, known, rgb_known)
        valid = torch.zeros(height * width, dtype=torch.bool, device=fr.device).index_copy_(0, known, acc[7] > 0)
        depth = torch.where(finite, depth, 0.0)
        return StaticLayer(rgb.reshape(height, width, 3), depth, valid.reshape(height, width))


def lands_on_target(ratio: torch.Tensor, points: torch.Tensor, centres: torch.Tensor, K: torch.Tensor,
                    pixels: torch.Tensor, tolerance_px: float) -> torch.Tensor:
    """Visibility by parallax: a target pixel's point, looked up in a source, counts as seen there when the surface
    the source sees on its ray through the point (``ratio`` times the point's depth in the source) lands within
    ``tolerance_px`` of that target pixel. Unlike a relative depth test, views with little baseline pass whatever
    their depth, so estimated depths that disagree by a few percent do not throw away the nearest (best) views;
    an occluder in front of the surface moves off the pixel once there is parallax. In the target camera's
    coordinates (OpenCV): ratio (V, P), points (P, 3) the target pixels' points, centres (V, 3) the source cameras'
    centres, K (3, 3) the target's intrinsics, pixels (P, 2) -> (V, P) bool."""
    seen = torch.lerp(centres[:, None], points[None], ratio[..., None])  # on the source ray through the point
    u, v = camera_to_pixels(*seen.unbind(-1), K)
    return (u - pixels[:, 0]) ** 2 + (v - pixels[:, 1]) ** 2 <= tolerance_px ** 2


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
