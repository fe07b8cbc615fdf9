"""End to end on a synthetic scene (pgdvs.bench.synthetic) with oracle geometry."""
import numpy as np
import pytest

from pgdvs.bench.metrics import psnr
from pgdvs.bench.synthetic import make_scene
from pgdvs.render.renderer import Renderer


@pytest.fixture(scope="module")
def scene():
    return make_scene("rig-room", "small")


@pytest.mark.parametrize("i", [5, 12])
def test_input_camera_at_own_time_reproduces_the_frame(scene, i):
    out = Renderer(scene, "default", "cpu").render(float(i), scene.c2w[i], scene.K[i])
    static = ~scene.dyn_mask[i]
    assert psnr(out.rgb, scene.rgb[i], static) >= 40
    assert psnr(out.rgb, scene.rgb[i]) >= 35  # the splatted dynamic pixels too


def test_held_out_views(scene):
    views = scene.gt.views
    picks = range(0, len(views.time), 8)
    scores = {}
    for config in ("paper", "default"):
        renderer = Renderer(scene, config, "cpu")
        scores[config] = [psnr(renderer.render(float(views.time[i]), views.c2w[i], views.K[i]).rgb, views.rgb[i],
                               views.dyn_mask[i]) for i in picks]
    assert np.mean(scores["default"]) > np.mean(scores["paper"])
    assert np.mean(scores["default"]) > 20
