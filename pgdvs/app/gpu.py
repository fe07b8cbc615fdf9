"""GPU work under ZeroGPU's ``spaces.GPU(duration=...)`` when the ``spaces`` package is present, plain otherwise.

ZeroGPU grants a GPU for at most ``duration`` seconds per call, so the render length is cut to what fits.
"""
from __future__ import annotations

import importlib.util

RENDER_DURATION_S = 120  # ZeroGPU refuses requests above ~300 s; shorter ones get queue priority
RECONSTRUCT_DURATION_S = 240
OVERHEAD_S = 15.0  # moving the scene to the GPU, encoding the videos
# Conservative render cost per output pixel (the renderer targets 5 frames/s at 480x270 on 2 CPU cores and
# 60 frames/s at 854x480 on one GPU; these allow 2-4x slack).
SECONDS_PER_PIXEL = {"cpu": 2e-6, "cuda": 1e-7}
CPU_RENDER_BUDGET_S = 600.0


def on_zero_gpu() -> bool:
    return importlib.util.find_spec("spaces") is not None


def gpu_task(duration_s: int):
    """Decorator: ``spaces.GPU(duration=duration_s)`` on ZeroGPU, the identity elsewhere."""
    if not on_zero_gpu():
        return lambda fn: fn
    import spaces

    return spaces.GPU(duration=duration_s)


def device() -> str:
    import torch

    return "cuda" if on_zero_gpu() or torch.cuda.is_available() else "cpu"


def frame_budget(requested: int, hw: tuple[int, int], device_name: str, budget_s: float | None = None) -> int:
    """Most output frames (<= ``requested``, >= 2) whose estimated render time fits the time budget.

    hw: output (H, W); budget_s defaults to the ZeroGPU render duration on a GPU and a CPU cap otherwise.
    """
    if budget_s is None:
        budget_s = RENDER_DURATION_S if device_name == "cuda" else CPU_RENDER_BUDGET_S
    per_frame = SECONDS_PER_PIXEL.get(device_name, SECONDS_PER_PIXEL["cpu"]) * hw[0] * hw[1]
    fits = int((budget_s - OVERHEAD_S) / max(per_frame, 1e-9))
    return max(2, min(int(requested), fits))
