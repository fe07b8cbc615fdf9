import av
import numpy as np
import pytest
import torch

from pgdvs.atomic import atomic_dir, atomic_file
from pgdvs.geometry import (in_image, invert_pose, look_at, pixel_grid, project_points, rescale_intrinsics,
                            unproject_depth)
from pgdvs.videoio import write_video
from pgdvs.warp import backward_warp, flow_consistency, sample_image


def _camera():
    K = torch.tensor([[100.0, 0, 31.5], [0, 110.0, 23.5], [0, 0, 1]], dtype=torch.float64)
    c2w = look_at(torch.tensor([0.3, -0.2, -1.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                  torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    return K, c2w


def test_look_at_is_opencv_and_orthonormal():
    K, c2w = _camera()
    rot = c2w[:3, :3]
    torch.testing.assert_close(rot @ rot.T, torch.eye(3, dtype=torch.float64))
    assert torch.det(rot) == pytest.approx(1.0)
    # Target projects to the principal point; world "up" (-y) appears above it (smaller v).
    uv, z = project_points(torch.tensor([[0.0, 0, 0], [0.0, -0.1, 0]], dtype=torch.float64), K, c2w)
    torch.testing.assert_close(uv[0], K[:2, 2])
    assert z[0] > 0 and uv[1, 1] < uv[0, 1]


def test_unproject_project_roundtrip_and_pixel_convention():
    K, c2w = _camera()
    depth = torch.rand(48, 64, dtype=torch.float64) + 0.5
    pts = unproject_depth(depth, K, c2w)
    assert pts.shape == (48, 64, 3)
    uv, z = project_points(pts.reshape(-1, 3), K, c2w)
    torch.testing.assert_close(uv, pixel_grid(48, 64, dtype=torch.float64).reshape(-1, 2))
    torch.testing.assert_close(z, depth.reshape(-1))
    torch.testing.assert_close(invert_pose(invert_pose(c2w)), c2w)
    assert in_image(torch.tensor([[0.0, 0.0], [63.0, 47.0], [63.01, 0.0], [-0.01, 3.0]]), 48, 64).tolist() == [
        True, True, False, False]


def test_rescale_intrinsics_matches_pixel_centre_resize():
    K, _ = _camera()
    K2 = rescale_intrinsics(K, (48, 64), (24, 32))
    assert K2[0, 0] == pytest.approx(50.0) and K2[1, 1] == pytest.approx(55.0)
    # Centre of the image stays the centre: (W-1)/2 -> (W'-1)/2.
    Kc = K.clone()
    Kc[0, 2], Kc[1, 2] = 31.5, 23.5
    K3 = rescale_intrinsics(Kc, (48, 64), (24, 32))
    assert K3[0, 2] == pytest.approx(15.5) and K3[1, 2] == pytest.approx(11.5)


def test_sampling_and_flow_consistency():
    img = torch.arange(12.0).reshape(1, 1, 3, 4)
    out = sample_image(img, torch.tensor([[[1.0, 2.0], [1.5, 0.0], [9.0, 0.0]]]))
    torch.testing.assert_close(out[0, 0], torch.tensor([9.0, 1.5, 0.0]))
    flow = torch.full((1, 3, 4, 2), 0.0)
    flow[..., 0] = 1.0
    warped = backward_warp(img, flow)
    torch.testing.assert_close(warped[0, 0, :, :3], img[0, 0, :, 1:])
    diff = flow_consistency(flow, -flow)
    assert diff[0, :, :3].abs().max() == 0  # last column maps outside: zero padding breaks the check there
    assert diff[0, :, 3].abs().sum(-1).min() > 0


def test_atomic_writes_leave_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "scene") as tmp:
            (tmp / "x").write_text("half")
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "scene") as tmp:
        (tmp / "x").write_text("ok")
    assert (tmp_path / "scene" / "x").read_text() == "ok"


def test_write_video_is_browser_playable_h264(tmp_path):
    frames = np.random.default_rng(0).random((5, 27, 33, 3)).astype(np.float32)
    path = write_video(tmp_path / "v.mp4", frames, fps=12)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (s.width, s.height) == (34, 28)  # padded to even sides
        assert sum(1 for _ in c.decode(s)) == 5
    with pytest.raises(ValueError, match="needs \\(T, H, W, 3\\)"):
        write_video(tmp_path / "bad.mp4", np.zeros((0, 4, 4, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
