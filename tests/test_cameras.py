"""Intrinsics guess, pose helpers, COLMAP poses on a synthetic clip, and degenerate-motion detection
(static camera, pure rotation) with rotation-only poses."""
import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pgdvs.bench.suites.reconstruct import trajectory_errors, umeyama
from pgdvs.reconstruct.cameras import (colmap_poses, flow_tracks, gap_matches, guess_intrinsics, interpolate_poses,
                                       normalise_poses, robust_refine)
from pgdvs.reconstruct.degeneracy import analyse_motion, nearest_rotation, rotation_only_poses
from pgdvs.reconstruct.flow import compute_flows


def test_guess_intrinsics_uses_a_60_degree_field_of_view():
    K = guess_intrinsics((270, 480))
    assert K[0, 0] == pytest.approx(240 / np.tan(np.radians(30)))
    assert K[1, 1] == K[0, 0] and (K[0, 2], K[1, 2]) == (239.5, 134.5)


def _pose(rotvec, t):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    m[:3, 3] = t
    return m


def test_interpolate_poses_fills_gaps_and_ends():
    c2w = np.stack([_pose([0, 0, 0], [0, 0, 0])] * 5)
    c2w[1] = _pose([0, 0.2, 0], [1, 0, 0])
    c2w[3] = _pose([0, 0.6, 0], [3, 2, 0])
    known = np.array([False, True, False, True, False])
    out = interpolate_poses(c2w, known)
    np.testing.assert_allclose(out[2, :3, 3], [2, 1, 0])
    np.testing.assert_allclose(Rotation.from_matrix(out[2, :3, :3]).as_rotvec(), [0, 0.4, 0], atol=1e-9)
    np.testing.assert_allclose(out[0], c2w[1])
    np.testing.assert_allclose(out[4], c2w[3])


def test_normalise_poses_puts_frame_0_at_identity_and_unit_median_depth():
    first = _pose([0.1, 0.2, 0], [1, 2, 3])
    c2w = np.stack([first, first @ _pose([0, 0, 0], [1, 0, 0])])  # sideways step: every point stays at depth 4
    pts = (c2w[0] @ np.array([[0, 0, 4.0, 1], [0.5, 0, 4.0, 1], [0, 0.5, 4.0, 1]]).T).T[:, :3]
    out, out_pts = normalise_poses(c2w, pts)
    np.testing.assert_allclose(out[0], np.eye(4), atol=1e-12)
    assert np.median(out_pts[:, 2]) == pytest.approx(1.0)
    # relative geometry is kept up to the scale 1/4
    rel_in, rel_out = np.linalg.inv(c2w[0]) @ c2w[1], np.linalg.inv(out[0]) @ out[1]
    np.testing.assert_allclose(rel_out[:3, 3], rel_in[:3, 3] / 4, atol=1e-12)


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3))
    rot = Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix()
    s, r, t = umeyama(src, 2.5 * src @ rot.T + [1, 2, 3])
    assert s == pytest.approx(2.5) and np.allclose(r, rot) and np.allclose(t, [1, 2, 3])


def _model_with_moving_features(f_true=400.0, f_start=440.0, moving=0.15, seed=0):
    """A pycolmap model of 6 cameras sliding sideways past 300 points, observed with 0.3 px noise, where a
    ``moving`` share of the observations sit 15 px (sd) off their static track (features on moving objects);
    the shared focal starts at ``f_start``."""
    import pycolmap

    rng = np.random.default_rng(seed)
    w, h = 480, 270
    pts = np.c_[rng.uniform(-3, 3, 300), rng.uniform(-1.5, 1.5, 300), rng.uniform(4, 9, 300)]
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", f_true, w, h))
    for k in range(6):
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(Rotation.from_rotvec([0, 0.04 * k, 0]).as_quat()),
                                [-0.25 * k, 0.02 * k, 0])
        cam = pts @ pose.matrix()[:, :3].T + pose.matrix()[:, 3]
        uv = f_true * cam[:, :2] / cam[:, 2:] + [w / 2, h / 2] + rng.normal(0, 0.3, (len(pts), 2))
        off = rng.random(len(pts)) < moving
        uv[off] += rng.normal(0, 15, (off.sum(), 2))
        rec.add_image_with_trivial_frame(pycolmap.Image(name=f"{k:05d}.png", keypoints=uv, camera_id=1,
                                                        image_id=k + 1), pose)
    for p, xyz in enumerate(pts):
        track = pycolmap.Track()
        for k in range(6):
            track.add_element(k + 1, p)
        rec.add_point3D(xyz + rng.normal(0, 0.05, 3), track)
    rec.cameras[1].params = [f_start, w / 2, h / 2]
    return rec


