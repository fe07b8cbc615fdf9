"""GPU work under ZeroGPU's ``spaces.GPU(duration=...)`` when the ``spaces`` package is present, plain otherwise.

ZeroGPU grants a GPU for at most ``duration`` seconds per call, so the render length is cut to what fits.
"""
from __future__ import annotations

import importlib.util
import os

RENDER_DURATION_S = 120  # ZeroGPU refuses requests above ~300 s; shorter ones get queue priority
RECONSTRUCT_DURATION_S = 240
OVERHEAD_S = 15.0  # inside a GPU call but outside the frame loop: moving the scene to the GPU, first-call warm-up
# On a CPU the render is capped so that upload -> video stays within a few minutes (PGDVS_CPU_RENDER_BUDGET_S).
CPU_RENDER_BUDGET_S = float(os.environ.get("PGDVS_CPU_RENDER_BUDGET_S", "45"))


def has_spaces() -> bool:
    return importlib.util.find_spec("spaces") is not None


def on_zero_gpu() -> bool:
    """ZeroGPU Spaces set SPACES_ZERO_GPU=true; the GPU only exists inside ``spaces.GPU`` calls there."""
    return has_spaces() and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu_task(duration_s: int):
    """Decorator: ``spaces.GPU(duration=duration_s)`` when ``spaces`` is installed (a no-op off ZeroGPU),
    the identity otherwise."""
    if not has_spaces():
        return lambda fn: fn
    import spaces

    return spaces.GPU(duration=duration_s)


def device() -> str:
    import torch

    return "cuda" if on_zero_gpu() or torch.cuda.is_available() else "cpu"


def render_budget_s(device_name: str) -> float:
    """Seconds the frame loop of one render may take on ``device_name``."""
    return RENDER_DURATION_S - OVERHEAD_S if device_name == "cuda" else CPU_RENDER_BUDGET_S


def frame_budget(requested: int, seconds_per_frame: float, budget_s: float) -> int:
    """Most output frames (<= ``requested``, >= 2) that fit ``budget_s`` at the measured ``seconds_per_frame``."""
    fits = int(budget_s / max(seconds_per_frame, 1e-6))
    return max(2, min(int(requested), fits))
