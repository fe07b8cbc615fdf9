"""Metrics against hand-computed values and reference implementations (scikit-image, DyCheck's algorithm)."""
import math

import numpy as np
import pytest
import scipy.signal
import torch
from skimage.metrics import structural_similarity

from pgdvs.bench import metrics as M
from pgdvs.errors import InputError

C1, C2 = (0.01) ** 2, (0.03) ** 2


def _rand(shape, seed=0):
    return np.random.default_rng(seed).random(shape)


# ---------------------------------------------------------------- PSNR


@pytest.mark.parametrize("offset, expected", [(0.1, 20.0), (0.01, 40.0), (0.05, 26.0206)])
def test_psnr_of_constant_offset(offset, expected):
    gt = np.full((8, 9, 3), 0.4)
    assert M.psnr(gt + offset, gt) == pytest.approx(expected, abs=1e-4)


def test_psnr_identical_is_inf_and_empty_mask_is_nan():
    x = _rand((6, 7, 3))
    assert M.psnr(x, x) == math.inf
    assert math.isnan(M.psnr(x, x + 0.1, np.zeros((6, 7), bool)))


def test_psnr_masked_hand_case():
    gt = np.zeros((4, 4, 3))
    pred = gt.copy()
    pred[:2] = 0.1  # top rows: error 0.1
    pred[2:] = 0.2  # bottom rows: error 0.2
    top = np.zeros((4, 4), bool)
    top[:2] = True
    assert M.psnr(pred, gt, top) == pytest.approx(20.0)
    assert M.psnr(pred, gt, ~top) == pytest.approx(-10 * math.log10(0.04))
    assert M.psnr(pred, gt) == pytest.approx(-10 * math.log10((0.01 + 0.04) / 2))
    assert M.psnr(pred, gt, top[..., None]) == pytest.approx(20.0)  # (H, W, 1) masks too
    assert M.psnr(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(top)) == pytest.approx(20.0)


def test_psnr_data_range():
    gt = np.full((5, 5, 3), 100.0)
    assert M.psnr(gt + 2.55, gt, data_range=255.0) == pytest.approx(40.0)


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="same shape"):
        M.psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(InputError, match="mask has shape"):
        M.ssim(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), np.ones((16, 15), bool))


# ---------------------------------------------------------------- SSIM


def test_ssim_identical_is_one():
    x = _rand((20, 30, 3))
    assert M.ssim(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(40, 50, 3), (33, 47), (24, 24, 1)])
def test_ssim_matches_skimage(shape):
    a = _rand(shape, 1)
    b = np.clip(a + np.random.default_rng(2).normal(0, 0.1, shape), 0, 1)
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    if len(shape) == 3:
        kwargs["channel_axis"] = -1
    expected = structural_similarity(a, b, **kwargs)
    assert abs(M.ssim(a, b) - expected) < 1e-3
    assert M.ssim(a, b) == pytest.approx(expected, abs=1e-9)  # in fact the same algorithm


def test_ssim_of_constant_images_is_the_luminance_term():
    # constant images: no variance, so SSIM = (2 mu0 mu1 + C1) / (mu0^2 + mu1^2 + C1)
    mu0, mu1 = 0.6, 0.5
    expected = (2 * mu0 * mu1 + C1) / (mu0**2 + mu1**2 + C1)
    assert M.ssim(np.full((16, 16, 3), mu0), np.full((16, 16, 3), mu1)) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(1 - 0.01 / (0.36 + 0.25 + C1))


def test_ssim_masked_mean_of_the_map():
    a = _rand((40, 60, 3), 3)
    b = a.copy()
    b[:, 30:] = _rand((40, 30, 3), 4)  # right half differs
    far_left = np.zeros((40, 60), bool)
    far_left[:, :20] = True  # > 5 px (window radius) from the changed half
    assert M.ssim(a, b, far_left) == pytest.approx(1.0, abs=1e-12)
    assert M.ssim(a, b, np.ones((40, 60), bool)) == pytest.approx(M.ssim(a, b), abs=1e-12)
    assert M.ssim(a, b, ~far_left) < 0.9
    assert math.isnan(M.ssim(a, b, np.zeros((40, 60), bool)))


# ---------------------------------------------------------------- NVIDIA style


def test_quantize_truncates_like_byte():
    x = np.array([0.0, (10 + 0.5) / 255, (10 + 0.999) / 255, 1.0, 1.3, -0.2])
    assert np.array_equal(M.quantize_uint8(x) * 255, [0, 10, 10, 255, 255, 0])


def test_nvidia_style_scores():
    x = _rand((30, 40, 3), 5)
    dyn = np.zeros((30, 40), bool)
    dyn[10:20, 10:20] = True
    same = M.region_scores(x, x, dyn, style="nvidia")
    assert same["psnr"] == same["psnr_dynamic"] == same["psnr_static"] == math.inf
    assert same["ssim"] == pytest.approx(1.0)
    # constant images a known number of grey levels apart; skimage default with data_range 2: C1 = (0.02)^2
    g0, g1 = np.full((20, 20, 3), 100.5 / 255), np.full((20, 20, 3), 120.5 / 255)
    q0, q1 = 100 / 255, 120 / 255
    scores = M.region_scores(g1, g0, style="nvidia")
    assert scores["psnr"] == pytest.approx(-20 * math.log10(20 / 255))
    c1 = (0.01 * 2.0) ** 2
    assert scores["ssim"] == pytest.approx((2 * q0 * q1 + c1) / (q0**2 + q1**2 + c1), abs=1e-9)


