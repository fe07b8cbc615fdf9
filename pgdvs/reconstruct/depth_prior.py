"""Monocular depth prior: Depth Anything V2 (Small) through transformers' ``DepthAnythingForDepthEstimation``.

The model predicts affine-invariant disparity; ``pgdvs.reconstruct.depth`` aligns it per frame to the multi-view
geometry (scale and shift in disparity on static pixels). The checkpoint comes from ``pgdvs.hub`` (its
``DepthEstimator`` brings the checkpoint's own image processor); without one the pipeline runs the classical path.

A bare transformers model (no processor) is run with the processor's recipe: the longer side scaled to
``input_size``, both sides rounded to a multiple of the patch size (14), bicubic resize, ImageNet mean/std.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..videoio import to_uint8

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def model_input_hw(hw: tuple[int, int], input_size: int, multiple: int = 14) -> tuple[int, int]:
    """Network input size for an image of size hw: longer side ~ input_size, both multiples of ``multiple``."""
    scale = input_size / max(hw)
    return tuple(max(multiple, int(round(s * scale / multiple)) * multiple) for s in hw)


@torch.inference_mode()
def predict_disparity(model: torch.nn.Module, frames: np.ndarray, input_size: int = 518, batch: int = 4,
                      device: str = "cpu", progress=None) -> np.ndarray:
    """Relative disparity per frame (larger = closer), resized back to the frame size.

    model: ``pgdvs.hub``'s DepthEstimator (has ``predict_disparity(uint8 image)``) or a bare transformers
    DepthAnythingForDepthEstimation; frames (N, H, W, 3) float32 [0, 1] -> (N, H, W) float32 >= 0.
    ``progress(fraction)`` is called after each batch (each frame for a DepthEstimator).
    """
    n, h, w = frames.shape[:3]
    if hasattr(model, "predict_disparity"):
        out = np.empty((n, h, w), np.float32)
        for i, frame in enumerate(frames):
            out[i] = np.maximum(model.predict_disparity(to_uint8(frame)), 0)
            if progress:
                progress((i + 1) / n)
        return out
    model = model.eval().to(device)
    patch = getattr(getattr(model.config, "backbone_config", None), "patch_size", 14)
    in_hw = model_input_hw((h, w), input_size, patch)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    out = np.empty((n, h, w), np.float32)
    for start in range(0, n, batch):
        x = torch.from_numpy(frames[start:start + batch]).permute(0, 3, 1, 2).float().to(device)
        x = F.interpolate(x, size=in_hw, mode="bicubic", align_corners=False).clamp(0, 1)
        pred = model(pixel_values=(x - mean) / std).predicted_depth  # (B, h', w')
        pred = F.interpolate(pred[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        out[start:start + len(x)] = pred.clamp(min=0).cpu().numpy()
        if progress:
            progress(min(1.0, (start + len(x)) / n))
    return out
