import cv2
import numpy as np
import pytest
import torch

from pgdvs.reconstruct.flow import compute_flows, consistency_error, neighbour_flows


def _shifted(n=3, dx=2, dy=1, h=96, w=160):
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.random((h + 40, w + 40, 3)).astype(np.float32), (0, 0), 2)
    base = (base - base.min()) / (base.max() - base.min())
    return np.stack([base[10 + k * dy:10 + k * dy + h, 10 + k * dx:10 + k * dx + w] for k in range(n)])


def test_dis_recovers_translation_and_is_consistent():
    frames = _shifted()
    fwd, bwd = neighbour_flows(frames)
    assert fwd.shape == (2, 96, 160, 2) and fwd.dtype == np.float32
    inner = (slice(None), slice(8, -8), slice(8, -8))
    # Crop moves by (+2, +1) per frame, so content moves by (-2, -1).
    assert np.median(fwd[inner][..., 0]) == pytest.approx(-2, abs=0.05)
    assert np.median(fwd[inner][..., 1]) == pytest.approx(-1, abs=0.05)
    assert np.median(bwd[inner][..., 0]) == pytest.approx(2, abs=0.05)
    err = consistency_error(fwd, bwd)
    assert (err[inner] <= 1.0).mean() > 0.95


def test_dis_keeps_a_small_object_apart_from_the_background():
    # fine texture; the background moves (-1, 0), a 28 px square (-2, +1): at half resolution (DIS's medium preset)
    # the square's flow bleeds over its border (p90 error 0.22 px), at full resolution it does not (0.03 px)
    rng = np.random.default_rng(3)
    background, square = (cv2.GaussianBlur(rng.random(s).astype(np.float32), (0, 0), 1.0) for s in
                          ((100, 170, 3), (28, 28, 3)))
    frames = []
    for k in range(2):
        frame = background[:96, k:k + 160].copy()
        frame[30 + k:58 + k, 60 - 2 * k:88 - 2 * k] = square
        frames.append((frame - background.min()) / np.ptp(background))
    truth = np.zeros((96, 160, 2), np.float32)
    truth[..., 0] = -1
    truth[30:58, 60:88] = (-2, 1)
    err = np.linalg.norm(compute_flows(np.stack(frames), [(0, 1)])[0] - truth, axis=-1)[8:-8, 8:-8]
    assert np.percentile(err, 90) < 0.1 and (err < 0.5).mean() > 0.98


def test_raft_backend_runs_a_torchvision_model():
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    frames = _shifted(2, h=60, w=90)  # not a multiple of 8: exercises padding
    flows = compute_flows(frames, [(0, 1)], backend="raft", model=raft_small(weights=None))
    assert flows.shape == (1, 60, 90, 2) and np.isfinite(flows).all()


def test_bad_backend_messages():
    frames = _shifted(2)
    with pytest.raises(ValueError, match="needs a RAFT model"):
        compute_flows(frames, [(0, 1)], backend="raft")
    with pytest.raises(ValueError, match="unknown flow backend"):
        compute_flows(frames, [(0, 1)], backend="farneback")