def test_robust_refine_keeps_moving_features_from_bending_the_focal_length():
    import pycolmap

    rec = _model_with_moving_features()
    plain = pycolmap.Reconstruction(rec)
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    pycolmap.bundle_adjustment(plain, options)
    robust = robust_refine(rec)
    assert abs(plain.cameras[1].params[0] / 400 - 1) > 0.05  # squared errors: 363 px
    assert abs(robust.cameras[1].params[0] / 400 - 1) < 0.03  # 393 px
    assert rec.cameras[1].params[0] == 440  # the input model is left as it was


@pytest.fixture(scope="module")
def handheld():
    from pgdvs.bench.synthetic import make_scene

    return make_scene("handheld-room", "small")


def test_colmap_poses_match_the_true_trajectory(handheld):
    frames, gt = handheld.rgb[::2], handheld.gt.c2w[::2]
    est = colmap_poses(frames)
    assert est is not None and est.backend == "colmap"
    assert est.registered.mean() >= 0.8
    np.testing.assert_allclose(est.c2w[0], np.eye(4), atol=1e-9)
    extent = np.linalg.norm(np.ptp(gt[:, :3, 3], axis=0))
    assert trajectory_errors(est.c2w, gt)["ate"] < 0.05 * extent
    f_true = handheld.gt.K[0, 0, 0]
    assert est.K[0, 0] == pytest.approx(f_true, rel=0.2)  # short baselines at 160x96 constrain f loosely
    assert est.reproj_error < 1.5


def test_colmap_poses_are_reproducible(handheld):
    # same clip, same cameras: on several threads COLMAP's result changed from run to run
    frames = handheld.rgb[::2]
    first, second = colmap_poses(frames), colmap_poses(frames)
    np.testing.assert_array_equal(first.c2w, second.c2w)
    np.testing.assert_array_equal(first.K, second.K)


def _exact_flows(scene) -> dict:
    """Neighbour flows of a synthetic scene (exact) keyed by frame pair."""
    n = len(scene.rgb)
    return {**{(i, i + 1): scene.flow_fwd[i] for i in range(n - 1)},
            **{(i + 1, i): scene.flow_bwd[i] for i in range(n - 1)}}


def test_flow_tracks_follow_the_flow_and_end_at_a_cut(handheld):
    frames, flows = handheld.rgb[:6].copy(), _exact_flows(handheld)
    frames[3:] = frames[3:, ::-1]  # a cut: frames 3.. are mirrored, so nothing tracks from 2 to 3
    flows[(2, 3)] = np.full_like(flows[(2, 3)], 40.0)
    keypoints, ids = flow_tracks(frames, flows)
    assert all(len(k) == len(i) > 50 for k, i in zip(keypoints, ids))
    for i in range(2):  # within a shot, a track's next position is where the exact flow sends it
        common, a, b = np.intersect1d(ids[i], ids[i + 1], return_indices=True)
        assert len(common) > 0.8 * len(ids[i])
        u, v = keypoints[i][a].T
        moved = keypoints[i][a] + flows[(i, i + 1)][np.round(v).astype(int), np.round(u).astype(int)]
        assert np.median(np.linalg.norm(moved - keypoints[i + 1][b], axis=1)) < 0.5
    assert not np.intersect1d(ids[2], ids[3]).size  # no track crosses the cut


def test_gap_matches_pair_repeated_corners():
    kp_a = np.array([[10.0, 10.0], [30.0, 20.0], [50.0, 40.0]], np.float32)
    flow = np.zeros((60, 80, 2), np.float32)
    flow[..., 0] = 5.0
    kp_b = np.array([[35.2, 20.1], [15.0, 10.0], [70.0, 5.0]], np.float32)  # corners 1, 0 moved; one new
    matches = gap_matches(kp_a, kp_b, flow, -flow)
    assert sorted(map(tuple, matches.tolist())) == [(0, 1), (1, 0)]


