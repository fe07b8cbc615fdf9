"""The scene as torch tensors on the render device, plus target/source-frame selection shared by all layers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..errors import InputError
from ..geometry import pixel_grid
from ..scene import Scene


def _tensor(array: np.ndarray | None, device, dtype=None) -> torch.Tensor | None:
    """numpy -> torch without a copy when the array already has the dtype and lives on the CPU."""
    if array is None:
        return None
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.to(device=device, dtype=dtype or t.dtype)


@dataclass
class Frames:
    """Input frames on one device. rgb (N, H, W, 3) float32, depth (N, H, W) float32, dyn (N, H, W) bool,
    K (N, 3, 3) float32, c2w (N, 4, 4) float32, flow_fwd / flow_bwd (N-1, H, W, 2) float32 or None."""

    rgb: torch.Tensor
    depth: torch.Tensor
    dyn: torch.Tensor
    K: torch.Tensor
    c2w: torch.Tensor
    flow_fwd: torch.Tensor | None
    flow_bwd: torch.Tensor | None
    _grids: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_scene(cls, scene: Scene, device="cpu") -> "Frames":
        f32 = torch.float32
        return cls(
            rgb=_tensor(scene.rgb, device, f32), depth=_tensor(scene.depth, device, f32),
            dyn=_tensor(scene.dyn_mask, device, torch.bool), K=_tensor(scene.K, device, f32),
            c2w=_tensor(scene.c2w, device, f32), flow_fwd=_tensor(scene.flow_fwd, device, f32),
            flow_bwd=_tensor(scene.flow_bwd, device, f32),
        )

    @property
    def n(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[2])

    @property
    def device(self) -> torch.device:
        return self.rgb.device

    @property
    def centers(self) -> torch.Tensor:
        """Camera centres (N, 3)."""
        return self.c2w[:, :3, 3]

    @cached_property
    def host_centers(self) -> torch.Tensor:
        """Camera centres (N, 3) on the CPU: source views are picked there, without a device sync."""
        return self.centers.cpu()

    def grid(self, hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Integer pixel coordinates (H*W, 2) of an H x W image (default: the frames'), built once per size."""
        hw = tuple(hw or self.hw)
        if hw not in self._grids:
            self._grids[hw] = pixel_grid(*hw, device=self.device).reshape(-1, 2)
        return self._grids[hw]


@dataclass
class Target:
    """One view to render: fractional time t in [0, N-1], K (3, 3), c2w (4, 4) float32 on the device, hw,
    center (3,) the camera centre on the CPU (for :func:`nearest_views` with ``Frames.host_centers``)."""

    t: float
    K: torch.Tensor
    c2w: torch.Tensor
    hw: tuple[int, int]
    center: torch.Tensor


def make_target(frames: Frames, t: float, c2w, K, hw=None) -> Target:
    """Validate and move a target onto the frames' device. c2w (4, 4), K (3, 3) numpy or torch; hw (H, W)."""
    hw = tuple(int(x) for x in (hw or frames.hw))
    if len(hw) != 2 or min(hw) < 1:
        raise InputError(f"render target: 'hw' must be (height, width) with positive sides, got {hw}")
    if not math.isfinite(float(t)) or not 0.0 <= float(t) <= frames.n - 1:
        raise InputError(f"render target: time t={t} is outside [0, {frames.n - 1}] (the scene has {frames.n} frames)")
    # checked on the CPU: on a GPU each check would wait for the device
    c2w = torch.as_tensor(np.asarray(c2w) if not torch.is_tensor(c2w) else c2w, dtype=torch.float32).cpu()
    K = torch.as_tensor(np.asarray(K) if not torch.is_tensor(K) else K, dtype=torch.float32).cpu()
    if c2w.shape != (4, 4) or K.shape != (3, 3):
        raise InputError(f"render target: c2w must be 4x4 and K 3x3, got {tuple(c2w.shape)} and {tuple(K.shape)}")
    if not (torch.isfinite(c2w).all() and torch.isfinite(K).all()) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError("render target: c2w/K must be finite with positive focal lengths")
    return Target(float(t), K.to(frames.device), c2w.to(frames.device), hw, c2w[:3, 3])


def temporal_pair(t: float, n: int) -> tuple[int, int]:
    """(t1, t2) = (floor t, floor t + 1), clamped like the original: at t = N-1 both are N-1 (duplicated end)."""
    t1 = min(int(math.floor(t)), n - 1)
    return t1, min(t1 + 1, n - 1)


def nearest_views(centers: torch.Tensor, center: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` frames whose camera centres (N, 3) are closest to ``center`` (3,), sorted by
    frame index as the original does. Ties go to the earlier frame (stable sort). Pass CPU tensors
    (``Frames.host_centers``, ``Target.center``) to get the list without a device sync."""
    dist = torch.linalg.norm(centers - center[None], dim=-1)
    order = torch.sort(dist, stable=True).indices[: min(count, centers.shape[0])]
    return torch.sort(order).values
