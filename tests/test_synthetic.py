"""Synthetic scenes: exact ground truth that is consistent across depth, cameras, masks, flow and colour."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pgdvs.bench import synthetic
from pgdvs.bench.synthetic import SCENES, load_suite, make_scene, render_gt
from pgdvs.errors import InputError
from pgdvs.geometry import in_image, pixel_grid, project_points, unproject_depth
from pgdvs.warp import flow_consistency, sample_image


@pytest.fixture(scope="module")
def rig():
    return make_scene("rig-room", "small")


@pytest.fixture(scope="module")
def handheld():
    return make_scene("handheld-garden", "small")


def _t(a):
    return torch.as_tensor(np.asarray(a))


def _sample(img, uv):
    """img (H, W[, C]) numpy, uv (P, 2) -> (P, C) bilinear."""
    img = _t(img).float()
    img = img[..., None] if img.dim() == 2 else img
    return sample_image(img.permute(2, 0, 1)[None], uv.float()[None])[0].T


def depth_edges(depth, rel=0.01, grow=2):
    """Depth discontinuities and creases: inverse depth is affine on planes, so its second difference
    (relative) is ~0 except at edges and folds. depth (H, W) -> (H, W) bool, dilated by ``grow``."""
    inv = 1.0 / _t(depth).double()
    d2 = torch.zeros_like(inv)
    for dv, du in ((0, 1), (1, 0), (1, 1), (1, -1)):
        ahead, behind = inv.roll((-dv, -du), (0, 1)), inv.roll((dv, du), (0, 1))
        d2 = torch.maximum(d2, (ahead + behind - 2 * inv).abs() / inv)
    edge = d2 > rel
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    return F.max_pool2d(edge[None, None].float(), 2 * grow + 1, 1, grow)[0, 0] > 0


def reprojection_psnr(src, dst, rel=0.01):
    """Unproject src's pixels with its depth, project into dst, sample dst's colour bilinearly and compare on
    pixels static in both, visible in dst (depth test) and away from depth edges in both.
    src/dst: dict(rgb, depth, dyn_mask, K, c2w). -> (psnr dB, fraction of pixels compared)."""
    h, w = src["depth"].shape
    pts = unproject_depth(_t(src["depth"]).double(), _t(src["K"]), _t(src["c2w"])).reshape(-1, 3)
    uv, z = project_points(pts, _t(dst["K"]), _t(dst["c2w"]))
    z = z.float()
    bad_dst = (depth_edges(dst["depth"]) | _t(dst["dyn_mask"])).float().numpy()
    ok = in_image(uv, h, w) & (z > 0)
    ok &= (_sample(dst["depth"], uv)[:, 0] - z).abs() < rel * z
    ok &= _sample(bad_dst, uv)[:, 0] == 0  # no bad pixel among the 4 bilinear taps
    ok &= ~(depth_edges(src["depth"]) | _t(src["dyn_mask"])).reshape(-1)
    err = ((_sample(dst["rgb"], uv) - _t(src["rgb"]).reshape(-1, 3)) ** 2)[ok].mean()
    return float(-10 * torch.log10(err)), float(ok.float().mean())


def _frame(scene, i):
    return {"rgb": scene.rgb[i], "depth": scene.depth[i], "dyn_mask": scene.dyn_mask[i], "K": scene.K[i],
            "c2w": scene.c2w[i]}


def _view(scene, m):
    v = scene.gt.views
    return {"rgb": v.rgb[m], "depth": v.depth[m], "dyn_mask": v.dyn_mask[m], "K": v.K[m], "c2w": v.c2w[m]}


def test_suite_names():
    assert set(SCENES) == {"rig", "handheld"}
    assert all(len(names) >= 4 and len(set(names)) == len(names) for names in SCENES.values())


@pytest.mark.parametrize("fixture", ["rig", "handheld"])
def test_shapes_dtypes_and_meta(fixture, request):
    scene = request.getfixturevalue(fixture)
    scene.validate()
    n, h, w = 24, 96, 160
    assert scene.rgb.shape == (n, h, w, 3) and scene.rgb.dtype == np.float32
    assert scene.depth.dtype == np.float32 and scene.dyn_mask.dtype == bool
    assert scene.K.shape == (n, 3, 3) and scene.c2w.shape == (n, 4, 4) and scene.c2w.dtype == np.float64
    assert scene.flow_fwd.shape == scene.flow_bwd.shape == (n - 1, h, w, 2)
    assert scene.meta["protocol"] == fixture and scene.meta["source"].startswith(f"synthetic:{fixture}-")
    assert scene.meta["frame_ids"] == [f"{i:05d}" for i in range(n)] and scene.meta["fps"] > 0
    np.testing.assert_array_equal(scene.gt.depth, scene.depth)
    np.testing.assert_array_equal(scene.gt.c2w, scene.c2w)
    v = scene.gt.views
    assert len(v.time) >= 6 and v.rgb.shape[1:] == (h, w, 3)
    assert v.time.dtype == np.float32 and (v.time >= 0).all() and (v.time <= n - 1).all()
    assert (v.covis is None) == (fixture == "rig")
    # textured: plenty of colour variation inside frames, not flat shading
    assert scene.rgb.std(axis=(1, 2)).mean() > 0.05


@pytest.mark.parametrize("fixture", ["rig", "handheld"])
def test_dynamic_mask_is_partial_and_moves(fixture, request):
    scene = request.getfixturevalue(fixture)
    frac = scene.dyn_mask.mean(axis=(1, 2))
    assert (frac > 0.002).all() and (frac < 0.5).all()
    assert (scene.dyn_mask[0] != scene.dyn_mask[-1]).mean() > 0.002
    assert scene.gt.views.dyn_mask.any() and not scene.gt.views.dyn_mask.all()


def test_rig_protocol_cameras(rig):
    k = synthetic.RIG_CAMERAS
    np.testing.assert_allclose(rig.c2w[k:2 * k], rig.c2w[:k])  # frame i = camera i mod K
    assert len({c.tobytes() for c in rig.c2w}) == k
    v = rig.gt.views
    for t, cam, c2w in zip(v.time, v.camera, v.c2w):
        assert cam != int(t) % k  # the held-out cameras are the others
        np.testing.assert_allclose(c2w, rig.c2w[cam])
    assert len(set(v.camera.tolist())) == k


def test_handheld_camera_moves_smoothly(handheld):
    centres = handheld.c2w[:, :3, 3]
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.min() > 1e-3 and steps.max() < 3 * np.median(steps)
    v = handheld.gt.views
    assert set(v.camera.tolist()) == {0, 1}
    assert np.linalg.norm(v.c2w[:, None, :3, 3] - centres[None], axis=-1).min() > 0.3  # held out, not on the path


@pytest.mark.parametrize("fixture,pairs", [("rig", [(0, 1), (2, 7), (5, 14), (11, 12)]),
                                           ("handheld", [(0, 3), (4, 12), (20, 23)])])
def test_reprojection_reproduces_static_pixels(fixture, pairs, request):
    scene = request.getfixturevalue(fixture)
    for j, i in pairs:
        psnr, frac = reprojection_psnr(_frame(scene, j), _frame(scene, i))
        assert psnr >= 40 and frac > 0.15, (j, i, psnr, frac)
    # held-out views are consistent with the input frames too
    v = scene.gt.views
    for m in (0, len(v.time) - 1):
        near = int(round(float(v.time[m])))
        psnr, frac = reprojection_psnr(_view(scene, m), _frame(scene, near))
        assert psnr >= 40 and frac > 0.1, (m, psnr, frac)


def test_reprojection_check_catches_a_wrong_camera(rig):
    src, dst = _frame(rig, 2), _frame(rig, 7)
    dst["c2w"] = dst["c2w"].copy()
    dst["c2w"][0, 3] += 0.1  # 10 cm pose error at ~5 m: a ~3 pixel shift
    psnr, _ = reprojection_psnr(src, dst)
    assert psnr < 35


@pytest.mark.parametrize("fixture", ["rig", "handheld"])
def test_flow_is_exact_and_consistent(fixture, request):
    scene = request.getfixturevalue(fixture)
    h, w = scene.hw
    for i in (0, 7, 22):
        # static pixels: flow equals the camera-induced motion from depth
        pts = unproject_depth(_t(scene.depth[i]).double(), _t(scene.K[i]), _t(scene.c2w[i])).reshape(-1, 3)
        uv, z = project_points(pts, _t(scene.K[i + 1]), _t(scene.c2w[i + 1]))
        geo = (uv.reshape(h, w, 2) - pixel_grid(h, w, dtype=torch.float64)).float().numpy()
        static = ~scene.dyn_mask[i]
        assert np.abs(geo - scene.flow_fwd[i])[static].max() < 1e-2
        # forward then backward returns to the start where the point stays visible
        fwd, bwd = _t(scene.flow_fwd[i])[None], _t(scene.flow_bwd[i])[None]
        diff = flow_consistency(fwd, bwd)[0].abs().sum(-1).reshape(-1)
        target = (pixel_grid(h, w) + fwd[0]).reshape(-1, 2)
        moved_depth = _moved_depth(scene, i)
        visible = in_image(target, h, w) & ((_sample(scene.depth[i + 1], target)[:, 0] - moved_depth).abs()
                                             < 0.01 * moved_depth)
        visible &= _sample(depth_edges(scene.depth[i + 1]).float().numpy(), target)[:, 0] == 0
        visible &= ~depth_edges(scene.depth[i]).reshape(-1)
        assert visible.float().mean() > 0.3
        assert (diff[visible] <= 1).float().mean() > 0.99
        assert diff[visible].median() < 0.05
        # dynamic pixels do move differently from the camera-induced flow
        if scene.dyn_mask[i].any():
            assert np.abs(geo - scene.flow_fwd[i])[scene.dyn_mask[i]].max() > 0.1


def _moved_depth(scene, i):
    """Depth in camera i+1 of frame i's surface points after their true motion, from the GT renderer."""
    meta = scene.meta
    out = synthetic.track_points(meta["source"].split(":", 1)[1], meta["size"], meta["seed"], float(i),
                                 scene.c2w[i], scene.K[i], scene.hw, float(i + 1))
    _, z = project_points(_t(out).reshape(-1, 3).double(), _t(scene.K[i + 1]), _t(scene.c2w[i + 1]))
    return z.float()


