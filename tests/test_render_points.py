"""Point rasteriser: PyTorch3D semantics (NDC convention, z-buffer with K points, strict radius, tie order)."""
import pytest
import torch

from pgdvs.render.points import (composite_norm_weighted, opencv_to_ndc, pixel_centers_ndc, rasterize_points,
                                 rasterize_points_reference, render_points)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def at_pixel(hw, col, row, z):
    """NDC point exactly on the centre of output pixel (row, col)."""
    xs, ys = pixel_centers_ndc(hw)
    return [float(xs[col]), float(ys[row]), z]


def test_ndc_convention_matches_pytorch3d_opencv_conversion():
    hw = (4, 6)  # wide: the short side (height) spans [-1, 1]
    xs, ys = pixel_centers_ndc(hw)
    assert torch.allclose(ys, torch.tensor([0.75, 0.25, -0.25, -0.75]))  # +y up: row 0 is the top
    assert torch.allclose(xs, torch.tensor([1.25, 0.75, 0.25, -0.25, -0.75, -1.25]))  # +x left, spans [-1.5, 1.5]
    # PyTorch3D's cameras_from_opencv_projection puts pixel centres at u + 0.5: (u, v) = (2.5, 1.5) is the
    # centre of output pixel (row 1, col 2); the project's offset 0.5 maps integer (2, 1) there
    assert torch.allclose(opencv_to_ndc(torch.tensor([2.5, 1.5]), hw), torch.stack([xs[2], ys[1]]))
    assert torch.allclose(opencv_to_ndc(torch.tensor([2.0, 1.0]), hw, pixel_offset=0.5), torch.stack([xs[2], ys[1]]))
    tall = (6, 4)
    xs_t, ys_t = pixel_centers_ndc(tall)
    assert torch.allclose(xs_t, torch.tensor([0.75, 0.25, -0.25, -0.75]))
    assert torch.allclose(ys_t, torch.tensor([1.25, 0.75, 0.25, -0.25, -0.75, -1.25]))


def test_zbuffer_exact_on_hand_built_points():
    hw = (4, 6)
    r = 0.3  # 0.6 px: a point covers only the pixel it sits on
    pts = torch.tensor([
        at_pixel(hw, 1, 1, 2.0),   # 0
        at_pixel(hw, 1, 1, 1.0),   # 1 nearer, same pixel
        at_pixel(hw, 1, 1, 3.0),   # 2 farthest: dropped with K = 2
        at_pixel(hw, 4, 2, -0.5),  # 3 behind the camera: skipped
        at_pixel(hw, 4, 2, 0.0),   # 4 z = 0 is kept (PyTorch3D skips only z < 0)
        at_pixel(hw, 0, 3, 5.0),   # 5 tie on z with 6: lower index first
        at_pixel(hw, 0, 3, 5.0),   # 6
    ])
    f = rasterize_points(pts, hw, r, 2)
    assert f.idx[1, 1].tolist() == [1, 0]
    assert f.zbuf[1, 1].tolist() == [1.0, 2.0]
    assert f.idx[2, 4].tolist() == [4, -1]
    assert f.idx[3, 0].tolist() == [5, 6]
    assert (f.idx >= 0).sum() == 5
    assert f.dists[1, 1].tolist() == [0.0, 0.0]
    assert f.zbuf[0, 0].tolist() == [-1.0, -1.0]


def test_radius_is_strict_and_in_short_side_ndc():
    hw = (4, 6)  # pixel pitch = 2 / 4 = 0.5 NDC on both axes
    centre = at_pixel(hw, 2, 1, 1.0)
    f = rasterize_points(torch.tensor([centre]), hw, 0.5, 1)  # neighbours at exactly 0.5: not covered
    assert (f.idx[..., 0] >= 0).sum() == 1
    f = rasterize_points(torch.tensor([centre]), hw, 0.5001, 1)  # now the 4 axis neighbours too
    assert (f.idx[..., 0] >= 0).sum() == 5
    assert f.dists[1, 2, 0] == 0 and abs(float(f.dists[1, 1, 0]) - 0.25) < 1e-6


@pytest.mark.parametrize("hw", [(7, 11), (11, 7), (9, 9)])
@pytest.mark.parametrize("radius,k,chunk", [(0.3, 1, 1000), (0.3, 3, 7), (0.6, 2, 13)])
def test_fast_matches_reference(hw, radius, k, chunk):
    gen = torch.Generator().manual_seed(hw[0] * 100 + k)
    pts = torch.rand(60, 3, generator=gen) * torch.tensor([4.0, 4.0, 2.0]) - torch.tensor([2.0, 2.0, 0.3])
    pts[10] = pts[11]  # exact duplicate: tie broken by index
    pts[20, 2] = pts[21, 2] = 0.7
    fast = rasterize_points(pts, hw, radius, k, chunk=chunk)
    ref = rasterize_points_reference(pts, hw, radius, k)
    assert (ref.idx >= 0).sum() > 30
    assert torch.equal(fast.idx, ref.idx)
    assert torch.equal(fast.zbuf, ref.zbuf)
    assert torch.equal(fast.dists, ref.dists)


def test_norm_weighted_composite():
    hw = (4, 6)
    r = 0.6
    c = at_pixel(hw, 2, 1, 1.0)
    pts = torch.tensor([c, [c[0] + 0.3, c[1], 2.0]])  # second point 0.3 NDC away: w = 1 - 0.09/0.36 = 0.75
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    img = composite_norm_weighted(rasterize_points(pts, hw, r, 3), feats, r)
    assert torch.allclose(img[1, 2], torch.tensor([1 / 1.75, 0.75 / 1.75]))
    assert img[3, 5].tolist() == [0.0, 0.0]  # black background


def test_render_points_projects_opencv_cameras():
    hw = (8, 12)
    K = torch.tensor([[10.0, 0, 5.5], [0, 10.0, 3.5], [0, 0, 1]])
    c2w = torch.eye(4)
    pts = torch.tensor([[0.0, 0.0, 2.0], [0.2, 0.0, 1.0]])  # pixels (5.5, 3.5) and (7.5, 3.5)
    img, cov, depth = render_points(pts, torch.eye(2), K, c2w, hw, radius=0.1, points_per_pixel=1)
    # PyTorch3D pixel centres sit at u + 0.5: (5.5, 3.5) is the centre of column 5, row 3
    assert cov.sum() == 2 and cov[3, 5] and cov[3, 7]
    assert depth[3, 5] == 2.0 and depth[3, 7] == 1.0
    assert img[3, 7].tolist() == [0.0, 1.0]


@cuda
def test_cpu_cuda_parity():
    gen = torch.Generator().manual_seed(1)
    pts = torch.rand(5000, 3, generator=gen) * torch.tensor([4.0, 2.0, 3.0]) - torch.tensor([2.0, 1.0, 0.0])
    a = rasterize_points(pts, (60, 100), 0.03, 3)
    b = rasterize_points(pts.cuda(), (60, 100), 0.03, 3)
    # CUDA divides by a Python scalar as a product with its reciprocal (up to 1 ulp off), so a point within
    # rounding of a pixel's radius may cover it on one device only: compare the pixels with the same hits
    same = (a.idx == b.idx.cpu()).all(-1)
    assert same.float().mean() > 0.999
    assert torch.allclose(a.zbuf[same], b.zbuf.cpu()[same])
    assert torch.allclose(a.dists[same], b.dists.cpu()[same], atol=1e-7)
