"""Facade: ``Renderer(scene, config, device).render(t, c2w, K, hw) -> RenderOutput``.

The scene is moved to the device once (CPU tensors share memory with the scene's numpy arrays). Each call
renders the static layer (``config.static.renderer``), the dynamic layer and their composite.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..scene import Scene
from .composite import Composite, composite
from .config import RenderConfig, get_config
from .dynamic import DynamicLayer, DynamicRenderer
from .frames import Frames, make_target
from .static import StaticLayer, make_static_renderer


@dataclass
class RenderOutput:
    """rgb (H, W, 3) float32 in [0, 1], depth (H, W) float32 z-depth (0 = unknown), dyn_mask (H, W) bool
    (dynamic layer shown), valid (H, W) bool (some input frame saw this pixel). numpy arrays by default,
    torch tensors on the render device with ``render(..., as_numpy=False)``."""

    rgb: np.ndarray | torch.Tensor
    depth: np.ndarray | torch.Tensor
    dyn_mask: np.ndarray | torch.Tensor
    valid: np.ndarray | torch.Tensor


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Renderer:
    """Renders novel views of one scene. config: "paper" | "default" | RenderConfig; device: torch device."""

    def __init__(self, scene: Scene, config: str | RenderConfig = "default", device=None):
        self.config = get_config(config)
        self.device = torch.device(device) if device is not None else default_device()
        self.frames = Frames.from_scene(scene, self.device)
        self.static = make_static_renderer(self.frames, self.config.static)
        self.dynamic = DynamicRenderer(self.frames, self.config.dynamic)

    @torch.no_grad()
    def render_layers(self, t: float, c2w, K, hw=None) -> tuple[StaticLayer, DynamicLayer, Composite]:
        """The two layers and their composite, as torch tensors on the device."""
        target = make_target(self.frames, t, c2w, K, hw)
        static = self.static.render(target)
        dyn = self.dynamic.render(target)
        return static, dyn, composite(static, dyn, self.config.composite)

    def render(self, t: float, c2w, K, hw=None, as_numpy: bool = True) -> RenderOutput:
        """Render time t (fractional frame index in [0, N-1]) from camera c2w (4, 4) with intrinsics K (3, 3)
        at size hw = (H, W) (default: the scene's)."""
        out = self.render_layers(t, c2w, K, hw)[2]
        fields = (out.rgb, out.depth, out.dyn_mask, out.valid)
        if as_numpy:
            fields = tuple(f.cpu().numpy() for f in fields)
        return RenderOutput(*fields)