def test_covisibility_masks(handheld):
    v = handheld.gt.views
    h, w = handheld.hw
    frac = v.covis.mean(axis=(1, 2))
    assert (frac > 0.3).all() and (frac < 0.995).all()  # held-out cameras see parts the sweep never saw
    # static pixels: covisible iff seen by an input frame (reprojection + depth test), computed independently
    K, c2w = _t(handheld.K)[:, None], _t(handheld.c2w)[:, None]  # all input frames at once
    depth = _t(handheld.depth).double()
    frames = torch.arange(handheld.n_frames)[:, None]
    for m in range(len(v.time)):
        pts = unproject_depth(_t(v.depth[m]).double(), _t(v.K[m]), _t(v.c2w[m])).reshape(1, -1, 3)
        uv, z = project_points(pts, K, c2w)
        uv, z = uv[:, 0], z[:, 0]
        px = uv.round().long().clamp(min=0)
        d = depth[frames, px[..., 1].clamp(max=h - 1), px[..., 0].clamp(max=w - 1)]
        seen = (in_image(uv, h, w) & (z > 0) & ((d - z).abs() <= synthetic.COVIS_RTOL * z)).any(0)
        static = ~_t(v.dyn_mask[m]).reshape(-1)
        agree = (seen == _t(v.covis[m]).reshape(-1))[static].float().mean()
        assert agree > 0.995, (m, float(agree))


