"""Image and video quality metrics (numpy / scipy on CPU; LPIPS in torch).

Inputs: images (H, W, C) or (H, W) float in [0, 1], numpy or torch; masks (H, W) or (H, W, 1), bool or {0, 1}.
Results are Python floats. Definitions, so that every number in a table means one thing:

- ``psnr``: MSE over the masked pixels x channels, ``10 log10(data_range^2 / MSE)``; ``inf`` when MSE = 0,
  ``nan`` when the mask is empty.
- ``ssim``: Gaussian window (11 taps, sigma 1.5), k1 = 0.01, k2 = 0.03, population covariance, reflect padding,
  one map per channel averaged over channels. The score is the mean of the map with a 5-pixel border left out
  (scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``);
  with a mask, the masked mean over that same interior.
- ``style="nvidia"`` (:func:`region_scores`): the original's NVIDIA/DynIBaR evaluator. Both images are quantised
  to uint8 by truncation first; SSIM is scikit-image's default (7x7 uniform window, sample covariance) with
  ``data_range=2.0``, masked mean over the full map. (The original returns PSNR 0 for identical images; here inf.)
- ``mpsnr`` / ``mssim``: DyCheck's iPhone protocol (``pgdvs-method.md`` 11.2), see their docstrings.
- ``flicker``: temporal error of a rendered video against ground truth, see its docstring.
- ``lpips``: AlexNet LPIPS v0.1, only when its weights exist locally (:func:`lpips_weights`); otherwise ``None``.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError

SSIM_TAPS = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
STYLES = ("default", "nvidia")

LPIPS_ENV = "PGDVS_LPIPS_DIR"
LPIPS_DEFAULT_DIR = Path("~/.cache/pgdvs/lpips")
LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet state dict
LPIPS_HEADS = "alex.pth"  # LPIPS v0.1 linear heads: lin{0..4}.model.1.weight, (1, C, 1, 1) each
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


# ---------------------------------------------------------------- inputs


def as_image(x, name: str = "image") -> np.ndarray:
    """numpy or torch (H, W[, C]) -> float64 (H, W, C)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise InputError(f"{name} must be (H, W) or (H, W, C), got shape {x.shape}")
    return x


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = as_image(pred, "pred"), as_image(gt, "gt")
    if pred.shape != gt.shape:
        raise InputError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    return pred, gt


def as_mask(mask, hw: tuple[int, int]) -> np.ndarray | None:
    """None or (H, W[, 1]) -> None or bool (H, W)."""
    if mask is None:
        return None
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.shape != tuple(hw):
        raise InputError(f"mask has shape {mask.shape}, expected {tuple(hw)}")
    return mask > 0


def quantize_uint8(image: np.ndarray) -> np.ndarray:
    """What the original evaluator does before scoring: clip, ``(x * 255).byte()`` (truncation), back to [0, 1]."""
    return np.floor(np.clip(image, 0.0, 1.0) * 255.0) / 255.0


def masked_mean(values: np.ndarray, mask: np.ndarray | None) -> float:
    """Mean of (H, W[, C]) values over mask (H, W) (broadcast over C); nan for an empty mask."""
    if mask is None:
        return float(values.mean())
    weight = np.broadcast_to(mask.reshape(mask.shape + (1,) * (values.ndim - 2)), values.shape)
    count = weight.sum()
    return float((values * weight).sum() / count) if count else float("nan")


# ---------------------------------------------------------------- PSNR / SSIM


