"""Static layer: masked IBR (own-view reproduction, disocclusion fill, validity), fused point cloud, registry."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from pgdvs.bench.metrics import psnr
from pgdvs.errors import InputError
from pgdvs.render.config import StaticConfig
from pgdvs.render.frames import Frames, make_target, nearest_views
from pgdvs.render.static import (STATIC_RENDERERS, MaskedIBR, StaticLayer, fill_holes_background,
                                 fuse_static_cloud, lands_on_target, make_static_renderer,
                                 register_static_renderer)
from pgdvs.render.morphology import dilate
from render_fixtures import make_scene, render_view


@pytest.fixture(scope="module")
def scene():
    return make_scene(n=6, hw=(60, 80), velocity=0.3)  # the square uncovers all the background it hides


@pytest.fixture(scope="module")
def frames(scene):
    return Frames.from_scene(scene)


def test_nearest_views_by_camera_centre_sorted_by_frame():
    centers = torch.tensor([[0.0, 0, 0], [5.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [1.5, 0, 0]])
    assert nearest_views(centers, torch.tensor([1.6, 0, 0]), 3).tolist() == [2, 3, 4]
    assert nearest_views(centers, torch.tensor([0.0, 0, 0]), 10).tolist() == [0, 1, 2, 3, 4]


def test_hole_fill_prefers_background():
    depth = torch.full((9, 40), torch.inf)
    depth[:, :10], depth[:, 30:] = 1.0, 3.0  # a 20-px gap between a near and a far surface
    depth[4, 5] = torch.inf  # a crack inside the near surface
    filled = fill_holes_background(depth, 8)
    # the disocclusion is filled, mostly with the far (background) depth
    gap = filled[:, 10:30]
    assert ((gap == 1.0) | (gap == 3.0)).all() and (gap[:, 10:] == 3.0).all() and (gap == 3.0).float().mean() >= 0.6
    assert filled[4, 5] == 1.0 and (filled[:, :10] == 1.0).all() and (filled[:, 30:] == 3.0).all()
    assert torch.isinf(fill_holes_background(depth, 2)[:, 20:24]).all()  # far beyond 2^levels px: left open
    assert torch.isinf(fill_holes_background(torch.full((4, 4), torch.inf), 8)).all()


@pytest.mark.parametrize("i", [0, 3])
def test_input_camera_at_own_time_reproduces_static_pixels(scene, frames, i):
    layer = MaskedIBR(frames, StaticConfig()).render(make_target(frames, float(i), scene.c2w[i], scene.K[i]))
    static = ~scene.dyn_mask[i]
    assert psnr(layer.rgb.numpy(), scene.rgb[i], static) >= 40
    assert np.allclose(layer.depth.numpy()[static], scene.depth[i][static], rtol=1e-4)


def test_background_behind_the_moving_object_is_filled_from_other_frames(scene, frames):
    i = 2
    layer = MaskedIBR(frames, StaticConfig()).render(make_target(frames, float(i), scene.c2w[i], scene.K[i]))
    background, bg_depth, _, _ = render_view(scene.K[i], scene.c2w[i], i, scene.hw, square=False)
    hidden = scene.dyn_mask[i]
    assert psnr(layer.rgb.numpy(), background, hidden) >= 30
    assert np.allclose(layer.depth.numpy()[hidden], bg_depth[hidden], rtol=1e-3)
    assert layer.valid.all()


def test_parallax_visibility_keeps_any_depth_without_baseline_and_drops_occluders():
    K = torch.tensor([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    pixels = torch.tensor([[10.0, 5.0], [40.0, 30.0], [70.0, 50.0]])
    points = torch.cat([(pixels - K[:2, 2]) / 100.0 * 2.0, torch.full((3, 1), 2.0)], 1)  # at depth 2
    # a source at the target's centre: whatever depth it sees along a pixel's ray lands on that pixel
    same = lands_on_target(torch.tensor([[0.5, 1.0, 4.0]]), points, torch.zeros(1, 3), K, pixels, 0.5)
    assert same.all()
    # a source 0.1 to the right: where it sees the point's surface (ratio 1) the sample lands back on the
    # pixel; where it sees an occluder at half the depth it lands 0.1 / 2 * 100 = 5 px away
    right = torch.tensor([[0.1, 0.0, 0.0]])
    seen = lands_on_target(torch.tensor([[1.0, 1.0, 0.5]]), points, right, K, pixels, 1.0)
    assert seen.tolist() == [[True, True, False]]
    assert lands_on_target(torch.tensor([[0.5]]), points[:1], right, K, pixels[:1], 5.1).all()


def test_nearest_view_is_kept_when_estimated_depths_disagree_by_percents(scene):
    """An input camera re-rendered from frames whose depths are off by 10 %, too far in the even frames and
    too near in the odd ones: its own frame (no baseline) still passes the visibility test and dominates the
    blend, so its static pixels come back almost exactly (a 2 % relative depth test dropped it: 46-54 dB)."""
    wrong = scene.depth * np.where(np.arange(len(scene.depth)) % 2 == 0, 1.1, 0.9)[:, None, None]
    frames = Frames.from_scene(replace(scene, depth=wrong.astype(np.float32)))
    for i in (0, 2, 4):  # the z-buffered target depth comes from the nearer, odd frames: 20 % off their own
        target = make_target(frames, float(i), scene.c2w[i], scene.K[i])
        layer = MaskedIBR(frames, StaticConfig(n_src_views=3)).render(target)
        assert psnr(layer.rgb.numpy(), scene.rgb[i], ~scene.dyn_mask[i]) >= 60


def test_novel_view_of_background(scene, frames):
    c2w = scene.c2w[2].copy()
    c2w[:3, 3] += (0.03, 0.02, -0.1)
    layer = MaskedIBR(frames, StaticConfig()).render(make_target(frames, 2.5, c2w, scene.K[0]))
    background, _, _, _ = render_view(scene.K[0], c2w, 2.5, scene.hw, square=False)
    valid = layer.valid.numpy()
    assert valid.mean() > 0.9
    assert psnr(layer.rgb.numpy(), background, valid) >= 30


def test_unseen_pixels_are_invalid(scene, frames):
    c2w = scene.c2w[0].copy()
    c2w[0, 3] -= 3.0  # far to the left: part of the view was never seen
    layer = MaskedIBR(frames, StaticConfig()).render(make_target(frames, 0.0, c2w, scene.K[0]))
    valid = layer.valid.numpy()
    assert 0.05 < valid.mean() < 0.95
    assert not valid[:, 0].any() and layer.rgb.numpy()[~valid].max() == 0


def test_fused_cloud_adds_only_uncovered_static_pixels():
    scene = make_scene(n=4, hw=(30, 40), cam_step=0.0)  # fixed camera: every frame covers the same pixels
    points, colors = fuse_static_cloud(Frames.from_scene(scene), StaticConfig(geo_remove_outliers=False))
    # frame 0's static pixels, then static pixels that the square hid in every earlier frame
    seen = np.logical_or.accumulate(~scene.dyn_mask, axis=0)[-1]
    assert len(points) == seen.sum() and colors.shape == (len(points), 3)


def test_geo_renders_input_view_at_realistic_radius():
    scene = make_scene(n=3, hw=(120, 160))
    frames = Frames.from_scene(scene)
    cfg = StaticConfig(renderer="geo", geo_remove_outliers=False, point_pixel_offset=0.5)
    layer = make_static_renderer(frames, cfg).render(make_target(frames, 0.0, scene.c2w[0], scene.K[0]))
    static = ~scene.dyn_mask[0]
    assert layer.valid.numpy()[static].mean() > 0.99  # radius 0.01 NDC = 0.6 px at 120 px: covers the grid
    assert psnr(layer.rgb.numpy(), scene.rgb[0], static & layer.valid.numpy()) > 25


def test_registry_plugs_in_a_custom_static_renderer(scene, frames):
    class Grey:
        def __init__(self, frames, cfg):
            self.frames = frames

        def render(self, target):
            h, w = target.hw
            return StaticLayer(torch.full((h, w, 3), 0.5), torch.ones(h, w), torch.ones(h, w, dtype=torch.bool))

    register_static_renderer("grey-test", Grey)
    try:
        layer = make_static_renderer(frames, StaticConfig(renderer="grey-test")).render(
            make_target(frames, 0.0, scene.c2w[0], scene.K[0]))
        assert float(layer.rgb.mean()) == 0.5
    finally:
        del STATIC_RENDERERS["grey-test"]
    with pytest.raises(InputError, match="ibr"):
        make_static_renderer(frames, StaticConfig(renderer="gnt-missing"))


def test_primary_views_blend_the_nearest_and_fill_the_rest_from_farther_views(scene, frames):
    i = 2
    target = make_target(frames, float(i), scene.c2w[i], scene.K[i])
    nearest_two = nearest_views(frames.centers, target.c2w[:3, 3], 2).tolist()
    assert i in nearest_two  # the target's own frame, whose moving square hides background
    split = MaskedIBR(frames, StaticConfig(n_src_views=6, primary_views=2)).render(target)
    only_two = MaskedIBR(frames, StaticConfig(n_src_views=2)).render(target)
    every = MaskedIBR(frames, StaticConfig(n_src_views=6)).render(target)
    close = lambda a, b: torch.isclose(a, b, atol=1e-6).all(-1)  # noqa: E731
    as_two, as_all = close(split.rgb, only_two.rgb), close(split.rgb, every.rgb)
    # every pixel is either the 2-view blend (a primary view saw its background) or the all-view one
    assert (as_two | as_all).all() and as_two.float().mean() > 0.8
    # the background hidden by the square in both primary views comes from the farther views
    hidden = torch.as_tensor(scene.dyn_mask[nearest_two].all(0))
    core = hidden & ~dilate(~hidden, 2)
    assert core.sum() > 20 and as_all[core].all() and not as_two[core].all()
    background = render_view(scene.K[i], scene.c2w[i], i, scene.hw, square=False)[0]
    assert psnr(split.rgb.numpy(), background, core.numpy()) >= 30