def test_nvidia_ssim_is_the_masked_mean_of_skimage_default_map():
    a, b = _rand((30, 40, 3), 6), _rand((30, 40, 3), 7)
    m = _rand((30, 40), 8) > 0.5
    _, smap = structural_similarity(a, b, channel_axis=-1, full=True, data_range=2.0)
    assert M.nvidia_ssim(a, b, m) == pytest.approx(smap[m].mean(), abs=1e-12)


def test_region_scores_keys_and_regions():
    gt = np.full((40, 20, 3), 0.5)
    pred = gt.copy()
    dyn = np.zeros((40, 20), bool)
    dyn[:20] = True
    pred[dyn] += 0.1
    s = M.region_scores(pred, gt, dyn)
    assert s["psnr_dynamic"] == pytest.approx(20.0)
    assert s["psnr_static"] == math.inf
    # SSIM windows straddle the region border, so only the far interior of a region is exact
    far_static = np.zeros((40, 20), bool)
    far_static[26:] = True
    assert M.ssim(pred, gt, far_static) == pytest.approx(1.0)
    assert s["psnr"] == pytest.approx(-10 * math.log10(0.01 / 2))
    none = M.region_scores(pred, gt)
    assert math.isnan(none["psnr_dynamic"]) and math.isnan(none["ssim_static"])
    with pytest.raises(InputError, match="style"):
        M.region_scores(pred, gt, style="dycheck")


# ---------------------------------------------------------------- DyCheck


def _dycheck_mssim_reference(a, b, m):
    """Straight transliteration of DyCheck's compute_ssim with scipy.signal.convolve2d (2-D calls per channel)."""
    taps = 11
    x = np.arange(taps) - 5
    f = np.exp(-0.5 * (x / 1.5) ** 2)
    f /= f.sum()

    def conv(z, mm, k):
        z_ = scipy.signal.convolve2d(z * mm, k, mode="valid")
        m_ = scipy.signal.convolve2d(mm, np.ones_like(k), mode="valid")
        return np.where(m_ != 0, z_ * np.ones_like(k).sum() / np.where(m_ != 0, m_, 1), 0), (m_ != 0).astype(float)

    def blur(z):
        out = []
        for c in range(z.shape[-1]):
            zc, mc = conv(z[..., c], m, f[None, :])
            zc, _ = conv(zc, mc, f[:, None])
            out.append(zc)
        return np.stack(out, -1)

    mu0, mu1 = blur(a), blur(b)
    s00 = np.maximum(0, blur(a * a) - mu0**2)
    s11 = np.maximum(0, blur(b * b) - mu1**2)
    s01 = blur(a * b) - mu0 * mu1
    s01 = np.sign(s01) * np.minimum(np.sqrt(s00 * s11), np.abs(s01))
    smap = ((2 * mu0 * mu1 + C1) * (2 * s01 + C2)) / ((mu0**2 + mu1**2 + C1) * (s00 + s11 + C2))
    return smap.mean()


def test_mssim_matches_dycheck_algorithm_with_mask():
    a, b = _rand((30, 44, 3), 9), _rand((30, 44, 3), 10)
    m = np.zeros((30, 44), bool)
    m[5:25, 3:30] = True
    m[12:16, 8:12] = False  # a hole
    assert M.mssim(a, b, m) == pytest.approx(_dycheck_mssim_reference(a, b, m.astype(float)), abs=1e-10)


def test_mssim_without_mask_equals_ssim_and_identity_is_one():
    a, b = _rand((32, 32, 3), 11), _rand((32, 32, 3), 12)
    assert M.mssim(a, b) == pytest.approx(M.ssim(a, b), abs=1e-12)  # valid region = skimage's cropped interior
    m = np.zeros((32, 32), bool)
    m[:, :16] = True
    assert M.mssim(a, a, m) == pytest.approx(1.0, abs=1e-12)
    # windows with no masked pixel count as SSIM 1 in DyCheck: a mask seeing only the left strip of random
    # images scores higher than the unmasked SSIM
    assert M.mssim(a, b, m) > M.mssim(a, b)


def test_mpsnr_is_masked_mse_over_pixels_and_channels():
    gt = np.zeros((4, 4, 3))
    pred = gt.copy()
    pred[0, 0] = [0.1, 0.1, 0.1]
    pred[3, 3] = [0.3, 0.0, 0.0]
    m = np.zeros((4, 4), bool)
    m[0, 0] = m[3, 3] = True
    expected = -10 * math.log10((3 * 0.01 + 0.09) / 6)
    assert M.mpsnr(pred, gt, m) == pytest.approx(expected)
    assert M.mpsnr(pred, gt, m[..., None].astype(np.float32)) == pytest.approx(expected)
    assert M.mpsnr(pred, gt) == pytest.approx(-10 * math.log10((0.03 + 0.09) / 48))
    assert math.isnan(M.mpsnr(pred, gt, np.zeros((4, 4), bool)))
    assert M.mpsnr(gt, gt, m) == math.inf