@pytest.mark.parametrize("layout", synthetic.LAYOUTS)
def test_every_camera_sits_inside_a_closed_world(layout):
    world = synthetic._world(layout, 0)
    cameras = [*synthetic.rig_cameras(world), *synthetic.handheld_path(world, np.linspace(0, 1, 5)),
               *synthetic.handheld_eval_cameras(world)]
    hw = (9, 15)
    K = synthetic.intrinsics(hw)
    for c2w in cameras:
        out = render_gt(f"rig-{layout}", "small", 0, 11.5, c2w, K, hw)
        assert np.isfinite(out["depth"]).all() and out["depth"].min() > 0.5  # walls all round, no object at the lens


def test_render_gt_matches_frames_and_is_deterministic(rig):
    for i in (0, 13):
        out = render_gt("rig-room", "small", 0, float(i), rig.c2w[i], rig.K[i], rig.hw)
        np.testing.assert_allclose(out["rgb"], rig.rgb[i], atol=1e-5)
        np.testing.assert_array_equal(out["depth"], rig.depth[i])
        np.testing.assert_array_equal(out["dyn_mask"], rig.dyn_mask[i])
    other = render_gt("rig-room", "small", 1, 0.0, rig.c2w[0], rig.K[0], rig.hw)
    assert np.abs(other["rgb"] - rig.rgb[0]).mean() > 1e-3  # the seed changes the scene


