"""Suite ``selfcheck``: the harness and metrics score known perturbations of a ground-truth video correctly.

GT: a static natural-image background (scikit-image's astronaut) with a textured disk moving 3 px per frame
(its dynamic mask is exact), intensities kept in [0.2, 0.8] so that the perturbations below never clip.
Each "method" perturbs the GT; its expected score follows from the metric definitions by hand:

- identity: PSNR inf, SSIM 1 (all regions), flicker 0, DyCheck mPSNR inf / mSSIM 1, NVIDIA style inf / 1.
- offset +c: PSNR = -20 log10(c); flicker 0 (a constant offset does not change over time);
  SSIM = mean of 1 - c^2 / (mu^2 + (mu + c)^2 + C1) with mu in [0.2, 0.8], so 1 - c^2 / (2 * 0.2^2) < SSIM < 1.
- noise sigma s (i.i.d. Gaussian, seeded): PSNR ~ -20 log10(s); flicker ~ E|N(0, 2 s^2)| = 2 s / sqrt(pi).
- dynamic +0.1 (only inside the moving disk): PSNR_dynamic 20, PSNR_static inf, PSNR = -10 log10(0.01 a_t)
  averaged over frames (a_t = disk area fraction), flicker = 0.1 * mean_t |m_t+1 xor m_t| / (H W).
- alternating +-c per frame: PSNR = -20 log10(c), flicker exactly 2 c.
- LPIPS (only with local weights): 0 for identical images, > 0 otherwise; "missing" otherwise, not a failure.
"""
from __future__ import annotations

import math
import time

import cv2
import numpy as np

from .. import metrics
from ..registry import register_suite

SIZES = {"small": (96, 160), "bench": (270, 480)}
SPEED = 3  # disk motion, pixels per frame


def add_arguments(parser):
    parser.add_argument("--frames", type=int, default=6, help="GT video length (>= 2)")
    parser.add_argument("--noise-sigma", type=float, default=0.02, help="sigma of the noise check (<= 0.04)")


