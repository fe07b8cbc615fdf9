"""Separable max/min filters against their reference, F.max_pool2d, and the cropped hole closing."""
import pytest
import torch
import torch.nn.functional as F

from pgdvs.render.composite import _close_holes_dense, close_holes
from pgdvs.render.dynamic import DynamicLayer
from pgdvs.render.morphology import dilate, max_filter, min_filter


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_max_and_min_filter_equal_max_pool(radius):
    gen = torch.Generator().manual_seed(radius)
    image = torch.rand(2, 37, 53, generator=gen)
    image[0, 5:9, 10:30] = torch.inf
    image[1, :3, :] = -torch.inf
    size = 2 * radius + 1
    assert torch.equal(max_filter(image, radius), F.max_pool2d(image[:, None], size, 1, radius)[:, 0])
    assert torch.equal(min_filter(image, radius), -F.max_pool2d(-image[:, None], size, 1, radius)[:, 0])
    assert torch.equal(max_filter(image, 0), image)


def test_stride_two_subsampling_equals_strided_max_pool():
    image = torch.rand(1, 1, 31, 44, generator=torch.Generator().manual_seed(0))
    assert torch.equal(max_filter(image, 1)[..., ::2, ::2], F.max_pool2d(image, 3, 2, 1))


def test_dilate_grows_a_pixel_into_a_square():
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 4] = True
    grown = dilate(mask, 2)
    assert grown.sum() == 25 and grown[2:7, 2:7].all()
    assert torch.equal(dilate(mask, 0), mask)


def test_close_holes_on_the_bounding_box_equals_the_whole_image():
    gen = torch.Generator().manual_seed(3)
    height, width = 60, 80
    alpha = torch.zeros(height, width)
    alpha[20:40, 30:55] = torch.rand(20, 25, generator=gen).clamp(min=0.3)
    alpha[25:28, 35:37] = 0.0  # holes the closing fills
    alpha[30, 45] = 0.0
    layer = DynamicLayer(torch.rand(height, width, 3, generator=gen) * alpha[..., None], alpha > 0.5, alpha,
                         torch.rand(height, width, generator=gen) * 5 * (alpha > 0))
    fast, dense = close_holes(layer, 2), _close_holes_dense(layer, 2)
    assert dense is not layer  # something was closed
    for a, b in zip((fast.rgb, fast.mask, fast.alpha, fast.depth), (dense.rgb, dense.mask, dense.alpha, dense.depth)):
        assert torch.allclose(a, b, atol=1e-6) if a.dtype != torch.bool else torch.equal(a, b)
    empty = DynamicLayer(torch.zeros(8, 8, 3), torch.zeros(8, 8, dtype=torch.bool), torch.zeros(8, 8), torch.zeros(8, 8))
    assert close_holes(empty, 2) is empty
