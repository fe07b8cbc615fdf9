"""Suite ``render-speed``: workloads, resizing and the row schema (speed itself is measured, not asserted)."""
import json

import numpy as np
import pytest

from pgdvs.bench import harness
from pgdvs.bench.suites.speed import resize_scene, workload_path
from pgdvs.bench.synthetic import make_scene
from pgdvs.errors import InputError


@pytest.fixture(scope="module")
def scene():
    return make_scene("handheld-room", "small")


def test_resized_scene_keeps_geometry_consistent(scene):
    big, views = resize_scene(scene, (192, 320))
    np.testing.assert_allclose(views.K[:, 0, 0], scene.gt.views.K[:, 0, 0] * 2)  # held-out cameras follow
    assert big.hw == (192, 320) and big.rgb.shape == (scene.n_frames, 192, 320, 3)
    assert big.flow_fwd.shape == (scene.n_frames - 1, 192, 320, 2)
    np.testing.assert_allclose(big.K[:, 0, 0], scene.K[:, 0, 0] * 2)
    np.testing.assert_allclose(big.K[:, 0, 2], (scene.K[:, 0, 2] + 0.5) * 2 - 0.5)
    # flow vectors scale with the image: the mean horizontal motion doubles
    np.testing.assert_allclose(np.abs(big.flow_fwd[..., 0]).mean(), 2 * np.abs(scene.flow_fwd[..., 0]).mean(), rtol=0.05)
    assert abs(big.dyn_mask.mean() - scene.dyn_mask.mean()) < 0.01


def test_workloads(scene):
    times, c2w, K = workload_path(scene, scene.gt.views, "bullet-time")
    assert np.ptp(times) == 0 and len(times) == len(c2w) == len(K) > 1  # frozen time, moving camera
    times = workload_path(scene, scene.gt.views, "slow-motion")[0]
    assert (np.diff(times) > 0).all() and (times % 1 != 0).any()
    assert len(workload_path(scene, scene.gt.views, "views")[0]) == len(scene.gt.views.time)
    with pytest.raises(InputError, match="allowed values: views, "):
        workload_path(scene, scene.gt.views, "warp-speed")


def test_suite_rows(tmp_path, capsys):
    out = tmp_path / "speed.json"
    argv = ["render-speed", "--methods", "fast", "--workloads", "views,bullet-time", "--hw", "96x160",
            "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
    assert harness.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["method"], r["workload"]) for r in rows] == [("fast", "views"), ("fast", "bullet-time")]
    for row in rows:
        assert row["scene"] == "handheld-room@160x96" and row["fps"] > 0 and row["frames"] > 1
        assert row["seconds_per_frame"] == pytest.approx(1 / row["fps"])
    for bad in ("big", "0x0"):
        assert harness.main(["render-speed", "--hw", bad, "--cache-dir", str(tmp_path / "cache")]) == 2
        assert "expected HxW" in capsys.readouterr().err
