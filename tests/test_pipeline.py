"""reconstruct(): a short synthetic clip end to end, degenerate clips (static camera, pure rotation), the depth
prior hook, the CLI, and bad inputs that must leave no scene folder behind."""
import dataclasses
import types

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pgdvs.cli import main
from pgdvs.errors import InputError
from pgdvs.ingest import Clip
from pgdvs.reconstruct import pipeline
from pgdvs.reconstruct.cameras import CameraEstimate, guess_intrinsics
from pgdvs.reconstruct.degeneracy import MotionReport
from pgdvs.reconstruct.pipeline import STAGES, ReconstructConfig, reconstruct, translates
from pgdvs.scene import Scene

FAST = ReconstructConfig(depth_prior="none", flow_gaps=(1, 2))


def _texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5)
    return (img - img.min()) / (img.max() - img.min())


def _clip(frames, name="test"):
    return Clip(frames.astype(np.float32), 10.0, [f"{i:05d}" for i in range(len(frames))], name)


@pytest.fixture(scope="module")
def handheld():
    from pgdvs.bench.synthetic import make_scene

    return make_scene("handheld-room", "small")


@pytest.fixture(scope="module")
def reconstructed(handheld, tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "room"
    calls = []
    frames = handheld.rgb[::3]
    scene = reconstruct(_clip(frames), FAST, progress=lambda *a: calls.append(a), out_dir=out)
    return scene, out, calls, handheld


def test_reconstruct_writes_a_valid_scene_with_report(reconstructed):
    scene, out, calls, truth = reconstructed
    n = len(truth.rgb[::3])
    assert scene.rgb.shape == (n, *truth.hw, 3)
    assert np.isfinite(scene.depth).all() and (scene.depth > 0).all()
    loaded = Scene.load(out)
    np.testing.assert_allclose(loaded.c2w, scene.c2w)
    assert loaded.meta["motion"]["kind"] == "general"
    assert loaded.meta["cameras"]["backend"].startswith("colmap")  # SIFT or flow-track SfM
    assert loaded.meta["backends"]["depth"] == "triangulation"
    assert set(scene.meta["seconds"]) >= set(STAGES)
    assert isinstance(loaded.meta["notices"], list)
    # progress: every stage reported, in pipeline order, fractions within [0, 1]
    stages = [c[0] for c in calls]
    assert [s for s in STAGES if s in stages] == sorted(set(stages), key=stages.index)
    assert all(0.0 <= c[1] <= 1.0 for c in calls) and set(STAGES) <= set(stages)


def test_reconstructed_geometry_matches_the_truth(reconstructed):
    from pgdvs.bench.suites.reconstruct import depth_errors, trajectory_errors

    scene, _, _, truth = reconstructed
    gt_c2w = truth.gt.c2w[::3]
    extent = np.linalg.norm(np.ptp(gt_c2w[:, :3, 3], axis=0))
    assert trajectory_errors(scene.c2w, gt_c2w)["ate"] < 0.05 * extent
    err = depth_errors(scene.depth, truth.gt.depth[::3], ~truth.gt.dyn_mask[::3])
    assert err["depth_absrel"] < 0.2 and err["depth_delta1"] > 0.7


def test_static_camera_clip_is_reported_and_usable():
    base = _texture(64, 96)
    frames = np.repeat(base[None], 5, 0)
    for k in range(5):  # a small square moves; the camera does not
        frames[k, 20:36, 10 + 8 * k:26 + 8 * k] = 0.9
    scene = reconstruct(_clip(frames), FAST)
    assert scene.meta["motion"]["kind"] == "static"
    np.testing.assert_allclose(scene.c2w, np.tile(np.eye(4), (5, 1, 1)))
    assert np.isfinite(scene.depth).all() and (scene.depth > 0).all()
    assert any("does not move" in n for n in scene.meta["notices"])
    assert any("focal length assumed" in n for n in scene.meta["notices"])


def test_rotation_only_clip_gets_rotation_cameras_and_finite_depth():
    h, w, n = 90, 120, 5
    base = _texture(h, w, 1)
    K = guess_intrinsics((h, w))
    frames, truth = [], []
    for k in range(n):
        rot = Rotation.from_euler("y", 0.6 * k, degrees=True).as_matrix()
        truth.append(rot)
        frames.append(cv2.warpPerspective(base, K @ rot.T @ np.linalg.inv(K), (w, h), borderMode=cv2.BORDER_REFLECT))
    scene = reconstruct(_clip(np.stack(frames)), FAST)
    assert scene.meta["motion"]["kind"] == "rotation"
    assert scene.meta["cameras"]["backend"].startswith("rotation-only")
    assert np.abs(scene.c2w[:, :3, 3]).max() == 0
    for est, rot in zip(scene.c2w, truth):
        assert np.degrees(Rotation.from_matrix(est[:3, :3].T @ rot).magnitude()) < 0.5  # of 2.4 degrees
    assert np.isfinite(scene.depth).all() and (scene.depth > 0).all()


def test_depth_prior_is_used_when_given():
    class Estimator:  # pgdvs.hub's DepthEstimator interface: a smooth left-to-right disparity ramp
        def predict_disparity(self, image):
            return np.linspace(1, 2, image.shape[1], dtype=np.float32)[None].repeat(image.shape[0], 0)

    frames = np.repeat(_texture(48, 64)[None], 3, 0)
    config = ReconstructConfig(depth_prior="auto", flow_gaps=(1, 2))
    scene = reconstruct(_clip(frames), config, depth_model=Estimator())
    assert scene.meta["backends"]["depth"].startswith("depth-anything")
    assert np.isfinite(scene.depth).all()
    # static camera: the prior's shape is kept (nearer on the right, where disparity is larger)
    assert scene.depth[0, :, -1].mean() < scene.depth[0, :, 0].mean()


def test_cli_reconstructs_a_frame_folder(tmp_path, capsys):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    base = _texture(48, 64, 2)
    for k in range(4):
        cv2.imwrite(str(frames_dir / f"{k:03d}.png"), (base[..., ::-1] * 255).astype(np.uint8))
    out = tmp_path / "scene"
    assert main(["reconstruct", str(frames_dir), "--out", str(out), "--depth-prior", "none", "--quiet"]) == 0
    assert Scene.load(out).n_frames == 4
    assert "wrote" in capsys.readouterr().out


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_bad_inputs_leave_no_scene_folder(tmp_path, capsys):
    out = tmp_path / "scene"
    with pytest.raises(InputError, match="no such file"):
        reconstruct(tmp_path / "missing.mp4", out_dir=out)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    with pytest.raises(InputError):
        reconstruct(not_video, out_dir=out)
    with pytest.raises(InputError, match="allowed: dis, raft"):
        reconstruct(not_video, ReconstructConfig(flow="farneback"), out_dir=out)
    with pytest.raises(InputError, match="N >= 2"):
        reconstruct(_clip(np.zeros((1, 8, 8, 3))), out_dir=out)
    assert main(["reconstruct", str(tmp_path / "missing.mp4"), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    assert _leftovers(tmp_path) == ["notes.mp4"]


def test_failure_mid_pipeline_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("depth exploded")

    monkeypatch.setattr(pipeline, "consistent_depth", broken)
    with pytest.raises(RuntimeError):
        reconstruct(_clip(np.repeat(_texture(32, 48)[None], 3, 0)), FAST, out_dir=tmp_path / "scene")
    assert _leftovers(tmp_path) == []


def test_implausible_automatic_masks_are_cleared_with_a_notice():
    dyn = np.zeros((3, 10, 10), bool)
    dyn[0, :2] = True  # 20 %: kept
    dyn[1, :8] = True  # 80 %: a failed estimate
    notices = []
    out = pipeline.drop_implausible_masks(dyn, notices)
    assert out[0].sum() == 20 and not out[1].any() and not out[2].any()
    assert dyn[1].sum() == 80  # the input is not modified
    assert len(notices) == 1 and "1 of 3 frames" in notices[0]
    assert pipeline.drop_implausible_masks(dyn[[0, 2]], notices).sum() == 20 and len(notices) == 1


def test_final_masks_are_judged_on_the_consistent_depth(handheld, monkeypatch):
    from pgdvs.bench.suites.reconstruct import mask_iou
    from pgdvs.reconstruct import motion_masks as masks_module

    judged, solved, found = [], [], []
    real_masks, real_depth = masks_module.motion_masks, pipeline.consistent_depth

    def masks(*args, **kwargs):
        judged.append(args[5])
        found.append(real_masks(*args, **kwargs))
        return found[-1]

    def depth(*args, **kwargs):
        solved.append(real_depth(*args, **kwargs))
        return solved[-1]

    monkeypatch.setattr(masks_module, "motion_masks", masks)
    monkeypatch.setattr(pipeline, "consistent_depth", depth)
    scene = reconstruct(_clip(handheld.rgb[::3]), FAST)
    # first on the coarse depth (it steers the consistent depth), then on the consistent depth; the latter is kept
    assert len(judged) == 2 and judged[0] is solved[0].depth and judged[1] is solved[1].depth
    np.testing.assert_array_equal(scene.dyn_mask, found[1])
    assert mask_iou(scene.dyn_mask, handheld.gt.dyn_mask[::3]) > 0.6  # 0.80 (the first masks: 0.77)


def test_simulated_clicks_target_the_worst_miss_and_false_positive():
    from pgdvs.bench.suites.reconstruct import click_targets

    gt = np.zeros((40, 60), bool)
    gt[5:15, 5:15] = True  # found
    gt[20:36, 30:46] = True  # mostly missed: the include click goes to the centre of its missed part
    est = np.zeros_like(gt)
    est[5:15, 5:15] = True
    est[20:36, 30:36] = True  # its left part is found
    est[25:31, 2:10] = True  # false positive: the exclude click goes inside it
    (inc, inc_label), (exc, exc_label) = click_targets(est, gt)
    assert (inc_label, exc_label) == (1, 0)
    assert gt[int(inc[1]), int(inc[0])] and not est[int(inc[1]), int(inc[0])] and abs(inc[0] - 40.5) <= 1
    assert est[int(exc[1]), int(exc[0])] and not gt[int(exc[1]), int(exc[0])]
    assert click_targets(gt, gt) == []


def test_rig_targets_take_the_reconstructed_pose_and_intrinsics_of_their_camera():
    from pgdvs.bench.suites.reconstruct import rig_views_in_reconstruction
    from pgdvs.errors import PGDVSError
    from pgdvs.scene import EvalViews

    n, rig = 9, 3  # frame i was filmed by rig camera i % 3
    c2w = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):  # camera c sits at x = c; its three estimates wobble by +-2 degrees and +-0.1 around that
        wobble = (i // rig - 1) * 2.0
        c2w[i, :3, :3] = Rotation.from_euler("y", 10 * (i % rig) + wobble, degrees=True).as_matrix()
        c2w[i, :3, 3] = [i % rig, 0.1 * wobble / 2, 0.0]
    K = np.tile(np.array([[100.0, 0, 31.5], [0, 100.0, 15.5], [0, 0, 1]]), (n, 1, 1))
    scene = types.SimpleNamespace(n_frames=n, hw=(32, 64), c2w=c2w, K=K)
    views = EvalViews(time=np.array([4.0, 5.0]), camera=np.array([2, 1]), c2w=np.tile(np.eye(4), (2, 1, 1)),
                      K=np.tile(np.eye(3), (2, 1, 1)), rgb=np.zeros((2, 64, 128, 3), np.float32),
                      depth=np.ones((2, 64, 128), np.float32), dyn_mask=np.zeros((2, 64, 128), bool))
    placed = rig_views_in_reconstruction(scene, views, rig)
    assert np.allclose(placed.c2w[0, :3, 3], [2, 0, 0]) and np.allclose(placed.c2w[1, :3, 3], [1, 0, 0])
    angle = Rotation.from_matrix(placed.c2w[:, :3, :3]).as_euler("yxz", degrees=True)[:, 0]
    assert np.allclose(angle, [20, 10], atol=1e-6)
    assert np.allclose(placed.K[0], [[200, 0, 63.5], [0, 200, 31.5], [0, 0, 1]])  # views are twice the size
    assert np.array_equal(views.c2w, np.tile(np.eye(4), (2, 1, 1)))  # the input views are left alone
    with pytest.raises(PGDVSError, match="rig camera 10"):  # a 12-camera rig: 9 frames leave cameras 9-11 out
        rig_views_in_reconstruction(scene, dataclasses.replace(views, camera=np.array([10, 1])), 12)


def test_sfm_overrides_a_rotation_verdict_only_with_real_translation():
    # a scene dominated by one plane fits a homography like a pure rotation; SfM decides (pipeline._cameras)
    rng = np.random.default_rng(0)
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[:, 0, 3] = [0.0, 0.05, 0.1]
    points = rng.normal(size=(200, 3)) * 0.2 + [0.0, 0.0, 1.0]
    est = CameraEstimate(np.eye(3), c2w, np.ones(3, bool), points, 0.3, "colmap")
    assert translates(est)
    assert not translates(dataclasses.replace(est, points=points[:5]))  # what COLMAP makes of a pure rotation
    assert not translates(dataclasses.replace(est, c2w=np.tile(np.eye(4), (3, 1, 1))))


def _sliding_down(c2w: np.ndarray) -> np.ndarray:
    """Wrong cameras for the toy clip: its cameras slide sideways, these slide down (x and y swapped)."""
    wrong = c2w.copy()
    wrong[:, :3, 3] = c2w[:, [1, 0, 2], 3]
    return wrong


def test_flow_misfit_tells_right_cameras_from_wrong_ones():
    from mask_fixtures import toy_clip

    clip = toy_clip(hw=(96, 128), cam_step=(0.3, 0.05))  # the moving square covers 17 % of the pixels
    flows = {(i, i + 2): clip["flow"](i, i + 2) for i in range(len(clip["frames"]) - 2)}
    right = CameraEstimate(clip["K"][0], clip["c2w"], np.ones(8, bool), np.zeros((0, 3)), 0.1, "colmap")
    wrong_c2w = _sliding_down(clip["c2w"])
    assert pipeline.flow_misfit(right, flows, (96, 128)) < 0.1
    assert pipeline.flow_misfit(dataclasses.replace(right, c2w=wrong_c2w), flows, (96, 128)) > 5.0


def test_sfm_on_flow_tracks_is_tried_again_while_it_registers_too_few_frames(monkeypatch):
    """An unlucky RANSAC draw can leave the flow-track model with a handful of frames: it runs again, up to
    TRACK_SFM_ATTEMPTS times, and the model registering most frames is kept."""
    def estimate(registered):
        mask = np.zeros(10, bool)
        mask[:registered] = True
        return CameraEstimate(np.eye(3), np.tile(np.eye(4), (10, 1, 1)), mask, np.zeros((0, 3)), 0.3, "colmap")

    def run(results):
        calls = iter(results)
        monkeypatch.setattr(pipeline, "colmap_poses", lambda frames, flows: next(calls))
        return pipeline.tracked_poses(np.zeros((10, 4, 4, 3)), {})

    assert run([estimate(2), None, estimate(9), estimate(10)]).registered.sum() == 9  # stops once enough register
    assert run([estimate(10), estimate(2)]).registered.sum() == 10  # a good first run is not repeated
    attempts = pipeline.TRACK_SFM_ATTEMPTS
    failures = [estimate(3), estimate(2)] + [estimate(1)] * (attempts - 2)
    assert run(failures + [estimate(10)]).registered.sum() == 3  # gives up after TRACK_SFM_ATTEMPTS runs
    assert run([None] * attempts) is None


def test_the_camera_model_the_flow_fits_is_kept_preferring_flow_tracks_at_a_tie():
    from mask_fixtures import toy_clip

    clip = toy_clip(hw=(96, 128), cam_step=(0.3, 0.05))
    flows = {(i, i + 2): clip["flow"](i, i + 2) for i in range(len(clip["frames"]) - 2)}
    right = CameraEstimate(clip["K"][0], clip["c2w"], np.ones(8, bool), np.zeros((0, 3)), 0.1, "colmap")
    wrong_c2w = _sliding_down(clip["c2w"])
    wrong = dataclasses.replace(right, c2w=wrong_c2w)
    tracks = dataclasses.replace(right, backend="colmap (flow tracks)")
    wrong_tracks = dataclasses.replace(wrong, backend="colmap (flow tracks)")
    pick = lambda sift, tracked: pipeline.better_model(sift, tracked, flows, (96, 128))  # noqa: E731
    assert pick(wrong, tracks) is tracks
    assert pick(right, wrong_tracks) is right  # SIFT's model wins when the flow fits it clearly better
    assert pick(right, tracks) is tracks  # an equal fit: the denser tracks pin the focal length better
    fewer = dataclasses.replace(tracks, registered=np.arange(8) < 6)
    assert pick(wrong, fewer) is wrong  # more registered frames come first
    assert pick(None, fewer) is fewer and pick(right, None) is right and pick(None, None) is None


def test_after_a_rotation_verdict_the_tracks_only_check_a_sift_model_that_translates(monkeypatch):
    from mask_fixtures import toy_clip

    clip = toy_clip(hw=(96, 128), cam_step=(0.3, 0.05))
    flows = {(i, j): clip["flow"](i, j) for i in range(8) for j in range(8) if 0 < abs(i - j) <= 2}
    points = np.random.default_rng(0).normal(size=(200, 3)) * 0.3 + [0.0, 0.0, 3.0]
    right = CameraEstimate(clip["K"][0], clip["c2w"], np.ones(8, bool), points, 0.1, "colmap (flow tracks)")
    wrong_c2w = _sliding_down(clip["c2w"])
    still = dataclasses.replace(right, c2w=np.tile(np.eye(4), (8, 1, 1)), backend="colmap")
    rotation = MotionReport("rotation", 10.0, 0.2, "rotation")
    runs = []

    def cameras(sift):
        def colmap_poses(frames, flows=None, max_features=None):
            runs.append("tracks" if flows is not None else "sift")
            return sift if flows is None else right
        runs.clear()
        monkeypatch.setattr(pipeline, "colmap_poses", colmap_poses)
        return pipeline._cameras(clip["frames"], flows, rotation, FAST, [])

    _, c2w, info = cameras(still)  # SIFT agrees with the flow test: rotation-only cameras, no track run
    assert runs == ["sift"] and info["backend"].startswith("rotation-only")
    _, c2w, info = cameras(dataclasses.replace(still, c2w=wrong_c2w))  # SIFT translates, wrongly: tracks win
    assert runs == ["sift", "tracks"] and info["backend"] == "colmap (flow tracks)"
    assert np.allclose(c2w, clip["c2w"])


def test_the_flow_track_model_runs_again_while_the_neighbour_flow_misfits_it(monkeypatch):
    """A low-parallax draw can settle on cameras the neighbouring frames' flow does not fit: the tracks' SfM runs
    again, up to MISFIT_RETRIES times, and the best fitting run of those registering most frames is kept."""
    from mask_fixtures import toy_clip

    clip = toy_clip(hw=(96, 128), cam_step=(0.3, 0.05))
    flows = {(i, i + 1): clip["flow"](i, i + 1) for i in range(len(clip["frames"]) - 1)}
    right = CameraEstimate(clip["K"][0], clip["c2w"], np.ones(8, bool), np.zeros((0, 3)), 0.1, "colmap (flow tracks)")
    wrong = dataclasses.replace(right, c2w=_sliding_down(clip["c2w"]))
    fewer = dataclasses.replace(right, registered=np.arange(8) < 6)

    def run(first, results):
        calls = iter(results)
        monkeypatch.setattr(pipeline, "colmap_poses", lambda frames, flows: next(calls))
        return pipeline.steadier_tracks(clip["frames"], flows, first, (96, 128))

    assert run(right, []) is right  # a fitting model is not run again
    assert run(wrong, [None, right]) is right
    assert run(wrong, [fewer, wrong]) is wrong  # fewer frames registered do not win on fit
    assert pipeline.MISFIT_RETRIES == 2 and run(wrong, [wrong, wrong, right]) is wrong  # gives up after the retries
    assert run(None, []) is None
