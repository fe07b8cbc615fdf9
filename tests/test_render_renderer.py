"""Renderer facade, configs, composite and the `render` CLI."""
import dataclasses

import numpy as np
import pytest
import torch

from pgdvs.bench.metrics import psnr
from pgdvs.cli import main
from pgdvs.errors import InputError
from pgdvs.render.config import CONFIGS, CompositeConfig, get_config
from pgdvs.render.composite import composite
from pgdvs.render.dynamic import empty_layer
from pgdvs.render.renderer import Renderer
from pgdvs.render.static import StaticLayer
from render_fixtures import camera, make_scene, render_view

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def scene():
    return make_scene(n=5, hw=(60, 80), velocity=0.3)


def test_paper_config_has_the_original_values():
    paper = CONFIGS["paper"]
    d, s = paper.dynamic, paper.static
    assert (d.renderer, d.remove_outliers, d.outlier_knn, d.outlier_std, d.alpha, d.mask_threshold) == (
        "softsplat", True, 50, 0.1, 100.0, 1e-3)
    assert (d.point_radius, d.points_per_pixel, d.use_flow_consistency, d.outlier_median_factor) == (0.01, 3, False, 0.0)
    assert (d.half_pixel_lookup, d.point_pixel_offset, d.bidirectional, d.alpha_gain) == (True, 0.0, False, 0.0)
    assert (s.renderer, s.n_src_views, s.geo_remove_outliers, s.point_radius, s.points_per_pixel) == (
        "geo", 10, False, 0.01, 3)
    assert (s.geo_outlier_knn, s.geo_outlier_std) == (50, 0.2)  # the scripts' values when the filter is on
    assert paper.composite.mode == "hard"
    with pytest.raises(InputError, match="paper"):
        get_config("fancy")


@pytest.mark.parametrize("config", ["paper", "default"])
def test_render_outputs(scene, config):
    out = Renderer(scene, config, "cpu").render(2.5, camera(0.05), scene.K[0])
    assert out.rgb.shape == (60, 80, 3) and out.rgb.dtype == np.float32
    assert out.depth.shape == (60, 80) and out.dyn_mask.dtype == bool and out.valid.dtype == bool
    assert 0 <= out.rgb.min() and out.rgb.max() <= 1
    assert out.dyn_mask.sum() > 100


def test_input_camera_at_own_time_reproduces_frame(scene):
    out = Renderer(scene, "default", "cpu").render(3.0, scene.c2w[3], scene.K[3])
    assert psnr(out.rgb, scene.rgb[3], ~scene.dyn_mask[3]) >= 40
    assert psnr(out.rgb, scene.rgb[3]) >= 40
    assert np.array_equal(out.dyn_mask, scene.dyn_mask[3])


def test_default_beats_paper_on_a_novel_view(scene):
    c2w = camera(0.06, 0.02, 0.05)
    gt, _, gt_dyn, _ = render_view(scene.K[0], c2w, 1.5, scene.hw, velocity=0.3)
    scores = {name: psnr(Renderer(scene, name, "cpu").render(1.5, c2w, scene.K[0]).rgb, gt, gt_dyn)
              for name in ("paper", "default")}
    assert scores["default"] > scores["paper"] + 3 and scores["default"] > 25


def test_torch_output_and_other_size(scene):
    r = Renderer(scene, "default", "cpu")
    K = scene.K[0].copy()
    K[:2] *= 0.5
    out = r.render(1.0, scene.c2w[1], K, hw=(30, 40), as_numpy=False)
    assert isinstance(out.rgb, torch.Tensor) and out.rgb.shape == (30, 40, 3)
    assert out.dyn_mask.any()


@pytest.mark.parametrize("t,hw", [(-0.1, None), (4.5, None), (float("nan"), None), (1.0, (0, 10))])
def test_bad_targets_raise_input_error(scene, t, hw):
    with pytest.raises(InputError):
        Renderer(scene, "paper", "cpu").render(t, scene.c2w[0], scene.K[0], hw=hw)


@pytest.mark.parametrize("config", ["paper", "default"])
def test_scene_without_dynamic_pixels_and_all_dynamic(config):
    still = make_scene(n=3, hw=(40, 60), square=False)
    out = Renderer(still, config, "cpu").render(1.5, camera(0.1), still.K[0])
    assert not out.dyn_mask.any()
    moving = make_scene(n=3, hw=(40, 60), square=False, bg_velocity=0.05)
    assert moving.dyn_mask.all()
    out = Renderer(moving, config, "cpu").render(0.5, camera(0.04), moving.K[0])
    assert out.dyn_mask.mean() > 0.5 and np.isfinite(out.rgb).all()


def test_hard_and_soft_composite():
    hw = (2, 3)
    static = StaticLayer(torch.full((*hw, 3), 0.2), torch.full(hw, 4.0), torch.ones(hw, dtype=torch.bool))
    dyn = empty_layer(hw, "cpu")
    dyn.rgb[:, :2], dyn.mask[:, :2], dyn.depth[:, :2] = 0.8, True, 2.0
    dyn.alpha[:, 0], dyn.alpha[:, 1] = 1.0, 0.5
    hard = composite(static, dyn, CompositeConfig(mode="hard"))
    assert torch.allclose(hard.rgb[0, :, 0], torch.tensor([0.8, 0.8, 0.2]))
    assert hard.depth[0].tolist() == [2.0, 2.0, 4.0]
    soft = composite(static, dyn, CompositeConfig(mode="soft"))
    assert torch.allclose(soft.rgb[0, :, 0], torch.tensor([0.8, 0.5, 0.2]))


def test_cli_renders_videos(scene, tmp_path):
    import av  # here, not at the top: the CUDA parity tests also run on machines without PyAV

    scene.save(tmp_path / "scene")
    out = tmp_path / "out.mp4"
    rc = main(["render", str(tmp_path / "scene"), "--out", str(out), "--frames", "3", "--frames-dir",
               str(tmp_path / "frames"), "--mask-video", str(tmp_path / "mask.mp4"), "--depth-video",
               str(tmp_path / "depth.mp4"), "--config", "paper", "--device", "cpu"])
    assert rc == 0
    with av.open(str(out)) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.height, stream.width) == (60, 80)
        assert sum(1 for _ in video.decode(video=0)) == 3
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert (tmp_path / "mask.mp4").stat().st_size > 0 and (tmp_path / "depth.mp4").stat().st_size > 0
    assert main(["render", str(tmp_path / "scene"), "--out", str(tmp_path / "x.mp4"), "--preset", "nope"]) == 2
    assert main(["render", str(tmp_path / "scene"), "--out", str(tmp_path / "x.avi")]) == 2
    assert not (tmp_path / "x.mp4").exists()


@cuda
@pytest.mark.parametrize("config", ["paper", "default"])
def test_cpu_cuda_parity(scene, config):
    cfg = CONFIGS[config]
    a = Renderer(scene, cfg, "cpu").render(1.5, camera(0.05), scene.K[0])
    b = Renderer(scene, cfg, "cuda").render(1.5, camera(0.05), scene.K[0])
    assert np.abs(a.rgb - b.rgb).mean() < 1e-4
    assert (a.dyn_mask != b.dyn_mask).mean() < 1e-3


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONFIGS["paper"].dynamic.alpha = 1.0
