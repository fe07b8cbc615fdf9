"""Suite ``render-speed``: frames per second of the renderer on real camera-path workloads.

One synthetic scene (``--scene``, default ``handheld-room``; ``--size bench`` = 48 frames at 480x270), optionally
resized (``--hw 480x854``: rgb bilinear, depth and masks nearest, flows scaled, K rescaled), rendered with each
method along each workload:

- ``views``: the scene's held-out evaluation views (random access: every render needs new frames and source
  views, fractional times need both splat sides) -- the worst case;
- a preset name (``orbit``: time plays, one frame per input frame; ``bullet-time``: frozen time;
  ``slow-motion``: fractional times, several renders per frame pair): what a user renders.

Rows: ``fps`` and ``seconds_per_frame`` (wall time of ``Renderer.render`` incl. the copy to numpy, first render
excluded: one-time set-up), ``frames``, ``peak_rss_mb``. On ``--device cuda`` each render is synchronised.
"""
from __future__ import annotations

import time

import numpy as np

from ..registry import register_suite
from .render import _peak_rss_mb

METHODS = ("paper", "default", "fast")
WORKLOADS = ("views", "orbit", "bullet-time", "slow-motion")


def add_arguments(parser):
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated render configs")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="'views' and/or preset names")
    parser.add_argument("--scene", default="handheld-room", help="synthetic scene name")
    parser.add_argument("--hw", default=None, help="render size HxW (default: the scene's), e.g. 480x854")


def resize_scene(scene, hw: tuple[int, int]):
    """The scene at another resolution, and its held-out views with K for that resolution (None when it has
    none; their images are not resized: the speed suite renders their cameras only). hw = (H, W)
    -> (Scene without gt, EvalViews or None)."""
    from dataclasses import replace

    import torch
    import torch.nn.functional as F

    from ...geometry import rescale_intrinsics
    from ...scene import Scene

    def resize(a, mode):
        x = torch.as_tensor(a).float()
        x = x[..., None] if x.dim() == 3 else x
        kw = {"align_corners": False} if mode == "bilinear" else {}
        return F.interpolate(x.permute(0, 3, 1, 2), size=hw, mode=mode, **kw).permute(0, 2, 3, 1)

    scale = torch.tensor([hw[1] / scene.hw[1], hw[0] / scene.hw[0]])
    flows = [None if f is None else (resize(f, "bilinear") * scale).numpy() for f in (scene.flow_fwd, scene.flow_bwd)]
    def rescaled(K):
        return rescale_intrinsics(torch.as_tensor(K), scene.hw, hw).numpy()

    views = scene.gt.views if scene.gt is not None else None
    resized = Scene(rgb=resize(scene.rgb, "bilinear").clamp(0, 1).numpy(), K=rescaled(scene.K), c2w=scene.c2w,
                    depth=resize(scene.depth, "nearest")[..., 0].numpy(),
                    dyn_mask=resize(scene.dyn_mask.astype(np.float32), "nearest")[..., 0].numpy() > 0.5,
                    flow_fwd=flows[0], flow_bwd=flows[1], meta=dict(scene.meta))
    return resized, None if views is None else replace(views, K=rescaled(views.K))


def workload_path(scene, views, name: str):
    """(times (T,), c2w (T, 4, 4), K (T, 3, 3)) of a workload; ``views`` = held-out views or None."""
    from ...errors import InputError
    from ...trajectories import load_presets, make_path

    if name == "views":
        if views is None:
            raise InputError("workload 'views' needs a scene with held-out views")
        return views.time, views.c2w, views.K
    presets = load_presets()
    if name not in presets:
        raise InputError(f"workload {name!r} is unknown; allowed values: views, {', '.join(presets)}")
    path = make_path(presets[name], scene)
    return path.times, path.c2w, path.K


def time_renders(renderer, times, c2w, K, device: str) -> list[float]:
    """Wall seconds of each render along the path."""
    import torch

    seconds = []
    for t, pose, intr in zip(times, c2w, K):
        start = time.perf_counter()
        renderer.render(float(t), pose, intr)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


@register_suite("render-speed", "renderer frames/s on camera-path workloads (held-out views, presets)",
                add_arguments=add_arguments)
def run(args) -> list[dict]:
    from ...errors import InputError
    from ...render.renderer import Renderer
    from ..synthetic import SCENES, load_scene

    names = [n for protocol in SCENES.values() for n in protocol]
    if args.scene not in names:
        raise InputError(f"--scene {args.scene!r} is unknown; allowed values: {', '.join(names)}")
    scene = load_scene(args.scene, args.size, args.cache_dir)
    views = scene.gt.views if scene.gt is not None else None
    if args.hw:
        parts = args.hw.lower().split("x")
        hw = tuple(int(x) for x in parts) if all(x.strip().isdigit() for x in parts) else ()
        if len(hw) != 2 or min(hw) < 8:
            raise InputError(f"--hw {args.hw!r}: expected HxW with sides of at least 8 px, e.g. 480x854")
        scene, views = resize_scene(scene, hw)
    height, width = scene.hw
    rows = []
    for method in [m for m in args.methods.split(",") if m]:
        renderer = Renderer(scene, method, args.device)
        for workload in [w for w in args.workloads.split(",") if w]:
            seconds = time_renders(renderer, *workload_path(scene, views, workload), args.device)
            steady = seconds[1:] if len(seconds) > 1 else seconds
            per_frame = float(np.mean(steady))
            rows.append({"scene": f"{args.scene}@{width}x{height}", "protocol": "speed", "method": method,
                         "workload": workload, "seconds_per_frame": per_frame, "fps": 1.0 / per_frame,
                         "seconds_first_frame": float(seconds[0]), "frames": len(seconds),
                         "peak_rss_mb": _peak_rss_mb()})
    return rows