# ---------------------------------------------------------------- flicker


def _moving_video(t=5, hw=(12, 16)):
    base = _rand(hw + (3,), 13)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(t)]) * 0.6 + 0.2


def test_flicker_hand_values():
    gt = _moving_video()
    assert M.flicker(gt, gt) == 0.0  # true motion is compensated
    assert M.flicker(gt + 0.05, gt) == pytest.approx(0.0, abs=1e-15)  # constant bias is not flicker
    sign = np.array([1, -1, 1, -1, 1], float)[:, None, None, None]
    assert M.flicker(gt + 0.01 * sign, gt) == pytest.approx(0.02)
    # without GT: a fixed camera on a static scene
    still = np.repeat(gt[:1], 5, axis=0)
    assert M.flicker(still) == 0.0
    assert M.flicker(still + 0.01 * sign) == pytest.approx(0.02)


def test_flicker_mask_restricts_pixels_and_pairs():
    gt = np.zeros((3, 4, 4, 1))
    pred = gt.copy()
    pred[1, 0, 0] = 0.4  # one pixel blinks in frame 1
    mask = np.ones((3, 4, 4), bool)
    # pairs (0,1) and (1,2) each see |0.4| at one of 16 pixels
    assert M.flicker(pred, gt, mask) == pytest.approx(0.4 / 16)
    mask[:, 0, 0] = False
    assert M.flicker(pred, gt, mask) == 0.0
    only_first = np.zeros((3, 4, 4), bool)
    only_first[0, 0, 0] = only_first[1, 0, 0] = True  # pair (1,2) empty -> skipped
    assert M.flicker(pred, gt, only_first) == pytest.approx(0.4)
    assert math.isnan(M.flicker(pred, gt, np.zeros((3, 4, 4), bool)))
    with pytest.raises(InputError, match="T >= 2"):
        M.flicker(pred[:1], gt[:1])


def test_score_video_row():
    gt = _moving_video()
    dyn = np.zeros(gt.shape[:3], bool)
    dyn[:, :6] = True
    pred = gt + 0.1 * dyn[..., None]
    row = M.score_video(pred, gt, dyn)
    assert row["psnr_dynamic"] == pytest.approx(20.0) and row["psnr_static"] == math.inf
    # the error does not change over time: no flicker
    assert row["flicker"] == pytest.approx(0, abs=1e-15)
    assert row["flicker_dynamic"] == pytest.approx(0, abs=1e-15)
    assert set(row) >= {"psnr", "ssim", "psnr_dynamic", "psnr_static", "ssim_dynamic", "ssim_static", "flicker"}


# ---------------------------------------------------------------- LPIPS


def test_lpips_missing_weights_returns_none(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(M.LPIPS_ENV, str(tmp_path / "none"))
    x = _rand((32, 32, 3))
    assert M.lpips_weights() is None and M.lpips_status() == "missing"
    assert M.lpips(x, x) is None and M.mlpips(x, x) is None


@pytest.fixture
def random_lpips_weights(tmp_path):
    """Random (not ImageNet) weights in the real file layout: exercises loading and the arithmetic only."""
    import torchvision

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.alexnet(weights=None).state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    backbone = {k: torch.randn(s, generator=gen) * 0.05 for k, s in shapes.items() if k.startswith("features.")}
    torch.save(backbone, tmp_path / M.LPIPS_BACKBONE)
    channels = (64, 192, 384, 256, 256)
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for i, c in enumerate(channels)}
    torch.save(heads, tmp_path / M.LPIPS_HEADS)
    return tmp_path


def test_lpips_with_weights(random_lpips_weights):
    d = random_lpips_weights
    a, b = _rand((64, 64, 3), 14), _rand((64, 64, 3), 15)
    assert M.lpips_status(d) == "ok"
    assert M.lpips(a, a, weights_dir=d) == pytest.approx(0.0, abs=1e-9)
    far, near = M.lpips(a, b, weights_dir=d), M.lpips(a, np.clip(a + 0.01, 0, 1), weights_dir=d)
    assert far > near > 0
    ones = np.ones((64, 64), bool)
    assert M.lpips(a, b, ones, weights_dir=d) == pytest.approx(far, rel=1e-6)
    assert M.mlpips(a, a, ones, weights_dir=d) == pytest.approx(0.0, abs=1e-9)
    half = np.zeros((64, 64), bool)
    half[:, :32] = True
    # mlpips zeroes the images outside the mask: differences there cannot count
    b_left_same = a.copy()
    b_left_same[:, 40:] = b[:, 40:]
    assert M.mlpips(a, b_left_same, half, weights_dir=d) < M.mlpips(a, b, half, weights_dir=d)