def psnr(pred, gt, mask=None, data_range: float = 1.0) -> float:
    """PSNR in dB. pred, gt (H, W[, C]); mask (H, W) selects pixels (all channels)."""
    pred, gt = _pair(pred, gt)
    mse = masked_mean((pred - gt) ** 2, as_mask(mask, pred.shape[:2]))
    if np.isnan(mse):
        return float("nan")
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def gaussian_kernel(taps: int = SSIM_TAPS, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian, (taps,), centred on the middle tap."""
    x = np.arange(taps) - (taps - 1) / 2
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _ssim_from_moments(mu0, mu1, e00, e11, e01, data_range: float, clip: bool) -> np.ndarray:
    """SSIM map from filtered means and filtered second moments E[xy]."""
    s00, s11, s01 = e00 - mu0 * mu0, e11 - mu1 * mu1, e01 - mu0 * mu1
    if clip:  # DyCheck / mip-NeRF: keep (co)variances feasible despite round-off
        s00, s11 = np.maximum(s00, 0.0), np.maximum(s11, 0.0)
        s01 = np.sign(s01) * np.minimum(np.sqrt(s00 * s11), np.abs(s01))
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu0 * mu1 + c1) * (2 * s01 + c2)) / ((mu0**2 + mu1**2 + c1) * (s00 + s11 + c2))


def ssim_map(pred, gt, data_range: float = 1.0) -> np.ndarray:
    """Per-pixel SSIM (H, W), channel-averaged; Gaussian window with reflect padding."""
    pred, gt = _pair(pred, gt)
    kernel = gaussian_kernel()

    def blur(z):
        return ndimage.correlate1d(ndimage.correlate1d(z, kernel, axis=0, mode="reflect"), kernel, axis=1,
                                   mode="reflect")

    smap = _ssim_from_moments(blur(pred), blur(gt), blur(pred * pred), blur(gt * gt), blur(pred * gt),
                              data_range, clip=False)
    return smap.mean(axis=-1)


def ssim(pred, gt, mask=None, data_range: float = 1.0) -> float:
    """Mean SSIM over the image interior (5-pixel border excluded), or the masked mean there; nan if empty."""
    pred, gt = _pair(pred, gt)
    return _interior_mean(ssim_map(pred, gt, data_range), as_mask(mask, pred.shape[:2]))


def _interior_mean(smap: np.ndarray, mask: np.ndarray | None) -> float:
    pad = SSIM_TAPS // 2
    inner = (slice(pad, -pad), slice(pad, -pad))
    return masked_mean(smap[inner], None if mask is None else mask[inner])


def nvidia_ssim_map(pred, gt) -> np.ndarray:
    """The original NVIDIA evaluator's SSIM map (H, W, C): scikit-image defaults (7x7 uniform window, sample
    covariance) with data_range 2.0. Quantise first (:func:`quantize_uint8`) to reproduce it exactly."""
    from skimage.metrics import structural_similarity

    pred, gt = _pair(pred, gt)
    return structural_similarity(gt, pred, channel_axis=-1, full=True, data_range=2.0)[1]


def nvidia_ssim(pred, gt, mask=None) -> float:
    """Masked mean of :func:`nvidia_ssim_map` over the full map."""
    smap = nvidia_ssim_map(pred, gt)
    return masked_mean(smap, as_mask(mask, smap.shape[:2]))


def region_scores(pred, gt, dyn_mask=None, style: str = "default") -> dict[str, float]:
    """PSNR and SSIM on the full image, the dynamic region (dyn_mask) and the static region (~dyn_mask).

    pred, gt (H, W, 3); dyn_mask (H, W) or None (then the region scores are nan).
    Returns keys psnr, ssim, psnr_dynamic, ssim_dynamic, psnr_static, ssim_static.
    """
    if style not in STYLES:
        raise InputError(f"style must be one of {STYLES}, got {style!r}")
    pred, gt = _pair(pred, gt)
    if style == "nvidia":
        pred, gt = quantize_uint8(pred), quantize_uint8(gt)
        smap = nvidia_ssim_map(pred, gt)

        def score_ssim(mask):
            return masked_mean(smap, mask)
    else:
        smap = ssim_map(pred, gt)

        def score_ssim(mask):
            return _interior_mean(smap, mask)

    dyn = as_mask(dyn_mask, pred.shape[:2])
    out = {"psnr": psnr(pred, gt), "ssim": score_ssim(None)}
    for name, region in (("dynamic", dyn), ("static", None if dyn is None else ~dyn)):
        if region is None:
            out[f"psnr_{name}"] = out[f"ssim_{name}"] = float("nan")
        else:
            out[f"psnr_{name}"] = psnr(pred, gt, region)
            out[f"ssim_{name}"] = score_ssim(region)
    return out


# ---------------------------------------------------------------- DyCheck


def mpsnr(pred, gt, mask=None) -> float:
    """DyCheck masked PSNR: ``-10 log10(sum m (a-b)^2 / max(sum m, 1e-6))`` with m broadcast over channels.
    An empty mask gives nan (DyCheck's formula would give inf)."""
    pred, gt = _pair(pred, gt)
    err = (pred - gt) ** 2
    mask = as_mask(mask, pred.shape[:2])
    if mask is None:
        mse = err.mean()
    else:
        weight = np.broadcast_to(mask[..., None], err.shape)
        if not weight.any():
            return float("nan")
        mse = (err * weight).sum() / max(weight.sum(), 1e-6)
    return float("inf") if mse == 0 else float(-10.0 * np.log10(mse))


def _valid_correlate(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """1-D correlation along ``axis`` in "valid" mode (output shorter by taps - 1), odd taps."""
    r = len(kernel) // 2
    full = ndimage.correlate1d(x, kernel, axis=axis, mode="constant")
    return full.take(np.arange(r, x.shape[axis] - r), axis=axis)


def _partial_passes(m: np.ndarray, taps: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per pass of DyCheck's masked blur (x first, then y): (axis, mask in, box count of that mask)."""
    passes = []
    for axis in (1, 0):
        count = _valid_correlate(m, np.ones(taps), axis)
        passes.append((axis, m, count))
        m = (count != 0).astype(np.float64)
    return passes


def _partial_blur(z: np.ndarray, passes, kernel: np.ndarray) -> np.ndarray:
    """DyCheck's masked separable blur: per pass filter z*m, rescale by taps / (box count of m) and zero where
    the window holds no masked pixel; the next pass uses that "window had a pixel" mask.
    z (H, W, C) -> (H - taps + 1, W - taps + 1, C)."""
    taps = len(kernel)
    for axis, m, count in passes:
        z_sum = _valid_correlate(z * m[..., None], kernel, axis)
        z = np.where(count[..., None] != 0, z_sum * taps / np.where(count != 0, count, 1)[..., None], 0.0)
    return z


def mssim(pred, gt, mask=None, max_val: float = 1.0) -> float:
    """DyCheck masked SSIM (its ``compute_ssim``): Gaussian 11 taps sigma 1.5, partial-convolution masked
    filtering in valid mode, variances clipped at 0 and covariance to +-sqrt(s00 s11), map averaged over the
    whole valid region. Windows with no masked pixel score exactly 1 there (DyCheck's behaviour, kept)."""
    pred, gt = _pair(pred, gt)
    mask = as_mask(mask, pred.shape[:2])
    m = np.ones(pred.shape[:2]) if mask is None else mask.astype(np.float64)
    kernel = gaussian_kernel()
    passes = _partial_passes(m, len(kernel))
    mu0, mu1, e00, e11, e01 = (_partial_blur(z, passes, kernel) for z in (pred, gt, pred * pred, gt * gt, pred * gt))
    return float(_ssim_from_moments(mu0, mu1, e00, e11, e01, max_val, clip=True).mean())


# ---------------------------------------------------------------- temporal


def flicker(pred, gt=None, mask=None) -> float:
    """Temporal flicker of a rendered video.

    pred, gt (T, H, W, C) frames in [0, 1] along one camera path; mask (T, H, W) or None.
    For each consecutive pair, e_t = |(pred[t+1] - pred[t]) - (gt[t+1] - gt[t])|: the change the render shows
    that the true scene does not (true motion compensated by subtracting the GT change). Without gt the GT
    change is taken as 0 (a static scene seen from a fixed camera). flicker = mean over pairs t of the mean of
    e_t over pixels in mask[t] & mask[t+1] and channels; pairs with an empty mask are skipped; nan if none is
    left. Same units as the images (0.01 = 1 % of the range, per frame step).
    """
    pred = _video(pred, "pred")
    diff = np.diff(pred, axis=0)
    if gt is not None:
        gt = _video(gt, "gt")
        if gt.shape != pred.shape:
            raise InputError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
        diff = diff - np.diff(gt, axis=0)
    if mask is not None:
        mask = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask) > 0
        if mask.shape != pred.shape[:3]:
            raise InputError(f"mask has shape {mask.shape}, expected {pred.shape[:3]}")
    per_pair = [masked_mean(np.abs(d), None if mask is None else mask[t] & mask[t + 1]) for t, d in enumerate(diff)]
    per_pair = [v for v in per_pair if not np.isnan(v)]
    return float(np.mean(per_pair)) if per_pair else float("nan")


def _video(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] < 2:
        raise InputError(f"{name} must be (T, H, W[, C]) with T >= 2, got shape {x.shape}")
    return x


# ---------------------------------------------------------------- LPIPS


def lpips_weights(weights_dir: str | Path | None = None) -> tuple[Path, Path] | None:
    """Locate (backbone, heads) weight files, or None when either is missing.

    Looked for in ``weights_dir``, else ``$PGDVS_LPIPS_DIR``, else ``~/.cache/pgdvs/lpips``; the backbone
    may also come from torch's hub cache (``$TORCH_HOME/hub/checkpoints``), where torchvision stores it.
    """
    folder = Path(weights_dir or os.environ.get(LPIPS_ENV) or LPIPS_DEFAULT_DIR).expanduser()
    heads = folder / LPIPS_HEADS
    backbone = folder / LPIPS_BACKBONE
    if not heads.is_file():
        return None  # decided before importing torch (seconds) for the hub path
    if not backbone.is_file():
        import torch

        backbone = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE
    return (backbone, heads) if backbone.is_file() else None


def lpips_status(weights_dir: str | Path | None = None) -> str:
    """"ok" or "missing" (what a results table shows instead of a number)."""
    return "ok" if lpips_weights(weights_dir) else "missing"


@functools.lru_cache(maxsize=2)
def _lpips_net(backbone: Path, heads: Path):
    import torch
    import torchvision

    with torch.device("meta"):  # skip initialising the 58M-parameter classifier LPIPS never uses
        features = torchvision.models.alexnet(weights=None).features
    state = torch.load(backbone, map_location="cpu")
    features.load_state_dict({k[len("features."):]: v.float() for k, v in state.items() if k.startswith("features.")},
                             assign=True)
    head_state = torch.load(heads, map_location="cpu")
    slices = [features[0:2], features[2:5], features[5:8], features[8:10], features[10:12]]
    weights = [head_state[f"lin{i}.model.1.weight"].float() for i in range(len(slices))]
    return torch.nn.ModuleList(slices).eval(), weights


def _lpips_layer_maps(pred: np.ndarray, gt: np.ndarray, files: tuple[Path, Path]):
    """Per-layer LPIPS distance maps [(1, 1, h_l, w_l)] for (H, W, 3) images in [0, 1]."""
    import torch

    slices, weights = _lpips_net(*files)
    shift = torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1)
    x = torch.from_numpy(np.stack([pred, gt])).float().permute(0, 3, 1, 2)
    x = ((x * 2 - 1) - shift) / scale
    maps = []
    with torch.no_grad():
        for block, w in zip(slices, weights):
            x = block(x)
            unit = x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            maps.append(((unit[:1] - unit[1:]) ** 2 * w).sum(dim=1, keepdim=True))
    return maps


def lpips(pred, gt, mask=None, weights_dir=None) -> float | None:
    """AlexNet LPIPS v0.1 of (H, W, 3) images in [0, 1]; None when the weights are missing (never a stand-in).

    With a mask (the original NVIDIA evaluator): the mask is nearest-resized to each layer and each layer map
    is mask-averaged before the sum over layers.
    """
    import torch
    import torch.nn.functional as F

    files = lpips_weights(weights_dir)
    if files is None:
        return None
    pred, gt = _pair(pred, gt)
    mask = as_mask(mask, pred.shape[:2])
    total = 0.0
    for layer in _lpips_layer_maps(pred, gt, files):
        if mask is None:
            total += float(layer.mean())
            continue
        m = F.interpolate(torch.from_numpy(mask).float()[None, None], size=layer.shape[-2:], mode="nearest")
        total += float((layer * m).sum() / m.sum()) if m.sum() > 0 else float("nan")
    return total


def mlpips(pred, gt, mask=None, weights_dir=None) -> float | None:
    """DyCheck masked LPIPS: images multiplied by the mask, spatial LPIPS map (each layer bilinearly upsampled
    to H x W and summed), masked mean. None when the weights are missing."""
    import torch.nn.functional as F

    files = lpips_weights(weights_dir)
    if files is None:
        return None
    pred, gt = _pair(pred, gt)
    mask = as_mask(mask, pred.shape[:2])
    m = np.ones(pred.shape[:2], bool) if mask is None else mask
    maps = _lpips_layer_maps(pred * m[..., None], gt * m[..., None], files)
    spatial = sum(F.interpolate(layer, size=pred.shape[:2], mode="bilinear", align_corners=False) for layer in maps)
    return masked_mean(spatial[0, 0].numpy()[..., None].astype(np.float64), m)


# ---------------------------------------------------------------- one video


def score_video(pred, gt, dyn_mask=None, style: str = "default") -> dict[str, float]:
    """Standard row metrics for frames rendered along one camera path.

    pred, gt (T, H, W, 3); dyn_mask (T, H, W) or None. Returns the mean over frames of :func:`region_scores`
    (PSNR averaged in dB, as the benchmarks do) plus ``flicker`` (all pixels) and ``flicker_dynamic``
    (pixels dynamic in both frames of a pair), both against the GT frames.
    """
    pred, gt = _video(pred, "pred"), _video(gt, "gt")
    if pred.shape != gt.shape:
        raise InputError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    masks = [None] * len(pred) if dyn_mask is None else list(np.asarray(dyn_mask) > 0)
    if len(masks) != len(pred):
        raise InputError(f"dyn_mask has {len(masks)} frames for {len(pred)}")
    per_frame = [region_scores(p, g, m, style) for p, g, m in zip(pred, gt, masks)]
    out = {k: nanmean([s[k] for s in per_frame]) for k in per_frame[0]}
    out["flicker"] = flicker(pred, gt)
    out["flicker_dynamic"] = float("nan") if dyn_mask is None else flicker(pred, gt, np.asarray(dyn_mask))
    return out


def nanmean(values) -> float:
    """Mean of the non-nan values (inf stays inf); nan if none."""
    kept = [float(v) for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")
