"""Image sampling helpers in the original's conventions (integer pixel centres, align_corners=True)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_image(image: torch.Tensor, uv: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``image`` at pixel positions with zero padding.

    image (B, C, H, W); uv (B, ..., 2) pixel coordinates (u = column, v = row) -> (B, C, ...).
    """
    height, width = image.shape[-2:]
    batch = uv.shape[0]
    flat = uv.reshape(batch, 1, -1, 2)
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=uv.dtype, device=uv.device)
    grid = flat * scale - 1
    out = F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode="zeros", align_corners=True)
    return out.reshape(batch, image.shape[1], *uv.shape[1:-1])


def backward_warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """W(image, flow): out(p) = image(p + flow(p)). image (B, C, H, W), flow (B, H, W, 2) -> (B, C, H, W)."""
    from .geometry import pixel_grid

    height, width = flow.shape[1:3]
    grid = pixel_grid(height, width, device=flow.device, dtype=flow.dtype)
    return sample_image(image, grid + flow, mode=mode)


def flow_consistency(flow_ab: torch.Tensor, flow_ba: torch.Tensor) -> torch.Tensor:
    """Forward-backward check as in the original: q = p + F_ab(p), r = q + F_ba(q), returns p - r.

    flow_ab, flow_ba (B, H, W, 2) -> coord_diff (B, H, W, 2). Consistent where |dx| + |dy| <= 1.
    """
    back = backward_warp(flow_ba.permute(0, 3, 1, 2), flow_ab).permute(0, 2, 3, 1)
    return -(flow_ab + back)
