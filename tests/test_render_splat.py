"""Softmax splatting: identity for zero flow, bilinear kernel, softmax weighting, parity with the loop twin."""
import math

import pytest
import torch

from pgdvs.render.splat import (softmax_splat, softmax_splat_density, softmax_splat_image, softmax_splat_reference,
                                splat_density)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_zero_flow_is_identity():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(9, 13, 4, generator=gen)
    metric = -3 * torch.rand(9, 13, generator=gen)
    out = softmax_splat_image(image, torch.zeros(9, 13, 2), metric)
    # out = v e^Z / (e^Z + 1e-7): identity up to 1e-7 / e^-3 relative
    assert torch.allclose(out, image, atol=1e-5)


def test_bilinear_kernel_and_softmax_weights():
    hw = (3, 4)
    values = torch.tensor([[1.0], [0.0]])
    uv = torch.tensor([[1.25, 1.0], [1.0, 1.0]])  # first sample: 0.75 to (1, 1), 0.25 to (2, 1)
    metric = torch.tensor([0.0, math.log(3.0)])  # second sample weighs 3x
    out = softmax_splat(values, uv, metric, hw)[..., 0]
    assert abs(float(out[1, 1]) - 0.75 / (0.75 + 3.0 + 1e-7)) < 1e-6
    assert abs(float(out[1, 2]) - 1.0) < 1e-6  # only the first sample reaches (2, 1)
    assert out[0].abs().sum() == 0 and out[2].abs().sum() == 0
    dens = splat_density(uv, hw)
    assert torch.allclose(dens[1], torch.tensor([0.0, 1.75, 0.25, 0.0]))


def test_out_of_image_and_nonfinite_samples_are_dropped():
    values = torch.ones(3, 1)
    uv = torch.tensor([[-0.5, 0.0], [float("inf"), 0.0], [3.5, 1.0]])  # half in, skipped, half in
    out = softmax_splat(values, uv, torch.zeros(3), (2, 4))[..., 0]
    assert torch.allclose(out, torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]), atol=1e-6)
    assert torch.isfinite(out).all()


def test_density_from_the_same_scatter_equals_splat_density():
    gen = torch.Generator().manual_seed(5)
    values = torch.rand(300, 2, generator=gen)
    uv = torch.rand(300, 2, generator=gen) * torch.tensor([12.0, 8.0]) - 1.0
    uv[3] = float("nan")
    metric = -5 * torch.rand(300, generator=gen)
    cover = torch.rand(300, generator=gen) > 0.3  # the samples of "the surface"; the others only splat colour
    out, density = softmax_splat_density(values, uv, metric, (7, 11), cover.float())
    assert torch.equal(out, softmax_splat(values, uv, metric, (7, 11)))
    assert torch.equal(density, splat_density(uv[cover], (7, 11)))


def test_matches_loop_reference():
    gen = torch.Generator().manual_seed(3)
    values = torch.rand(200, 3, generator=gen)
    uv = torch.rand(200, 2, generator=gen) * torch.tensor([12.0, 8.0]) - 1.0
    metric = -100 * torch.rand(200, generator=gen)  # down to e^-100 ~ 4e-44, where the 1e-7 term dominates
    fast = softmax_splat(values, uv, metric, (7, 11))
    ref = softmax_splat_reference(values, uv, metric, (7, 11))
    assert torch.allclose(fast, ref, atol=1e-5)


@cuda
def test_cpu_cuda_parity():
    gen = torch.Generator().manual_seed(4)
    values = torch.rand(5000, 3, generator=gen)
    uv = torch.rand(5000, 2, generator=gen) * 60
    metric = -10 * torch.rand(5000, generator=gen)
    a = softmax_splat(values, uv, metric, (64, 64))
    b = softmax_splat(values.cuda(), uv.cuda(), metric.cuda(), (64, 64)).cpu()
    assert torch.allclose(a, b, atol=1e-5)  # atomics on CUDA change the summation order only
