"""Every rendering hyperparameter, in frozen dataclasses.

``CONFIGS["paper"]`` reproduces the original PGDVS values exactly (scripts' values, method reference §16), with
the fused point cloud (``geo``) as static layer until a GNT renderer is registered (``StaticConfig.renderer =
"gnt"``). ``CONFIGS["default"]`` is this project's improved setting; each departure is commented with its reason.
``CONFIGS["fast"]`` is ``default`` with 4 source views (interactive previews).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import InputError


@dataclass(frozen=True)
class DynamicConfig:
    renderer: str = "softsplat"          # "softsplat" (original default) | "points" (original's DyCheck variant)
    remove_outliers: bool = True         # dyn_pcl_remove_outlier
    outlier_knn: int = 50                # dyn_pcl_outlier_knn
    outlier_std: float = 0.1             # dyn_pcl_outlier_std_thres
    outlier_median_factor: float = 0.0   # also keep m < factor * median(m) (0 = off, the original)
    # > 0: neighbours searched only among the points lifted from the (2r+1)^2 source-pixel window (knn.
    # window_sqdist); 0 = exact kNN over the whole cloud (the original)
    outlier_window: int = 0
    alpha: float = 100.0                 # softsplat_metric_abs_alpha
    mask_threshold: float = 1e-3         # splatted mask > threshold = dynamic coverage
    point_radius: float = 0.01           # dyn_render_pcl_pt_radius, PyTorch3D NDC units
    points_per_pixel: int = 3            # dyn_render_pcl_pts_per_pixel (benchmark value)
    use_flow_consistency: bool = False   # dyn_render_use_flow_consistency
    flow_consistency_threshold: float = 1.0
    # The original samples depth/colour of frame t2 with grid = 2u/W - 1 and align_corners=False, i.e. at u - 0.5.
    half_pixel_lookup: bool = True
    # Points rasterised at PyTorch3D's pixel centres (u + 0.5): offset 0.0 reproduces the original's half-pixel
    # shift, 0.5 aligns with the integer-centre convention.
    point_pixel_offset: float = 0.0
    bidirectional: bool = False          # also splat frame t2 -> t with the backward flow and blend by time
    # softsplat alpha = min(1, gain * bilinear coverage density): fractional on the object border, where the
    # thresholded mask (> 1e-3) is one pixel too wide; 0 = the binary mask (original)
    alpha_gain: float = 0.0
    # None = the original: the whole noise-filled frame is splatted and Z = -alpha * error can reach -100, so
    # an object pixel with a poor colour match loses against the 1e-7 term and vanishes. A number: splat the
    # object's pixels only, with Z >= -metric_floor.
    metric_floor: float | None = None
    noise_seed: int = 0                  # seed of the noise that replaces static pixels (noise trick)


@dataclass(frozen=True)
class StaticConfig:
    renderer: str = "ibr"                # "ibr" (masked IBR) | "geo" (fused point cloud) | registered name
    n_src_views: int = 10                # n_src_views_spatial: nearest frames by camera-centre distance
    # masked IBR
    depth_views: int = 4                 # nearest frames whose static depth is splatted to get the target depth
    visibility_px: float = 1.0           # px: how near the target pixel a source's surface must land to be visible
    hole_fill_levels: int = 8            # background-biased fill of z-buffer holes up to ~2^levels px wide
    angle_power: float = 2.0             # view weight ~ 1 / (angle^2 + eps^2)^(power / 2)
    angle_eps: float = 1e-3              # radians
    # > 0: blend only the nearest primary_views sources; the farther ones fill just the pixels none of those
    # saw as static background (disocclusions, pixels behind a moving object). 0 = blend all n_src_views.
    primary_views: int = 0
    # memory bound of the colour gather: samples of views_per_chunk x H x W (input size) at once, ~100 B each (a
    # whole target takes 5 views per pass, the few pixels left for the farther views take them all in one)
    views_per_chunk: int = 5
    mask_dilate_px: int = 1              # source dynamic masks grown before exclusion (edges carry mixed colour)
    # fused point cloud (geo)
    # st_pcl_remove_outlier: the original's config default (false); its geo scripts also ran true with std 0.2.
    # We take false: on a whole room the point spacing grows with depth, so median + 0.2 std drops the far
    # walls (rig-room bench view: 15.1 dB with the filter, 26.1 dB without).
    geo_remove_outliers: bool = False
    geo_outlier_knn: int = 50
    geo_outlier_std: float = 0.2
    point_radius: float = 0.01           # st_render_pcl_pt_radius
    points_per_pixel: int = 3            # st_render_pcl_pts_per_pixel
    point_pixel_offset: float = 0.0


@dataclass(frozen=True)
class CompositeConfig:
    mode: str = "hard"                   # "hard" (original) | "soft"
    fill_holes_px: int = 0               # soft: close holes of the dynamic coverage up to this radius


@dataclass(frozen=True)
class RenderConfig:
    static: StaticConfig = field(default_factory=StaticConfig)
    dynamic: DynamicConfig = field(default_factory=DynamicConfig)
    composite: CompositeConfig = field(default_factory=CompositeConfig)


CONFIGS: dict[str, RenderConfig] = {
    "paper": RenderConfig(
        static=StaticConfig(renderer="geo"),
        dynamic=DynamicConfig(),
        composite=CompositeConfig(mode="hard"),
    ),
    "default": RenderConfig(
        # target depth from 8 views (fewer leave off-path views with holes: handheld mPSNR 23.9 -> 25.3 dB);
        # colour blended from the 4 nearest, the other 6 only fill what those did not see (same PSNR to
        # 0.01 dB as blending all 10, 4x less work)
        static=StaticConfig(renderer="ibr", point_pixel_offset=0.5, depth_views=8, primary_views=4),
        dynamic=DynamicConfig(
            # median + 0.1 std drops up to half of a clean cloud (holes and a ragged border); points within
            # 4 x the median spacing^2 are kept, flying pixels at depth edges are still far above it.
            outlier_median_factor=4.0,
            # 16 neighbours among the 9 x 9 source-pixel window: flying pixels still stand out, thin slivers
            # (that 50 window neighbours would flag) survive; no O(P^2) search on CUDA
            outlier_knn=16,
            outlier_window=4,
            half_pixel_lookup=False,     # sample frame t2 at p2 itself
            point_pixel_offset=0.5,
            bidirectional=True,          # continuous in t: no colour pop when t crosses an integer
            alpha_gain=2.0,              # interior stays opaque up to ~1.4x magnification per axis
            metric_floor=10.0,           # e^-10 >> 1e-7: rim pixels stay, colour consistency still ranks
        ),
        composite=CompositeConfig(mode="soft", fill_holes_px=2),
    ),
}
# preview quality for interactive use: fewer source views for the static layer
CONFIGS["fast"] = replace(CONFIGS["default"], static=replace(CONFIGS["default"].static, n_src_views=4, depth_views=2))


def get_config(config: str | RenderConfig = "default") -> RenderConfig:
    """A named configuration (``paper`` | ``default`` | ``fast``) or a RenderConfig passed through."""
    if isinstance(config, RenderConfig):
        return config
    if config not in CONFIGS:
        raise InputError(f"render config {config!r} is unknown; allowed values: {', '.join(CONFIGS)}")
    return CONFIGS[config]


def with_static(config: RenderConfig, **changes) -> RenderConfig:
    """Copy of ``config`` with StaticConfig fields changed (e.g. renderer="gnt")."""
    return replace(config, static=replace(config.static, **changes))
