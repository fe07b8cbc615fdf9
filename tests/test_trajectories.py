"""Trajectory module: interpolation, smoothing, preset paths on synthetic scenes, nerfstudio I/O, preview picture."""
import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from pgdvs.cli import main
from pgdvs.errors import InputError
from pgdvs.geometry import project_points
from pgdvs.scene import Scene
from pgdvs.trajectories import (
    from_nerfstudio, interpolate_poses, load_presets, make_path, plot_path, read_nerfstudio, scene_scale,
    smooth_poses, to_nerfstudio, write_nerfstudio,
)
from pgdvs.trajectories.paths import sample_times

PRESETS = load_presets()


def make_scene(n=12, hw=(24, 32), depth=3.0, focal=30.0, seed=0, shake=0.05, static=False) -> Scene:
    """N frames moving right with random small rotations; depth uniform in [depth, 2 depth)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    c2w = np.tile(np.eye(4), (n, 1, 1))
    if not static:
        c2w[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, shake, (n, 3))).as_matrix()
        c2w[:, :3, 3] = np.stack([np.linspace(0, 0.2 * depth, n), rng.normal(0, 0.01 * depth, n), np.zeros(n)], 1)
    K = np.tile(np.array([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1]]), (n, 1, 1))
    d = (depth * (1 + rng.random((n, h, w)))).astype(np.float32)
    return Scene(rgb=np.zeros((n, h, w, 3), np.float32), K=K, c2w=c2w, depth=d,
                 dyn_mask=np.zeros((n, h, w), bool), meta={"fps": 24})


def scaled(scene: Scene, factor: float) -> Scene:
    c2w = scene.c2w.copy()
    c2w[:, :3, 3] *= factor
    return Scene(rgb=scene.rgb, K=scene.K, c2w=c2w, depth=scene.depth * np.float32(factor),
                 dyn_mask=scene.dyn_mask, meta=scene.meta)


def rot_err(a, b):
    return np.abs(a[..., :3, :3] - b[..., :3, :3]).max()


# --- interpolation and smoothing -------------------------------------------------------------------------------

def test_interpolate_hits_frames_and_halves_rotation_between_them():
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[1, :3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    c2w[:, :3, 3] = [[0, 0, 0], [2, 0, 0], [2, 4, 0]]
    out = interpolate_poses(c2w, np.array([0.0, 0.5, 1.0, 1.25, 2.0, 5.0, -1.0]))
    assert np.allclose(out[[0, 2, 4]], c2w, atol=1e-12)
    assert np.isclose(Rotation.from_matrix(out[1, :3, :3]).as_euler("xyz", degrees=True)[2], 45.0)
    assert np.allclose(out[1, :3, 3], [1, 0, 0]) and np.allclose(out[3, :3, 3], [2, 1, 0])
    assert np.allclose(out[5], c2w[2]) and np.allclose(out[6], c2w[0])  # clamped outside [0, N-1]


def test_smoothing_keeps_steady_motion_and_removes_jitter():
    steady = make_scene(n=30, static=True).c2w
    steady[:, :3, 3] = np.arange(30)[:, None] * [0.1, -0.02, 0.05]
    steady[:, :3, :3] = Rotation.from_rotvec(np.arange(30)[:, None] * [0, 0.01, 0.002]).as_matrix()
    assert np.allclose(smooth_poses(steady, 3.0), steady, atol=1e-9)  # ends included
    noisy = make_scene(n=30, shake=0.1).c2w
    smooth = smooth_poses(noisy, 3.0)
    jitter = lambda c: np.abs(np.diff(Rotation.from_matrix(c[:, :3, :3]).as_rotvec(), 2, axis=0)).mean()
    assert jitter(smooth) < 0.2 * jitter(noisy)
    rot = smooth[:, :3, :3]
    assert np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max() < 1e-12
    assert np.array_equal(smooth_poses(noisy, 0), noisy)


# --- shipped presets -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("depth", [0.01, 1.0, 100.0])
def test_every_preset_gives_valid_poses_on_any_scale(name, depth):
    scene = make_scene(n=9, depth=depth, focal=500.0, seed=int(depth * 100) % 7)  # focal as at 480p
    for frames in (None, 17):
        path = make_path(PRESETS[name], scene, **({"frames": frames} if frames else {}))
        expect = frames or PRESETS[name].frames or scene.n_frames
        assert len(path) == path.c2w.shape[0] == path.K.shape[0] == expect
        assert np.isfinite(path.c2w).all() and np.isfinite(path.K).all()
        rot = path.c2w[:, :3, :3]
        assert np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max() < 1e-9
        assert np.allclose(np.linalg.det(rot), 1.0)
        assert np.allclose(path.c2w[:, 3], [0, 0, 0, 1])
        assert (path.times >= 0).all() and (path.times <= scene.n_frames - 1).all()
        assert (path.K[:, 0, 0] > 0).all() and path.hw == scene.hw and path.fps > 0
        # small excursions: the camera stays within a third of the nearest depth of the input path
        base = interpolate_poses(scene.c2w, path.times)
        assert np.linalg.norm(path.c2w[:, :3, 3] - base[:, :3, 3], axis=1).max() < depth / 3


def test_original_path_matches_its_formula():
    scene = make_scene(n=20, depth=2.0, seed=3)
    n, max_disp, c, delta = 80, 48.0, 0.4 * 19, 0.3 * 19
    path = make_path(PRESETS["spatio-temporal"], scene, frames=n, camera={"pixels": max_disp},
                     time={"center": 0.4, "window": 0.6})
    times = np.linspace(max(0, c - delta), min(19, c + delta), n)
    rots = Slerp(np.arange(20), Rotation.from_matrix(scene.c2w[:, :3, :3]))(times).as_matrix()
    centres = np.stack([np.interp(times, np.arange(20), scene.c2w[:, k, 3]) for k in range(3)], 1)
    p5 = np.percentile([np.percentile(d, 5) for d in scene.depth], 5)
    a = max_disp * 0.9 * p5 / scene.K[0, 0, 0]
    laps = n // 8
    theta = 2 * np.pi * (np.arange(n) % laps) / laps
    v = np.stack([a * np.sin(theta), 0.5 * a * np.cos(theta), np.zeros(n)], 1)
    expect = np.tile(np.eye(4), (n, 1, 1))
    expect[:, :3, :3], expect[:, :3, 3] = rots, centres
    offset = np.tile(np.eye(4), (n, 1, 1))
    offset[:, :3, 3] = -v
    assert np.allclose(path.times, times, atol=1e-12)
    assert np.allclose(path.c2w, expect @ offset, atol=1e-9)
    assert np.allclose(path.K, scene.K[0])
    assert a > 0.05  # the wobble is really there


def test_zero_max_disp_is_the_interpolated_input_trajectory():
    scene = make_scene(n=15, seed=4)
    path = make_path(PRESETS["spatio-temporal"], scene, camera={"pixels": 0})
    assert np.allclose(path.c2w, interpolate_poses(scene.c2w, path.times), atol=1e-12)
    moved = make_path(PRESETS["spatio-temporal"], scene)
    assert np.abs(moved.c2w - path.c2w).max() > 1e-3


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_doubling_the_scene_doubles_the_translation(name):
    small, big = make_scene(n=10, seed=5), scaled(make_scene(n=10, seed=5), 2.0)
    a, b = make_path(PRESETS[name], small), make_path(PRESETS[name], big)
    assert np.allclose(b.c2w[:, :3, 3], 2 * a.c2w[:, :3, 3], atol=1e-9)
    assert rot_err(a.c2w, b.c2w) < 1e-9 and np.allclose(a.K, b.K) and np.allclose(a.times, b.times)


def test_scene_scale_uses_the_original_near_depth_rule():
    scene = make_scene(n=6, depth=4.0)
    scale = scene_scale(scene)
    assert np.isclose(scale.near_depth, 0.9 * np.percentile(np.percentile(scene.depth.reshape(6, -1), 5, 1), 5))
    assert 4.0 < scale.subject_depth < 8.0 and scale.focal == 30.0
    assert np.isclose(scale.pixels_to_units(30.0), scale.near_depth)


def _static_path(name, **overrides):
    scene = make_scene(n=8, static=True)
    return scene, make_path(PRESETS[name], scene, **overrides)


def test_dolly_zoom_keeps_the_subject_size():
    for name in ("dolly-zoom-in", "dolly-zoom-out"):
        scene, path = _static_path(name, frames=11)
        d = scene_scale(scene).subject_depth
        pts = torch.tensor([[-0.3, -0.2, d], [0.4, 0.25, d]], dtype=torch.float64)  # base camera = world here
        uv, _ = project_points(pts.expand(11, 2, 3), torch.from_numpy(path.K), torch.from_numpy(path.c2w))
        size = (uv[:, 1] - uv[:, 0]).numpy()
        assert np.allclose(size, size[0], atol=1e-9)
        moved = abs(path.c2w[-1, 2, 3] - path.c2w[0, 2, 3])
        assert moved > 0.1 * d and abs(path.K[-1, 0, 0] / path.K[0, 0, 0] - 1) > 0.1
        # the background (twice as far) does change size, by (f'/f) * 2d / (2d - s d) for a move of s d
        far, _ = project_points(pts.expand(11, 2, 3) * torch.tensor([1, 1, 2.0], dtype=torch.float64),
                                torch.from_numpy(path.K), torch.from_numpy(path.c2w))
        s = PRESETS[name].camera["depth_fraction"] * (1 if name.endswith("-in") else -1)
        ratio = (far[-1, 1] - far[-1, 0]).norm() / (far[0, 1] - far[0, 0]).norm()
        assert np.isclose(ratio.item(), (1 - s) * 2 / (2 - s)) and abs(ratio.item() - 1) > 0.05


def test_moves_go_the_way_their_names_say():
    def last(name):
        return _static_path(name)[1].c2w[-1]
    assert last("dolly-in")[2, 3] > 0 > last("dolly-out")[2, 3]
    assert last("truck-right")[0, 3] > 0 > last("truck-left")[0, 3]
    assert last("crane-up")[1, 3] < 0 < last("crane-down")[1, 3]  # OpenCV y points down
    assert last("pan-right")[0, 2] > 0 > last("pan-left")[0, 2]  # view axis turns toward +x
    assert last("tilt-up")[1, 2] < 0 < last("tilt-down")[1, 2]
    assert np.isclose(np.degrees(np.arcsin(last("pan-right")[0, 2])), 6.0)
    scene, arc = _static_path("arc-right")
    d = scene_scale(scene).subject_depth
    assert arc.c2w[-1, 0, 3] > 0
    uv, _ = project_points(torch.tensor([[0, 0, d]], dtype=torch.float64).expand(len(arc), 1, 3),
                           torch.from_numpy(arc.K), torch.from_numpy(arc.c2w))
    assert np.allclose(uv[:, 0].numpy(), scene.K[0, :2, 2], atol=1e-9)  # the pivot stays centred
    assert np.isclose(np.degrees(np.arctan2(-arc.c2w[-1, 0, 2], arc.c2w[-1, 2, 2])), 10.0)


def test_bullet_time_freezes_time_and_fixed_view_freezes_the_camera():
    scene = make_scene(n=11, seed=6)
    bullet = make_path(PRESETS["bullet-time"], scene)
    assert np.allclose(bullet.times, 5.0) and np.ptp(bullet.c2w[:, 0, 3]) > 0.01
    fixed = make_path(PRESETS["fixed-view"], scene)
    assert np.allclose(fixed.times, np.arange(11)) and np.allclose(fixed.c2w, fixed.c2w[5])
    assert np.allclose(fixed.c2w[0], interpolate_poses(scene.c2w, np.array([5.0]))[0])


def test_move_profiles():
    scene = make_scene(n=9, static=True)
    for profile, middle in (("linear", 0.5), ("ease", 0.5), ("pingpong", 1.0)):
        path = make_path(PRESETS["truck-right"], scene, camera={"profile": profile})
        x = path.c2w[:, 0, 3] / path.c2w[:, 0, 3].max()
        assert np.isclose(x[0], 0) and np.isclose(x[4], middle) and np.isclose(x[-1], 0 if profile == "pingpong" else 1)
        assert profile != "ease" or np.isclose(x[1], (1 - np.cos(np.pi / 8)) / 2)


def test_time_modes_stay_inside_the_clip():
    assert np.allclose(sample_times({"mode": "slow", "center": 0.95, "window": 0.5}, 21, 5), np.linspace(14, 20, 5))
    assert np.allclose(sample_times({"mode": "play", "start": 1.0, "end": 0.0}, 5, 5), [4, 3, 2, 1, 0])
    assert np.allclose(sample_times({"mode": "freeze", "at": 0.25}, 9, 3), 2.0)


def test_clip_frames_and_fps_come_from_the_scene_and_bad_overrides_are_refused():
    scene = make_scene(n=13)
    path = make_path(PRESETS["stabilised"], scene)
    assert len(path) == 13 and path.fps == 24
    with pytest.raises(InputError, match=r"\(with overrides\): key 'camera.smoothing' is 5"):
        make_path(PRESETS["stabilised"], scene, camera={"smoothing": 5})
    other = make_path(PRESETS["dolly-in"], scene, camera={"motion": "pan", "direction": "left"})
    assert other.c2w[-1, 0, 2] < 0  # switching motion drops dolly's keys


# --- nerfstudio camera_path.json ---------------------------------------------------------------------------------

def test_camera_path_json_round_trips(tmp_path):
    scene = make_scene(n=10, hw=(24, 32))
    path = make_path(PRESETS["spatio-temporal"], scene, frames=30)
    file = write_nerfstudio(path, tmp_path / "camera_path.json", scene.n_frames)
    data = json.loads(file.read_text())
    assert data["render_height"] == 24 and data["render_width"] == 32 and len(data["camera_path"]) == 30
    assert np.isclose(data["seconds"], 30 / path.fps) and len(data["keyframes"]) == 30
    gl = np.array(data["camera_path"][0]["camera_to_world"]).reshape(4, 4)
    assert np.allclose(gl[:3, 2], -path.c2w[0, :3, 2]) and np.allclose(gl[:3, 3], path.c2w[0, :3, 3])  # OpenGL
    assert np.isclose(data["camera_path"][0]["fov"], np.degrees(2 * np.arctan(12 / 30)))
    back = read_nerfstudio(file)
    assert np.allclose(back.c2w, path.c2w, atol=1e-12) and np.allclose(back.K, path.K, atol=1e-9)
    assert np.allclose(back.times, path.times, atol=1e-12)
    assert back.hw == path.hw and back.fps == path.fps and back.name == "spatio-temporal"


def test_camera_path_json_errors_name_the_problem(tmp_path):
    good = to_nerfstudio(make_path(PRESETS["orbit"], make_scene(n=5)), 5)
    bad = dict(good, camera_path=[dict(good["camera_path"][0], camera_to_world=[1, 0, 0])])
    with pytest.raises(InputError, match=r"camera_path\[0\]: key 'camera_to_world' must be a list of 16"):
        from_nerfstudio(bad)
    with pytest.raises(InputError, match="key 'render_height' is missing"):
        from_nerfstudio({k: v for k, v in good.items() if k != "render_height"})
    with pytest.raises(InputError, match="pass n_frames"):
        from_nerfstudio({k: v for k, v in good.items() if k != "pgdvs"})
    assert np.allclose(from_nerfstudio({k: v for k, v in good.items() if k != "pgdvs"}, n_frames=9).times,
                       2 * from_nerfstudio(good).times)
    broken = tmp_path / "broken.json"
    broken.write_text('{"render_height": 4,\n "camera_path": [}')
    with pytest.raises(InputError, match=r"broken.json:2: not valid JSON"):
        read_nerfstudio(broken)


# --- preview picture and CLI export ----------------------------------------------------------------------------

def test_plot_draws_both_trajectories():
    scene = make_scene(n=10)
    img = plot_path(make_path(PRESETS["arc-left"], scene), scene.c2w, size=(600, 300))
    assert img.shape == (300, 600, 3) and img.dtype == np.uint8
    blue = (img[..., 2] > 150) & (img[..., 0] < 100)
    grey = (np.abs(img.astype(int) - 140).max(-1) < 12)
    assert blue.sum() > 200 and grey.sum() > 50
    other = plot_path(make_path(PRESETS["arc-right"], scene), scene.c2w, size=(600, 300))
    assert np.abs(other.astype(int) - img).sum() > 0


def test_cli_builds_a_preset_on_a_saved_scene(tmp_path, capsys):
    make_scene(n=6).save(tmp_path / "scene")
    out_json, out_png = tmp_path / "p.json", tmp_path / "p.png"
    code = main(["presets", "bullet-time", "--scene", str(tmp_path / "scene"),
                 "--nerfstudio", str(out_json), "--plot", str(out_png)])
    assert code == 0 and "bullet-time: 60 frames" in capsys.readouterr().out
    assert len(read_nerfstudio(out_json).times) == 60 and out_png.read_bytes()[:4] == b"\x89PNG"
    assert main(["presets", "no-such-preset", "--scene", str(tmp_path / "scene")]) == 2
    assert "no preset named 'no-such-preset'" in capsys.readouterr().err
