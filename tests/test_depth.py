"""Consistent depth: triangulation, fusion, regularised solve, prior alignment, the whole stage on a synthetic
scene with known answers, and the Depth Anything prior through a tiny random transformers model."""
import numpy as np
import pytest
import torch

from pgdvs.geometry import project_points, unproject_depth
from pgdvs.reconstruct.depth import (DepthConfig, align_prior, bring_moving_forward, consistent_depth, default_pairs,
                                     fuse_estimates, solve_log_depth, triangulate_flow)
from pgdvs.reconstruct.depth_prior import model_input_hw, predict_disparity

H, W = 48, 64
K = np.array([[60.0, 0, (W - 1) / 2], [0, 60.0, (H - 1) / 2], [0, 0, 1]])


def _pose(tx=0.0, ty=0.0, yaw_deg=0.0):
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    m = np.eye(4)
    m[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    m[:3, 3] = [tx, ty, 0]
    return m


def _slanted_depth():
    v, u = np.mgrid[0:H, 0:W]
    return (2.0 + 0.02 * u + 0.01 * v).astype(np.float64)


def _flow(depth, c2w_i, c2w_j):
    pts = unproject_depth(torch.from_numpy(depth), torch.from_numpy(K), torch.from_numpy(c2w_i))
    uv, _ = project_points(pts.reshape(-1, 3), torch.from_numpy(K), torch.from_numpy(c2w_j))
    v, u = np.mgrid[0:H, 0:W]
    return (uv.numpy().reshape(H, W, 2) - np.stack([u, v], -1)).astype(np.float32)


def test_triangulate_flow_recovers_exact_depth_and_flags_moving_points():
    depth = _slanted_depth()
    ci, cj = _pose(), _pose(tx=0.2, yaw_deg=3)
    flow = _flow(depth, ci, cj)
    est, angle, resid = triangulate_flow(flow, K, ci, cj)
    np.testing.assert_allclose(est, depth, rtol=1e-4)
    assert (np.degrees(angle) > 1).all() and resid.max() < 1e-3
    moved = flow.copy()
    moved[10:20, 10:20, 1] += 3.0  # off the epipolar line (the baseline is horizontal)
    _, _, resid = triangulate_flow(moved, K, ci, cj)
    assert resid[12:18, 12:18].min() > 1.0 and np.median(resid) < 1e-3


def test_static_pair_gives_no_depth():
    est, angle, _ = triangulate_flow(np.zeros((H, W, 2), np.float32), K, _pose(), _pose())
    assert np.isnan(est).all() and (angle == 0).all()


def test_fuse_estimates_is_a_weighted_median():
    vals = np.array([1.0, 2.0, 10.0])[:, None, None] * np.ones((3, 2, 2))
    wts = np.array([1.0, 1.0, 0.5])[:, None, None] * np.ones((3, 2, 2))
    wts[:, 1, 1] = 0
    fused, total = fuse_estimates(np.log(vals).astype(np.float32), wts.astype(np.float32))
    assert np.exp(fused[0, 0]) == pytest.approx(2.0)
    assert total[0, 0] == pytest.approx(2.5) and np.isnan(fused[1, 1])
    wts[2] = 5.0
    fused, _ = fuse_estimates(np.log(vals).astype(np.float32), wts.astype(np.float32))
    assert np.exp(fused[0, 0]) == pytest.approx(10.0)


def test_solve_fills_holes_from_the_same_side_of_an_image_edge():
    guide = np.zeros((H, W, 3), np.float32)
    guide[:, W // 2:] = 1.0  # strong edge in the middle
    data = np.where(np.arange(W)[None] < W // 2, np.log(2.0), np.log(5.0)) * np.ones((H, 1))
    weight = np.ones((H, W))
    weight[10:30, 5:25] = 0  # hole on the left
    weight[10:30, 40:60] = 0  # hole on the right
    z = np.exp(solve_log_depth(data.astype(np.float32), weight, guide, smooth=2.0, sigma=0.06))
    assert np.abs(z[10:30, 5:25] - 2.0).max() < 0.05
    assert np.abs(z[10:30, 40:60] - 5.0).max() < 0.1
    assert np.isfinite(z).all()


def test_solve_without_data_keeps_the_base_shape_at_zero_median():
    base = np.log(_slanted_depth()).astype(np.float32)
    z = solve_log_depth(np.full((H, W), np.nan, np.float32), np.zeros((H, W)), np.zeros((H, W, 3), np.float32),
                        2.0, 0.06, base)
    np.testing.assert_allclose(z - base, -np.median(base), atol=1e-5)


def test_align_prior_recovers_scale_and_shift_in_disparity():
    depth = _slanted_depth().astype(np.float32)
    disparity = (1 / depth - 0.1) / 0.25  # what a prior would give: an affine map of true disparity
    weight = np.ones_like(depth)
    weight[::3] = 0
    aligned, s, b = align_prior(disparity, depth, weight)
    assert s == pytest.approx(0.25, rel=1e-4) and b == pytest.approx(0.1, abs=1e-4)
    np.testing.assert_allclose(aligned, depth, rtol=1e-4)


@pytest.fixture(scope="module")
def synthetic():
    from pgdvs.bench.synthetic import make_scene

    return make_scene("handheld-room", "small")


def _neighbour_flows(sc, n):
    """The first n frames' flows to their neighbours, both ways -> (pairs, (P, H, W, 2))."""
    pairs = [(i, i + 1) for i in range(n - 1)] + [(i + 1, i) for i in range(n - 1)]
    return pairs, np.concatenate([sc.flow_fwd[:n - 1], sc.flow_bwd[:n - 1]])


def test_consistent_depth_with_true_cameras_and_flow(synthetic):
    sc = synthetic
    n = 8
    pairs, flows = _neighbour_flows(sc, n)
    dyn = sc.gt.dyn_mask[:n]
    result = consistent_depth(sc.rgb[:n], sc.K[0], sc.c2w[:n], pairs, flows, dyn_mask=dyn)
    assert result.depth.shape == (n, *sc.hw) and np.isfinite(result.depth).all() and (result.depth > 0).all()
    rel = np.abs(result.depth - sc.depth[:n]) / sc.depth[:n]
    assert np.median(rel[~dyn]) < 0.02  # metric: the true poses fix the scale
    assert rel[~dyn].mean() < 0.08
    # moving objects are filled from their surroundings: finite and within the scene's depth range, and brought
    # forward to the near end of what they hide (median error 0.65 for the smooth fill alone, 0.22 with it)
    lo, hi = sc.depth[:n].min(), sc.depth[:n].max()
    assert (result.depth[dyn] > 0.5 * lo).all() and (result.depth[dyn] < 1.5 * hi).all()
    assert np.median(rel[dyn]) < 0.35
    assert (result.coverage > 0.5).all()


def test_static_pixels_in_the_mask_keep_their_own_triangulation(synthetic):
    sc = synthetic
    n = 8
    pairs, flows = _neighbour_flows(sc, n)
    dyn = sc.gt.dyn_mask[:n]
    wrong = np.zeros_like(dyn)
    wrong[:, 48:60, 10:40] = True  # a false positive of the automatic mask, on the static scene
    wrong &= ~dyn
    result = consistent_depth(sc.rgb[:n], sc.K[0], sc.c2w[:n], pairs, flows, dyn_mask=dyn | wrong)
    rel = np.abs(result.depth - sc.depth[:n]) / sc.depth[:n]
    assert np.median(rel[wrong]) < 0.01  # the fill and the near-rim bound alone: 0.15
    assert np.median(rel[dyn]) < 0.35  # the moving object's own triangulation does not fit: bound as before


def test_moving_objects_are_brought_in_front_of_what_they_hide():
    depth = np.full((1, 40, 60), 8.0, np.float32)  # a far wall
    depth[0, 30:] = 3.0  # the floor near the camera
    moving = np.zeros((1, 40, 60), bool)
    moving[0, 12:31, 10:20] = True  # an object standing on the floor: the fill puts it near the wall
    moving[0, 5:9, 40:45] = True  # a second object, already nearer than the wall around it
    depth[0, 12:31, 10:20] = 6.5
    depth[0, 5:9, 40:45] = 2.0
    out = bring_moving_forward(depth, moving, rim_px=2)
    assert np.allclose(out[0, 12:31, 10:20], 3.0)  # the floor it stands on is the near end of its rim
    assert np.allclose(out[0, 5:9, 40:45], 2.0)  # never moved farther
    assert np.array_equal(out[~moving], depth[~moving])  # static pixels untouched
    moving[0, 12:, :30] = True  # a failed estimate over a third of the frame keeps the smooth fill
    assert np.array_equal(bring_moving_forward(depth, moving, rim_px=2), depth)


def test_consistency_round_does_not_degrade_and_init_depth_is_used(synthetic):
    sc = synthetic
    n = 6
    pairs, flows = _neighbour_flows(sc, n)
    kw = dict(dyn_mask=sc.gt.dyn_mask[:n])
    none = consistent_depth(sc.rgb[:n], sc.K[0], sc.c2w[:n], pairs, flows,
                            config=DepthConfig(consistency_iters=0), **kw)
    one = consistent_depth(sc.rgb[:n], sc.K[0], sc.c2w[:n], pairs, flows, init_depth=none.depth, **kw)
    static = ~sc.gt.dyn_mask[:n]
    err = lambda d: np.mean(np.abs(d - sc.depth[:n])[static] / sc.depth[:n][static])  # noqa: E731
    assert err(one.depth) <= err(none.depth) * 1.05


def test_static_camera_gives_flat_unit_depth_without_nans():
    frames = np.random.default_rng(0).random((4, H, W, 3)).astype(np.float32)
    c2w = np.tile(np.eye(4), (4, 1, 1))
    pairs = default_pairs(4, (1, 2))
    flows = np.zeros((len(pairs), H, W, 2), np.float32)
    result = consistent_depth(frames, K, c2w, pairs, flows)
    assert np.isfinite(result.depth).all()
    np.testing.assert_allclose(result.depth, 1.0, rtol=1e-4)
    assert (result.coverage == 0).all()


def _tiny_depth_anything():
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            patch_size=14, image_size=98, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                                 head_hidden_size=8, reassemble_hidden_size=32, patch_size=14)
    return DepthAnythingForDepthEstimation(config).eval()


def test_depth_anything_prior_runs_and_is_aligned():
    assert model_input_hw((270, 480), 518) == (294, 518)
    model = _tiny_depth_anything()
    depth = _slanted_depth()
    frames = np.stack([np.full((H, W, 3), 0.5, np.float32) + 0.1 * np.sin(np.arange(W) / 3)[None, :, None]] * 3)
    disp = predict_disparity(model, frames, input_size=70, batch=2)
    assert disp.shape == (3, H, W) and disp.dtype == np.float32 and np.isfinite(disp).all() and (disp >= 0).all()
    # alignment + refinement on exact geometry: a random prior is pulled to the triangulated depth
    c2w = np.stack([_pose(tx=0.1 * k) for k in range(3)])
    pairs = default_pairs(3, (1, 2))
    flows = np.stack([_flow(depth, c2w[i], c2w[j]) for i, j in pairs])
    result = consistent_depth(frames, K, c2w, pairs, flows, prior_disparity=disp + 1.0)
    assert np.isfinite(result.depth).all() and np.isfinite(result.prior_scale_shift).all()
    rel = np.abs(result.depth - depth) / depth
    assert np.median(rel) < 0.05


def test_prior_from_a_hub_style_estimator():
    class Estimator:  # pgdvs.hub's DepthEstimator interface
        def predict_disparity(self, image):
            assert image.dtype == np.uint8
            return np.linspace(1, 2, image.shape[1], dtype=np.float32)[None].repeat(image.shape[0], 0)

    disp = predict_disparity(Estimator(), np.zeros((2, H, W, 3), np.float32))
    assert disp.shape == (2, H, W) and disp[0, 0, -1] == pytest.approx(2.0)


def test_median_of_known_ignores_unknown_pixels():
    from pgdvs.reconstruct.depth import median_of_known

    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(1.0, 2.0, 40, dtype=np.float32), (30, 1))  # log-depth, all above 1
    values = np.where(rng.random(ramp.shape) < 0.3, np.nan, ramp)
    out = median_of_known(values, 2)
    known = np.isfinite(out)
    assert known.mean() > 0.6 and not known[np.isnan(values)].any()
    # exactly the (lower) median of the known values in each window: unknown pixels counted as zeros would
    # shift the rank toward the ramp's low end
    for y, x in zip(*np.nonzero(known)):
        window = np.sort(values[max(0, y - 2):y + 3, max(0, x - 2):x + 3].ravel())
        window = window[np.isfinite(window)]
        assert out[y, x] == window[(len(window) - 1) // 2]
    lone = np.full((9, 9), np.nan, np.float32)
    lone[4, 4] = 3.0
    assert np.isnan(median_of_known(lone, 2)).all()  # a lone estimate is speckle