def test_render_gt_fractional_time_interpolates_motion(rig):
    args = ("rig-room", "small", 0)
    a, mid, b = (render_gt(*args, t, rig.c2w[4], rig.K[4], rig.hw) for t in (4.0, 4.5, 5.0))
    static = ~(a["dyn_mask"] | mid["dyn_mask"] | b["dyn_mask"])
    np.testing.assert_array_equal(mid["depth"][static], a["depth"][static])
    moved = lambda x, y: (x["dyn_mask"] != y["dyn_mask"]).sum()  # noqa: E731
    assert 0 < moved(a, mid) < moved(a, b)


@synthetic._one_thread()
def test_layered_render_equals_full_render():
    world = synthetic._world("studio", 0)
    n, h, w = synthetic.SIZES["small"]
    K = synthetic.intrinsics((h, w))
    c2w = synthetic.rig_cameras(world)[5]
    layer = synthetic._static_layer(world, c2w, K, (h, w))
    fast = synthetic._render(world, n, 7.0, c2w, K, (h, w), under=layer)
    full = synthetic._render(world, n, 7.0, c2w, K, (h, w))
    assert fast["dyn_mask"].any()
    for key in ("rgb", "depth", "dyn_mask", "local"):
        torch.testing.assert_close(fast[key], full[key], atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["static", "rotation"])
def test_degenerate_camera_modes(mode):
    scene = make_scene("handheld-studio", "small", camera=mode)
    centres = scene.c2w[:, :3, 3]
    np.testing.assert_allclose(centres, centres[:1].repeat(len(centres), 0), atol=1e-9)
    rotations = {np.round(c[:3, :3], 6).tobytes() for c in scene.c2w}
    assert (len(rotations) == 1) == (mode == "static")
    assert scene.meta["camera"] == mode and scene.dyn_mask.any()
    psnr, _ = reprojection_psnr(_frame(scene, 0), _frame(scene, 10))
    assert psnr >= 40


def test_bad_arguments_name_the_allowed_values():
    with pytest.raises(InputError, match="rig-room"):
        make_scene("rig-nowhere")
    with pytest.raises(InputError, match="bench"):
        make_scene("rig-room", size="huge")
    with pytest.raises(InputError, match="rotation"):
        make_scene("rig-room", camera="dolly")
    with pytest.raises(InputError, match="handheld"):
        load_suite("phone", "small")
    with pytest.raises(InputError, match="outside"):
        render_gt("rig-room", "small", 0, 99.0, np.eye(4), synthetic.intrinsics((8, 8)), (8, 8))


def test_load_suite_caches_on_disk(tmp_path, monkeypatch, rig):
    calls = []

    def fake_make(name, size="small", seed=0):
        calls.append(name)
        return rig

    monkeypatch.setattr(synthetic, "make_scene", fake_make)
    monkeypatch.setitem(synthetic.SCENES, "rig", ["rig-room", "rig-hall"])
    first = load_suite("rig", "small", tmp_path)
    second = load_suite("rig", "small", tmp_path)
    # two workers generate in parallel, so the call order varies; the second call reads the cache
    assert sorted(calls) == ["rig-hall", "rig-room"]
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert folders == [f"rig-hall_small_s0_v{synthetic.GENERATOR_VERSION}",
                       f"rig-room_small_s0_v{synthetic.GENERATOR_VERSION}"]
    np.testing.assert_allclose(second[0].rgb, first[0].rgb, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(second[0].gt.views.depth, rig.gt.views.depth)
    # a single scene goes through the same cache folders
    assert synthetic.load_scene("rig-hall", "small", tmp_path).meta == second[1].meta
    assert sorted(calls) == ["rig-hall", "rig-room"]  # still two generations
