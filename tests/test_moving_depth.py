"""Moving objects' depth: constant-velocity triangulation over three frames, the accelerating one over five, rims
that take their interior's depth, and the whole refinement on frames with known answers."""
import cv2
import numpy as np
import pytest
import torch

from pgdvs.errors import InputError
from pgdvs.geometry import project_points, unproject_depth
from pgdvs.reconstruct.depth import triangulate_flow
from pgdvs.reconstruct.motion_masks import chained_flows
from pgdvs.reconstruct.moving_depth import (STILL_OFFSETS, MovingSolve, refine_moving_depth,
                                         triangulate_moving, vote_from_neighbours)
from pgdvs.reconstruct.moving_transfer import TRANSFER_REACH, carry_rigid_neighbours, object_pose
from pgdvs.reconstruct import still_pixels as still_module
from pgdvs.reconstruct.moving_rims import extend_interior_depth, interior_plane_depth

H, W = 40, 56
K = np.array([[50.0, 0, (W - 1) / 2], [0, 50.0, (H - 1) / 2], [0, 0, 1]])
VELOCITY = np.array([0.012, -0.006, 0.009])  # world units per frame: 0.6 % of the depth, as on the synthetic rig
GRAVITY = np.array([0.0, 0.03, 0.0])  # world units per frame^2 (y down): 1.5 % of the depth


