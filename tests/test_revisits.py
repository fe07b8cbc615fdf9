"""Revisited views: frames filmed again from the same place tell still pixels from moving ones without depth."""
import cv2
import numpy as np
import pytest
from mask_fixtures import toy_clip

from pgdvs.reconstruct.motion_masks import motion_masks
from pgdvs.reconstruct.revisits import (NEAR_PERCENTILE, PARALLAX_PX, drop_still_components, peel_still_pixels,
                                        revisit_partners, unchanged_in_revisits)

H, W, PLANE_Z = 60, 80, 10.0


def _rig_clip(cycles: int = 5, cameras: int = 3):
    """Frame i filmed by rig camera i % cameras (centres 0.5 apart along x, each yawed its own way and a little
    more each cycle) over a textured plane at z = PLANE_Z, with a textured square (side 2, z = 5) moving 0.5 a
    frame along x.
    -> frames (N, H, W, 3), K (N, 3, 3), c2w (N, 4, 4), depth (N, H, W), mask (N, H, W) bool."""
    rng = np.random.default_rng(3)
    tex_bg = cv2.GaussianBlur(rng.random((256, 256, 3)).astype(np.float32), (0, 0), 2.0)
    tex_bg = (tex_bg - tex_bg.min()) / (tex_bg.max() - tex_bg.min())
    tex_fg = cv2.GaussianBlur(rng.random((64, 64)).astype(np.float32), (0, 0), 1.5)
    n = cycles * cameras
    K = np.tile(np.array([[0.9 * W, 0, (W - 1) / 2], [0, 0.9 * W, (H - 1) / 2], [0, 0, 1.0]]), (n, 1, 1))
    c2w = np.tile(np.eye(4), (n, 1, 1))
    frames, depth, mask = np.zeros((n, H, W, 3), np.float32), np.zeros((n, H, W)), np.zeros((n, H, W), bool)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    for i in range(n):
        cam, yaw = i % cameras, 0.03 * (i % cameras) - 0.02 + 0.01 * (i // cameras)
        c2w[i, :3, :3] = [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]
        c2w[i, :3, 3] = [0.5 * cam, 0, 0]
        d = pix @ np.linalg.inv(K[i]).T @ c2w[i, :3, :3].T
        o = c2w[i, :3, 3]
        s_bg, s_fg = (PLANE_Z - o[2]) / d[..., 2], (5.0 - o[2]) / d[..., 2]  # camera z of d is 1: s is z-depth
        p_bg, p_fg = o + s_bg[..., None] * d, o + s_fg[..., None] * d
        local = p_fg[..., :2] - [-1.5 + 0.5 * i, 0.0]
        hit = (np.abs(local) <= 1.0).all(-1)
        bg = _sample(tex_bg, p_bg[..., 0] * 12 + 128, p_bg[..., 1] * 12 + 128)
        fg = _sample(tex_fg, local[..., 0] * 16 + 32, local[..., 1] * 16 + 32)
        fg = fg[..., None] * [1.0, 0.4, 0.3] + 0.05
        frames[i] = np.where(hit[..., None], fg, bg)
        depth[i] = np.where(hit, s_fg, s_bg)
        mask[i] = hit
    return frames, K, c2w, depth, mask


def _sample(texture, x, y):
    return cv2.remap(texture, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def rig():
    return _rig_clip()


def test_partners_are_the_frames_filmed_from_the_same_place_far_enough_in_time(rig):
    frames, K, c2w, depth, mask = rig
    partners = revisit_partners(K, c2w, depth)
    assert partners[0] == [6, 9, 12]  # frame 3 is the same camera, but only 3 frames later
    assert partners[4] == [10, 13] and partners[7] == [1, 13]
    # a partner whose nearest point moves up to PARALLAX_PX (stated at 480 px) stays one, not beyond
    step = PARALLAX_PX * W / 480 * np.percentile(depth[0], NEAR_PERCENTILE) / K[0, 0, 0]
    moved = c2w.copy()
    moved[9, 1, 3] += 0.8 * step
    moved[6, 1, 3] += 1.5 * step
    assert revisit_partners(K, moved, depth)[0] == [9, 12]
    # a camera that never leaves (tripod-like, or too slow to show parallax) revisits nothing
    still_camera = np.repeat(c2w[:1], len(c2w), 0)
    assert all(p == [] for p in revisit_partners(K, still_camera, depth))
    jitter = still_camera.copy()
    jitter[1::2, 1, 3] += 4 * step  # 2 px at 480 every other frame: a shaky hand, not a camera that went away
    assert all(p == [] for p in revisit_partners(K, jitter, depth))


def test_still_pixels_are_the_background_that_every_partner_shows_the_same(rig):
    frames, K, c2w, depth, mask = rig
    still = unchanged_in_revisits(frames, K, c2w, revisit_partners(K, c2w, depth))
    for i in (0, 5, 6, 11):
        # where the square is in this frame, or was in a partner's (seen through the rotation): not still
        assert not still[i][mask[i]].any()
        background = ~mask[i]
        assert still[i][background].mean() > 0.6, i
    # a frame without enough partners judges nothing
    assert not unchanged_in_revisits(frames, K, c2w, [[] for _ in frames]).any()


def test_a_false_alarm_on_the_still_background_is_dropped_and_the_moving_square_kept(rig):
    frames, K, c2w, depth, mask = rig
    still = unchanged_in_revisits(frames, K, c2w, revisit_partners(K, c2w, depth))
    masks = mask.copy()
    masks[6, 40:55, 5:20] = True  # a blob on the plane, away from the square
    textured = np.ones_like(masks)
    out = drop_still_components(masks, still, textured)
    assert np.array_equal(out, mask)
    # a component that is mostly moving stays whole, its still fringe included
    grown = mask.copy()
    grown[6] = cv2.dilate(mask[6].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.array_equal(drop_still_components(grown, still, textured), grown)
    # untextured pixels say nothing: a blob with too few textured pixels is kept
    assert np.array_equal(drop_still_components(masks, still, np.zeros_like(masks)), masks)


def test_the_still_part_of_a_component_is_peeled_off_and_the_moving_part_kept(rig):
    frames, K, c2w, depth, mask = rig
    still = unchanged_in_revisits(frames, K, c2w, revisit_partners(K, c2w, depth))
    textured = np.ones_like(mask)
    masks = mask.copy()
    rows, cols = np.nonzero(mask[4])
    top, left = rows.min(), cols.min()
    masks[4, top:top + 12, left - 12:left] = True  # background beside the square, joined to it
    assert drop_still_components(masks, still, textured)[4].sum() == masks[4].sum()  # one component: kept whole
    out = peel_still_pixels(masks, still, textured, radius=1, min_area=4)
    # the background beside the square gone, the square kept (the opening's 3 x 3 cross rounds its four corners)
    assert not (out[4] & ~mask[4]).any() and (mask[4] & ~out[4]).sum() <= 4
    assert np.array_equal(out[[0, 5, 11]], mask[[0, 5, 11]])  # frames without a false pixel keep their masks
    # holes are filled: the square's own pixels that the partners happen to show unchanged stay
    holed = still.copy()
    holed[4, top + 3:top + 6, left + 3:left + 6] = True
    assert (mask[4] & ~peel_still_pixels(mask, holed, textured, 1, 4)[4]).sum() <= 4


def test_motion_masks_on_a_clip_without_revisits_are_unchanged():
    clip = toy_clip()
    Ks = np.repeat(clip["K"][None], len(clip["frames"]), 0) if clip["K"].ndim == 2 else clip["K"]
    args = (clip["frames"], clip["fwd"], clip["bwd"], Ks, clip["c2w"], clip["depth"])
    assert np.array_equal(motion_masks(*args), motion_masks(*args, revisits=False))
