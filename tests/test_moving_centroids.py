"""An object no pixel's solve pins takes the depth of its mask's centroid, triangulated over the frames around it."""
import numpy as np

from pgdvs.reconstruct.moving_centroids import settle_by_centroids
from pgdvs.reconstruct.moving_depth import ACCEL_WINDOWS, MAX_SPREAD

N, H, W = 12, 160, 240
K = np.array([[150.0, 0, (W - 1) / 2], [0, 150.0, (H - 1) / 2], [0, 0, 1]])
START = np.array([-0.2, 0.1, 2.0])  # the object's centre in frame 0 (world units)
VELOCITY = np.array([0.02, -0.03, 0.01])  # per frame
GRAVITY = np.array([0.0, 0.008, 0.0])  # per frame^2 (y down): a thrown ball
RADIUS_PX = 7


def _poses():
    """A rig-like sweep: cameras left, centre and right in turn, alternating rows (no single straight line, which
    would leave a constant-velocity object's depth unobservable)."""
    poses = np.repeat(np.eye(4)[None], N, 0)
    for i in range(N):
        poses[i, :3, 3] = [0.3 * (i % 3 - 1), 0.05 * (-1) ** i, 0.0]
    return poses


def _centre(i, jitter=None):
    world = START + i * VELOCITY + 0.5 * i ** 2 * GRAVITY
    cam = world - _poses()[i, :3, 3]  # the cameras do not rotate
    uv = (K @ cam)[:2] / cam[2]
    return (uv if jitter is None else uv + jitter[i]), cam[2]


def _scene(jitter=None):
    """Masks of a disc around the object's centre in every frame, a fill 40 % too far on it and the background's
    depth elsewhere, nothing trusted; and chained 'flows' that carry the centre roughly (3 px of noise per pixel)
    without passing the forward-backward check anywhere: the object spins too fast for the flow."""
    v, u = np.mgrid[0:H, 0:W]
    masks, depth, truth = np.zeros((N, H, W), bool), np.full((N, H, W), 5.0, np.float32), []
    for i in range(N):
        (cu, cv), z = _centre(i, jitter)
        masks[i] = (u - cu) ** 2 + (v - cv) ** 2 <= RADIUS_PX ** 2
        depth[i][masks[i]] = 1.4 * z
        truth.append(z)
    rng = np.random.default_rng(0)

    def chained(i, offset):
        shift = _centre(i + offset, jitter)[0] - _centre(i, jitter)[0]
        return shift + rng.normal(0, 3.0, (H, W, 2)), np.zeros((H, W), bool)

    return masks, depth, np.array(truth), chained


def _settle(masks, depth, chained, trusted=None):
    trusted = np.zeros_like(masks) if trusted is None else trusted
    return settle_by_centroids(depth, masks, trusted, np.repeat(K[None], N, 0), _poses(), chained, ACCEL_WINDOWS,
                               MAX_SPREAD)


def test_an_object_without_trusted_pixels_takes_its_centroids_depth():
    masks, depth, truth, chained = _scene()
    out, trusted = _settle(masks, depth, chained)
    for i in range(N):  # every frame has a five-frame window inside the clip
        assert np.allclose(out[i][masks[i]], truth[i], rtol=0.03), i  # the fill was 40 % off
    assert trusted[masks].all() and not trusted[~masks].any()
    assert np.array_equal(out[~masks], depth[~masks])


def test_masks_whose_centroids_no_motion_fits_change_nothing():
    jitter = np.random.default_rng(1).normal(0, 4.0, (N, 2))  # mask centroids off the object's path by ~4 px
    masks, depth, _, chained = _scene(jitter)
    out, trusted = _settle(masks, depth, chained)
    assert np.array_equal(out, depth) and not trusted.any()


def test_an_object_mostly_trusted_keeps_its_depth():
    masks, depth, _, chained = _scene()
    trusted = masks.copy()
    trusted[:, :, :W // 2 - 40] = False  # a sliver of each disc at most is untrusted
    out, _ = _settle(masks, depth, chained, trusted)
    assert np.array_equal(out, depth)