def gt_video(hw: tuple[int, int], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) float64 frames in [0.2, 0.8] and (T, H, W) bool dynamic masks."""
    from skimage import data

    h, w = hw
    background = cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_AREA) / 255.0
    yy, xx = np.mgrid[0:h, 0:w]
    radius = h / 5
    checker = (((xx // 4) + (yy // 4)) % 2).astype(np.float64)[..., None] * np.array([0.9, 0.3, 0.1])
    video, masks = [], []
    for t in range(frames):
        cx, cy = w / 4 + SPEED * t, h / 2
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        texture = np.roll(checker, SPEED * t, axis=1)  # the disk's texture moves with it
        video.append(np.where(disk[..., None], texture, background))
        masks.append(disk)
    return 0.2 + 0.6 * np.stack(video), np.stack(masks)


def _checks(gt: np.ndarray, dyn: np.ndarray, sigma: float):
    """(method, perturbed video, {metric: expectation}) with expectation a number (exact up to 1e-6, inf
    included) or a (low, high) interval."""
    rng = np.random.default_rng(0)
    c = 0.01
    area = dyn.reshape(len(dyn), -1).mean(axis=1)
    changed = (dyn[1:] ^ dyn[:-1]).reshape(len(dyn) - 1, -1).mean(axis=1)
    sign = np.where(np.arange(len(gt)) % 2 == 0, 1.0, -1.0)[:, None, None, None]
    noise_psnr = -20 * math.log10(sigma)
    return [
        ("identity", gt, {"psnr": math.inf, "ssim": 1.0, "psnr_dynamic": math.inf, "psnr_static": math.inf,
                          "ssim_dynamic": 1.0, "flicker": 0.0, "mpsnr": math.inf, "mssim": 1.0,
                          "nvidia_psnr": math.inf, "nvidia_ssim": 1.0}),
        (f"offset+{c}", gt + c, {"psnr": -20 * math.log10(c), "flicker": 0.0,
                                 "ssim": (1 - c**2 / (2 * 0.2**2), 1.0 - 1e-12)}),
        (f"noise{sigma}", gt + rng.normal(0, sigma, gt.shape),
         {"psnr": (noise_psnr - 0.1, noise_psnr + 0.1), "flicker": (0.97 * 2 * sigma / math.sqrt(math.pi),
                                                                    1.03 * 2 * sigma / math.sqrt(math.pi))}),
        ("dynamic+0.1", gt + 0.1 * dyn[..., None],
         {"psnr_dynamic": 20.0, "psnr_static": math.inf, "psnr": float(np.mean(-10 * np.log10(0.01 * area))),
          "flicker": float(0.1 * changed.mean())}),
        (f"alternating+-{c}", gt + c * sign, {"psnr": -20 * math.log10(c), "flicker": 2 * c}),
    ]


def _meets(value, expect) -> bool:
    if value is None or math.isnan(value):
        return False
    if isinstance(expect, tuple):
        return expect[0] <= value <= expect[1]
    return value == expect if math.isinf(expect) else abs(value - expect) <= 1e-6


def _describe(expect: dict) -> str:
    def one(v):
        return f"[{v[0]:.4g}, {v[1]:.4g}]" if isinstance(v, tuple) else f"{v:.6g}"

    return " ".join(f"{k}={one(v)}" for k, v in expect.items())


def _score(pred: np.ndarray, gt: np.ndarray, dyn: np.ndarray, covis: np.ndarray) -> dict:
    row = metrics.score_video(pred, gt, dyn)
    row["mpsnr"] = metrics.nanmean([metrics.mpsnr(p, g, covis) for p, g in zip(pred, gt)])
    row["mssim"] = metrics.nanmean([metrics.mssim(p, g, covis) for p, g in zip(pred, gt)])
    nvidia = [metrics.region_scores(p, g, style="nvidia") for p, g in zip(pred, gt)]
    row["nvidia_psnr"] = metrics.nanmean([s["psnr"] for s in nvidia])
    row["nvidia_ssim"] = metrics.nanmean([s["ssim"] for s in nvidia])
    row["lpips"] = metrics.lpips(pred[0], gt[0])  # None without local weights
    return row


@register_suite("selfcheck", "metrics and harness score known perturbations of a GT video as derived by hand",
                add_arguments=add_arguments)
def run(args) -> list[dict]:
    frames = max(2, int(getattr(args, "frames", 6)))
    sigma = float(getattr(args, "noise_sigma", 0.02))
    hw = SIZES[args.size]
    gt, dyn = gt_video(hw, frames)
    covis = np.ones(hw, bool)
    covis[:, : hw[1] // 10] = False  # a covisibility mask with an unseen strip, as in DyCheck
    scene = f"astronaut-disk-{hw[1]}x{hw[0]}"
    rows = []
    for method, pred, expect in _checks(gt, dyn, sigma):
        start = time.perf_counter()
        row = {"scene": scene, "protocol": "selfcheck", "method": method, **_score(pred, gt, dyn, covis)}
        row["seconds_per_frame"] = (time.perf_counter() - start) / frames
        row["passed"] = all(_meets(row[k], v) for k, v in expect.items())
        row["expect"] = _describe(expect)
        rows.append(row)
    rows.append(_lpips_row(scene, gt, sigma))
    return rows


def _lpips_row(scene: str, gt: np.ndarray, sigma: float) -> dict:
    row = {"scene": scene, "protocol": "selfcheck", "method": "lpips", "lpips": None}
    if metrics.lpips_status() != "ok":
        row.update(passed=None, expect="LPIPS weights missing: not scored")
        return row
    noisy = np.clip(gt[0] + np.random.default_rng(1).normal(0, sigma, gt[0].shape), 0, 1)
    same, row["lpips"] = metrics.lpips(gt[0], gt[0]), metrics.lpips(noisy, gt[0])
    row.update(passed=bool(abs(same) < 1e-6 < row["lpips"]), expect="lpips(gt, gt)=0 < lpips(noisy, gt)")
    return row