def test_colmap_on_flow_tracks_registers_a_weakly_textured_clip():
    """handheld-garden at 160x96: mostly flat grass and sky, where SIFT registers only a few frames."""
    from pgdvs.bench.synthetic import make_scene

    scene = make_scene("handheld-garden", "small")
    # COLMAP's verification draws a fresh seed per run, and on this tiny clip some draws register 3-5 frames only
    est = colmap_poses(scene.rgb, flows=_exact_flows(scene), verify_seed=0)
    assert est is not None and est.backend == "colmap (flow tracks)" and est.registered.all()
    extent = np.linalg.norm(np.ptp(scene.gt.c2w[:, :3, 3], axis=0))
    assert trajectory_errors(est.c2w, scene.gt.c2w)["ate"] < 0.05 * extent
    assert est.K[0, 0] == pytest.approx(scene.gt.K[0, 0, 0], rel=0.2)
    again = colmap_poses(scene.rgb, flows=_exact_flows(scene), verify_seed=0)
    assert np.array_equal(again.c2w, est.c2w) and np.array_equal(again.K, est.K)  # seeded: repeatable


def test_motion_report_on_a_translating_camera(handheld):
    flows = compute_flows(handheld.rgb, [(0, 12), (8, 20), (12, 0), (20, 8)])
    report = analyse_motion(flows[:2], flows[2:])
    assert report.kind == "general" and report.parallax_px > 1.5 * 160 / 480
    # a gap so wide that no flow passes the forward-backward check is judged on the raw flow, never "static"
    wide = compute_flows(handheld.rgb, [(0, 23), (23, 0)])
    assert analyse_motion(wide[:1], wide[1:]).kind != "static"


def _texture(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5)
    return (img - img.min()) / (img.max() - img.min())


def rotation_clip(n=5, step_deg=0.75, h=120, w=160):
    """Frames a purely rotating camera sees of a far scene: frame k = frame 0 warped by K R_k^T K^-1."""
    base = _texture(h, w)
    K = guess_intrinsics((h, w))
    c2w = np.tile(np.eye(4), (n, 1, 1))
    frames = []
    for k in range(n):
        c2w[k, :3, :3] = Rotation.from_euler("yx", [k * step_deg, 0.3 * k * step_deg], degrees=True).as_matrix()
        H = K @ c2w[k, :3, :3].T @ np.linalg.inv(K)
        frames.append(cv2.warpPerspective(base, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames).astype(np.float32), K, c2w


def test_rotation_only_camera_is_detected_and_its_rotations_recovered():
    frames, K, c2w = rotation_clip()
    fwd = compute_flows(frames, [(i, i + 1) for i in range(len(frames) - 1)])
    wide = compute_flows(frames, [(0, 4), (1, 4), (4, 0), (4, 1)])
    report = analyse_motion(wide[:2], wide[2:])
    assert report.kind == "rotation" and report.flow_px > 2
    est = rotation_only_poses(fwd, K)
    for e, g in zip(est, c2w):
        err = Rotation.from_matrix(e[:3, :3].T @ g[:3, :3]).magnitude()
        assert np.degrees(err) < 0.2
    assert np.abs(est[:, :3, 3]).max() == 0


def test_static_camera_is_detected():
    frames = np.repeat(_texture()[None], 4, 0)
    frames[2, 40:60, 50:70] = frames[2, 40:60, 60:80]  # something moves; the camera does not
    report = analyse_motion(compute_flows(frames, [(0, 3), (0, 2)]))  # without reverse flows: every pixel
    assert report.kind == "static" and report.flow_px < 0.5


def test_nearest_rotation_removes_scale_and_noise():
    rot = Rotation.from_rotvec([0.1, 0.2, -0.1]).as_matrix()
    noisy = 3.0 * rot + 1e-3 * np.random.default_rng(0).normal(size=(3, 3))
    out = nearest_rotation(noisy)
    assert np.allclose(out @ out.T, np.eye(3)) and np.linalg.det(out) == pytest.approx(1.0)
    assert np.degrees(Rotation.from_matrix(out.T @ rot).magnitude()) < 0.1