def _pose(tx, ty, yaw_deg=0.0):
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    m = np.eye(4)
    m[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    m[:3, 3] = [tx, ty, 0]
    return m


# a rig-like sweep: consecutive frames come from cameras left, centre and right, in two rows
POSES = np.stack([_pose(-0.3, 0.05, 2.0), _pose(0.0, -0.05), _pose(0.3, 0.05, -2.0)])


def _depth():
    v, u = np.mgrid[0:H, 0:W]
    return 2.0 + 0.01 * u + 0.005 * v


def _observe(depth, moving, pose_from, pose_to, offset, accel=np.zeros(3)):
    """Pixel positions in frame ``pose_to`` of frame ``pose_from``'s points, the moving ones displaced by
    ``offset`` frames of motion at VELOCITY, accelerating by ``accel``. -> (H, W, 2)."""
    pts = unproject_depth(torch.from_numpy(depth), torch.from_numpy(K), torch.from_numpy(pose_from)).numpy()
    pts = pts + np.where(moving[..., None], offset * VELOCITY + 0.5 * offset ** 2 * accel, 0.0)
    uv, _ = project_points(torch.from_numpy(pts.reshape(-1, 3)), torch.from_numpy(K), torch.from_numpy(pose_to))
    return uv.numpy().reshape(H, W, 2)


def test_constant_velocity_triangulation_is_exact_where_the_static_one_is_not():
    depth, moving = _depth(), np.ones((H, W), bool)
    v, u = np.mgrid[0:H, 0:W]
    uv = np.stack([u, v], -1).astype(np.float64)
    end_prev = _observe(depth, moving, POSES[1], POSES[0], -1)
    end_next = _observe(depth, moving, POSES[1], POSES[2], 1)
    seen = [(-1, end_prev, POSES[0]), (1, end_next, POSES[2])]
    exact, _, residual, *_ = triangulate_moving(uv, seen, K, POSES[1], damping=0.0)
    assert np.allclose(exact, depth.ravel(), rtol=1e-6) and residual.max() < 1e-6
    damped, spread, *_ = triangulate_moving(uv, seen, K, POSES[1])
    assert np.median(np.abs(damped / depth.ravel() - 1)) < 0.02
    assert (spread < 0.15).all()  # 1 px of flow error (f = 50 px) moves it by 12 % here
    # the static triangulation reads the object's motion as parallax
    static, _, _ = triangulate_flow(end_next - uv, K, POSES[1], POSES[2])
    assert np.median(np.abs(static / depth - 1)) > 0.03
    # a static point comes out static: its own depth whatever the damping
    still = np.zeros((H, W), bool)
    for damping in (0.0, 0.1, 10.0):
        out, *_ = triangulate_moving(uv, [(-1, _observe(depth, still, POSES[1], POSES[0], -1), POSES[0]),
                                            (1, _observe(depth, still, POSES[1], POSES[2], 1), POSES[2])],
                                       K, POSES[1], damping=damping)
        assert np.allclose(out, depth.ravel(), rtol=1e-6)


# five frames from rig cameras scattered over three rows
FIVE = np.stack([_pose(-0.3, -0.1, 2.0), _pose(0.1, 0.15), _pose(0.0, -0.05), _pose(-0.2, -0.15, 1.0),
                 _pose(0.3, 0.1, -1.0)])


def test_the_accelerating_solve_follows_a_falling_point_and_its_misfit_tells_when_it_holds():
    depth, moving = _depth(), np.ones((H, W), bool)
    v, u = np.mgrid[0:H, 0:W]
    uv = np.stack([u, v], -1).astype(np.float64).reshape(-1, 2)

    def seen(accel, offsets=(-2, -1, 1, 2)):
        return [(o, _observe(depth, moving, FIVE[2], FIVE[2 + o], o, accel).reshape(-1, 2), FIVE[2 + o])
                for o in offsets]

    falling = seen(GRAVITY)
    exact, _, misfit, *_ = triangulate_moving(uv, falling, K, FIVE[2], accelerating=True, damping=0.0)
    assert np.allclose(exact, depth.ravel(), rtol=1e-6) and misfit.max() < 1e-6
    # constant velocity over the neighbours misplaces it (8.6 %); over five frames its misfit shows it does not hold
    steady, *_ = triangulate_moving(uv, seen(GRAVITY, (-1, 1)), K, FIVE[2])
    assert np.median(np.abs(steady / depth.ravel() - 1)) > 0.05
    _, _, steady_misfit, *_ = triangulate_moving(uv, falling, K, FIVE[2])
    assert np.median(steady_misfit) > 0.5
    # damped (as refine_moving_depth runs it): within 0.5 %
    damped, spread, *_ = triangulate_moving(uv, falling, K, FIVE[2], accelerating=True)
    assert np.median(np.abs(damped / depth.ravel() - 1)) < 0.005 and np.median(spread) < 0.1


def test_a_camera_that_barely_moves_cannot_pin_a_moving_points_depth():
    depth, moving = _depth(), np.ones((H, W), bool)
    slow = np.stack([_pose(-0.01, 0.0), _pose(0.0, 0.0), _pose(0.01, 0.0)])  # a handheld step: 0.5 % of the depth
    v, u = np.mgrid[0:H, 0:W]
    uv = np.stack([u, v], -1).astype(np.float64).reshape(-1, 2)
    _, spread, *_ = triangulate_moving(uv, [(-1, _observe(depth, moving, slow[1], slow[0], -1), slow[0]),
                                           (1, _observe(depth, moving, slow[1], slow[2], 1), slow[2])], K, slow[1])
    assert np.median(spread) > 0.5


def test_rims_take_their_interiors_depth_and_thin_objects_keep_theirs():
    depth = np.full((1, 60, 80), 9.0, np.float32)  # the wall behind
    moving = np.zeros((1, 60, 80), bool)
    moving[0, 10:40, 10:40] = True
    depth[0, 10:40, 10:40] = 9.0  # rim: the triangulation mixed in the wall
    depth[0, 14:36, 14:36] = 3.0  # interior: the object
    moving[0, 5:55, 60:63] = True  # a pole 3 px wide: no interior
    depth[0, 5:55, 60:63] = 4.0
    out = extend_interior_depth(depth, moving, 4, moving)  # every interior pixel trusted
    assert np.allclose(out[0, 10:40, 10:40], 3.0, rtol=1e-4)
    assert np.array_equal(out[0, 5:55, 60:63], depth[0, 5:55, 60:63])
    assert np.array_equal(out[~moving], depth[~moving])
    # only a trusted interior guides the rim: here its lower half
    trusted = np.zeros_like(moving)
    trusted[0, 25:40] = True
    depth[0, 14:25, 14:36] = 5.0
    out = extend_interior_depth(depth, moving, 4, trusted)
    assert np.allclose(out[0, 36:40, 14:36], 3.0, rtol=1e-4)
    assert np.array_equal(out[0, 14:36, 14:36], depth[0, 14:36, 14:36])  # the interior itself is kept
    assert np.array_equal(extend_interior_depth(depth, moving, 4, np.zeros_like(moving)), depth)


def test_a_slanted_rim_follows_its_interiors_plane_and_keeps_its_own_depth_where_it_agrees():
    v, u = np.mgrid[0:60, 0:80]
    slanted = (1.0 / (0.4 + 0.004 * u - 0.002 * v)).astype(np.float32)  # a plane, seen at a slant
    moving = np.zeros((1, 60, 80), bool)
    moving[0, 10:50, 15:65] = True
    inner = np.zeros((60, 80), bool)
    inner[14:46, 19:61] = True
    assert np.allclose(interior_plane_depth(slanted, inner, 4)[moving[0]], slanted[moving[0]], rtol=0.01)
    depth = np.where(moving, 9.0, slanted[None]).astype(np.float32)  # the rim mixed with the wall behind ...
    depth[0][inner] = slanted[inner]
    depth[0, 10:14, 30:40] = slanted[10:14, 30:40] * 1.03  # ... but for a stretch pinned close to the plane
    out = extend_interior_depth(depth, moving, 4, moving)
    rim = moving[0] & ~inner
    rim[10:14, 30:40] = False
    assert np.allclose(out[0][rim], slanted[rim], rtol=0.01)  # the interior's mean: up to 12 % off
    assert np.array_equal(out[0, 10:14, 30:40], depth[0, 10:14, 30:40])


def _three_frames():
    """Depth, masks and neighbour flows of three rig frames: a block moves at VELOCITY in front of a slanted
    wall (true depth everywhere; flows from the true motion)."""
    depth = np.stack([_depth()] * 3)
    moving = np.zeros((3, H, W), bool)
    moving[:, 10:30, 16:40] = True  # a fifth of the frame
    v, u = np.mgrid[0:H, 0:W]
    grid = np.stack([u, v], -1)
    fwd = np.stack([_observe(depth[i], moving[i], POSES[i], POSES[i + 1], 1) - grid for i in range(2)])
    bwd = np.stack([_observe(depth[i + 1], moving[i + 1], POSES[i + 1], POSES[i], -1) - grid for i in range(2)])
    return depth, moving, fwd.astype(np.float32), bwd.astype(np.float32)


def test_refinement_recovers_moving_depth_and_leaves_static_pixels_alone():
    truth, moving, fwd, bwd = _three_frames()
    # the static triangulation's error, within the agreement band
    start = (truth * np.where(moving, 1.12, 1.0)).astype(np.float32)
    start[1, 10:12] = 0.3 * truth[1, 10:12]  # far off: the three-frame solve is not trusted over it
    out = refine_moving_depth(start, moving, fwd, bwd, K, POSES)
    inner = moving[1].copy()
    inner[10:20] = False  # clear of the far-off rows and the rim band around them
    assert np.median(np.abs(out[1][inner] / truth[1][inner] - 1)) < 0.02  # was 0.12
    assert np.array_equal(out[~moving], start[~moving])
    assert np.array_equal(out[0], start[0])  # no neighbour before it: no trusted interior either
    # a region over a quarter of the frame is a failed mask estimate, not an object: left alone
    blob = moving.copy()
    blob[:, :, :] = False
    blob[:, 4:36, 4:52] = True
    assert np.array_equal(refine_moving_depth(start, blob, fwd, bwd, K, POSES), start)


def _falling_card(poses, gravity, centre=np.array([0.0, 0.0, 2.2]), half=0.35, spin=0.0):
    """Frames of a square card facing the cameras, moving at VELOCITY and falling by ``gravity`` (at VELOCITY in
    the middle frame) while it turns ``spin`` radians per frame in its plane, in front of a wall: per frame its mask,
    the depth (card or wall) and the neighbour flows, all from the truth.
    -> depth (N, H, W), moving (N, H, W) bool, fwd, bwd (N-1, H, W, 2) float32."""
    n, mid = len(poses), len(poses) // 2
    v, u = np.mgrid[0:H, 0:W]
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # camera frame, z = 1

    def card_centre(t):
        return centre + (t - mid) * VELOCITY + 0.5 * (t - mid) ** 2 * gravity

    def card_depth(i):  # depth along each pixel's ray to the card's plane (world z = its centre's), where inside
        c = card_centre(i)
        d_world = rays @ poses[i][:3, :3].T
        depth = (c[2] - poses[i][2, 3]) / d_world[..., 2]
        across = (poses[i][:3, 3] + depth[..., None] * d_world - c) @ _turn(-spin * (i - mid)).T
        inside = (np.abs(across[..., 0]) <= half) & (np.abs(across[..., 1]) <= half)
        return depth, inside

    depth = np.stack([_depth()] * n)
    moving = np.zeros((n, H, W), bool)
    for i in range(n):
        card, moving[i] = card_depth(i)
        depth[i][moving[i]] = card[moving[i]]
    grid = np.stack([u, v], -1)

    def flow(i, j):
        pts = unproject_depth(torch.from_numpy(depth[i]), torch.from_numpy(K), torch.from_numpy(poses[i])).numpy()
        turned = (pts - card_centre(i)) @ _turn(spin * (j - i)).T + card_centre(j)
        pts = np.where(moving[i][..., None], turned, pts)
        uv, _ = project_points(torch.from_numpy(pts.reshape(-1, 3)), torch.from_numpy(K), torch.from_numpy(poses[j]))
        return uv.numpy().reshape(H, W, 2) - grid

    fwd = np.stack([flow(i, i + 1) for i in range(n - 1)]).astype(np.float32)
    bwd = np.stack([flow(i + 1, i) for i in range(n - 1)]).astype(np.float32)
    return depth, moving, fwd, bwd


def _turn(angle):
    """Rotation (3, 3) by ``angle`` about the world z axis (the card's normal)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_refinement_follows_a_falling_object_whatever_the_depth_it_starts_from():
    depth, moving, fwd, bwd = _falling_card(FIVE, GRAVITY / 3)
    # the fill behind an object in the air: 1.4x too far, outside the three-frame solve's agreement band
    start = (depth * np.where(moving, 1.4, 1.0)).astype(np.float32)
    out = refine_moving_depth(start, moving, fwd, bwd, K, FIVE)
    err = [np.median(np.abs(out[i][moving[i]] / depth[i][moving[i]] - 1)) for i in range(5)]
    assert err[2] < 0.01  # was 0.4: the centred window
    assert max(err[0], err[4]) < 0.01  # the first and last frames take the four frames on their side
    assert np.array_equal(out[~moving], start[~moving])


def test_refinement_keeps_depth_without_baseline_and_names_bad_shapes():
    truth, moving, fwd, bwd = _three_frames()
    start = (truth * np.where(moving, 1.12, 1.0)).astype(np.float32)
    for poses in (np.stack([np.eye(4)] * 3), np.stack([_pose(-0.01, 0.0), _pose(0.0, 0.0), _pose(0.01, 0.0)])):
        assert np.array_equal(refine_moving_depth(start, moving, fwd, bwd, K, poses), start)
    with pytest.raises(InputError, match="refine_moving_depth"):
        refine_moving_depth(truth, moving[:2], fwd, bwd, K, POSES)


ELEVEN = np.stack([_pose(0.06 * k - 0.3, 0.1 * (-1) ** k, 2.0 - 0.4 * k) for k in range(11)])


def test_neighbours_votes_fill_a_patch_whose_flows_failed():
    depth, moving, fwd, bwd = _falling_card(ELEVEN, GRAVITY / 3)
    start = (depth * np.where(moving, 1.4, 1.0)).astype(np.float32)
    # the flows out of frame 5 fail on the card's left half (matched elsewhere): no solve holds there
    patch = moving[5] & (np.arange(W) < np.flatnonzero(moving[5].any(0)).mean())
    fwd[5][patch] += 6.0
    bwd[4][patch] -= 6.0
    out = refine_moving_depth(start, moving, fwd, bwd, K, ELEVEN)
    inner = patch & ~np.roll(~moving[5], (2, 2), (0, 1)) & ~np.roll(~moving[5], (-2, -2), (0, 1))
    assert np.median(np.abs(out[5][inner] / depth[5][inner] - 1)) < 0.01  # 0.4 without the votes
    assert np.array_equal(out[~moving], start[~moving])


def test_votes_fill_where_they_agree_and_change_nothing_where_they_disagree():
    depth = np.full((3, H, W), 3.0, np.float32)
    moving = np.zeros((3, H, W), bool)
    moving[:, 10:30, 16:40] = True
    still = np.zeros((H * W, 3))

    def track(frame, scale):  # a wall standing still, seen by the whole frame at ``scale`` times its depth 2
        pts = unproject_depth(torch.full((H, W), 2.0 * scale, dtype=torch.float64), torch.from_numpy(K),
                              torch.from_numpy(ELEVEN[frame])).numpy().reshape(-1, 3)
        return MovingSolve(np.full(H * W, 2.0 * scale), still[:, 0], still[:, 0], pts, still, still)

    Ks = np.stack([K] * 3)
    out, trusted = vote_from_neighbours(depth, moving, np.zeros_like(moving), {0: track(0, 1.0), 2: track(2, 1.0)},
                                        Ks, ELEVEN[:3])
    hit = moving[1] & trusted[1]
    assert hit.sum() > 0.8 * moving[1].sum() and np.allclose(out[1][hit], 2.0, rtol=0.02)
    assert np.array_equal(out[~moving], depth[~moving])
    out, trusted = vote_from_neighbours(depth, moving, np.zeros_like(moving), {0: track(0, 1.0), 2: track(2, 1.3)},
                                        Ks, ELEVEN[:3])
    assert np.array_equal(out, depth) and not trusted.any()


def test_an_objects_pose_comes_back_from_its_points_whatever_the_outliers():
    rng = np.random.default_rng(0)
    points = rng.uniform([-0.3, -0.3, 1.8], [0.3, 0.3, 2.4], (200, 3))
    w2c = np.linalg.inv(_pose(0.1, -0.05, 4.0))
    pixels, _ = project_points(torch.from_numpy(points), torch.from_numpy(K), torch.from_numpy(np.linalg.inv(w2c)))
    pixels = pixels.numpy()
    wrong = rng.random(200) < 0.3  # matched to the background instead
    pixels[wrong] += rng.uniform(4, 10, (wrong.sum(), 2))
    pose, inliers = object_pose(points, pixels, K, np.eye(4), tol=1.0)
    assert np.allclose(pose, w2c, atol=1e-6)
    assert np.array_equal(inliers, ~wrong)


def test_neighbours_carry_a_spinning_objects_depth_into_a_frame_whose_own_is_off():
    # a card turning 6 degrees a frame: each point's path curves, one rigid pose per frame still holds them all
    depth, moving, fwd, bwd = _falling_card(ELEVEN, GRAVITY / 3, spin=0.1)
    given = depth.astype(np.float32)
    given[5][moving[5]] *= 1.2  # frame 5's own solve fits its flows and is 20 % too far (a one-sided window)
    Ks = np.stack([K] * len(ELEVEN))
    chained = chained_flows(fwd, bwd, TRANSFER_REACH)
    out, settled = carry_rigid_neighbours(given, moving, moving, Ks, ELEVEN, chained)
    inner = moving[5] & ~np.roll(~moving[5], (1, 1), (0, 1)) & ~np.roll(~moving[5], (-1, -1), (0, 1))
    assert np.median(np.abs(out[5][inner] / depth[5][inner] - 1)) < 0.01
    assert settled[5][inner].all()
    assert np.array_equal(out[~moving], given[~moving])
    assert np.allclose(out[:5], given[:5], rtol=0.01) and np.allclose(out[6:], given[6:], rtol=0.01)
    # one neighbour alone cannot overrule a frame: its own points' errors would pass on unchecked
    alone = np.zeros_like(moving)
    alone[[5, 6]] = moving[[5, 6]]
    out, _ = carry_rigid_neighbours(given, moving, alone, Ks, ELEVEN, chained)
    assert np.array_equal(out, given)


def test_background_in_an_objects_mask_is_told_apart_by_its_flows_and_keeps_its_depth(monkeypatch):
    depth, moving, fwd, bwd = _falling_card(ELEVEN, GRAVITY / 3, np.array([0.0, 0.0, 1.6]), half=0.25)  # wall 2.2-2.6
    halo = cv2.dilate(moving[5].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~moving[5]
    chained = chained_flows(fwd, bwd, max(STILL_OFFSETS))
    # this 56 px frame's chained flows stray as a 480 px frame's do: the tolerance is stated at that scale
    monkeypatch.setattr(still_module, "STILL_FIT_PX", still_module.STILL_FIT_PX * 480 / W)
    still, still_depth = still_module.still_pixels(moving[5] | halo, 5, STILL_OFFSETS, chained, K, ELEVEN, W / 480)
    assert still[halo].mean() > 0.5 and not still[moving[5]].any()  # the rest is covered by the card next door
    assert np.median(np.abs(still_depth[still] / depth[5][still] - 1)) < 0.005
    # refined, the halo keeps the wall's depth, whatever the card's solves and its rim rule do
    start = (depth * np.where(moving, 1.3, 1.0)).astype(np.float32)
    start[5][halo] = 1.6  # the halo's fill: anything
    wide = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) for m in moving])
    out = refine_moving_depth(start, wide, fwd, bwd, K, ELEVEN)
    assert np.median(np.abs(out[5][halo & still] / depth[5][halo & still] - 1)) < 0.005
