"""Suite ``synthetic-render``: the rendering core on synthetic scenes with oracle geometry.

For both protocols (``rig``, ``handheld``; see :mod:`pgdvs.bench.synthetic`) every scene is rendered with each
method (a named render configuration: ``paper`` = original hyperparameters, fused point-cloud static layer,
hard composite; ``default`` = this project's) from the scene's exact cameras, depth, masks and flows:

- image rows: every held-out view (``scene.gt.views``) is rendered and scored (PSNR / SSIM on the full image,
  the GT dynamic region and the static region; handheld also DyCheck mPSNR with the covisibility mask);
- flicker: the first held-out camera is kept fixed while time advances in quarter-frame steps across several
  integer frames; ``flicker`` / ``flicker_dynamic`` compare the rendered change with the GT change
  (:func:`pgdvs.bench.metrics.flicker`);
- ``seconds_per_frame``: mean wall time of one render (layers + composite) on ``--device``, first render
  excluded (``seconds_first_frame``: one-time costs such as the geo cloud fusion); ``cpu_seconds_per_frame``:
  process CPU time per render, first included (robust to other jobs on a shared machine);
- ``peak_rss_mb``: peak resident memory of the process so far. ``--memory`` adds a row measured in a fresh
  process for a 100-frame 854x480 scene (the product's memory target: < 4 GB).

One ``mean`` row per protocol and method follows the per-scene rows.
"""
from __future__ import annotations

import resource
import time

import numpy as np

from .. import metrics
from ..harness import summarise
from ..registry import register_suite

METHODS = ("paper", "default")
FLICKER_STEPS = 8
FLICKER_STEP = 0.25


def add_arguments(parser):
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated render configs")
    parser.add_argument("--protocols", default="rig,handheld", help="comma-separated protocols")
    parser.add_argument("--scenes", default=None, help="comma-separated scene names (default: all)")
    parser.add_argument("--memory", action="store_true", help="also measure a 100-frame 854x480 scene")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _flicker_plan(scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed held-out camera (c2w (4, 4), K (3, 3)) and times (T,) crossing several integer frames."""
    views = scene.gt.views
    start = min(float(views.time[0]), scene.n_frames - 1 - FLICKER_STEP * (FLICKER_STEPS - 1))
    times = max(start, 0.0) + FLICKER_STEP * np.arange(FLICKER_STEPS)
    return views.c2w[0], views.K[0], times


def _flicker_gt(scene, c2w, K, times) -> tuple[np.ndarray, np.ndarray]:
    from ..synthetic import render_gt

    meta = scene.meta
    name = f"{meta['protocol']}-{meta['layout']}"
    gts = [render_gt(name, meta["size"], meta["seed"], float(t), c2w, K, scene.hw) for t in times]
    return np.stack([g["rgb"] for g in gts]), np.stack([g["dyn_mask"] for g in gts])


def score_method(scene, method: str, device: str, flicker_gt) -> dict:
    """Render every held-out view and the flicker sequence of ``scene`` with config ``method``."""
    import torch

    from ...render.renderer import Renderer

    renderer = Renderer(scene, method, device)
    views = scene.gt.views
    preds, seconds = [], []
    cpu_start = time.process_time()
    for t, c2w, K in zip(views.time, views.c2w, views.K):
        start = time.perf_counter()
        out = renderer.render(float(t), c2w, K, views.rgb.shape[1:3])
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        preds.append(out.rgb)
    cpu_seconds = (time.process_time() - cpu_start) / len(preds)
    per_view = [metrics.region_scores(p, g, m) for p, g, m in zip(preds, views.rgb, views.dyn_mask)]
    row = {k: metrics.nanmean([s[k] for s in per_view]) for k in per_view[0]}
    if views.covis is not None:
        row["mpsnr"] = metrics.nanmean([metrics.mpsnr(p, g, c) for p, g, c in zip(preds, views.rgb, views.covis)])
    c2w, K, times = _flicker_plan(scene)
    video = np.stack([renderer.render(float(t), c2w, K).rgb for t in times])
    gt_video, gt_dyn = flicker_gt
    row["flicker"] = metrics.flicker(video, gt_video)
    row["flicker_dynamic"] = metrics.flicker(video, gt_video, gt_dyn)
    # the first render of a view pays one-time costs (geo cloud fusion, allocator warm-up)
    row["seconds_per_frame"] = float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))
    row["seconds_first_frame"] = float(seconds[0])
    row["cpu_seconds_per_frame"] = cpu_seconds  # process CPU time: robust to other jobs on a shared machine
    row["views"] = len(preds)
    row["peak_rss_mb"] = _peak_rss_mb()
    return row


def _memory_probe(config: str, frames: int, hw: tuple[int, int], queue) -> None:
    """In a fresh process: a ``frames`` x hw scene in memory, a renderer, three renders; report peak RSS."""
    import torch

    from ...render.renderer import Renderer
    from ...scene import Scene

    torch.set_num_threads(2)
    h, w = hw
    rng = np.random.default_rng(0)
    K = np.array([[w * 0.8, 0, (w - 1) / 2], [0, w * 0.8, (h - 1) / 2], [0, 0, 1]])
    c2w = np.repeat(np.eye(4)[None], frames, 0)
    c2w[:, 0, 3] = np.linspace(0, 0.5, frames)
    dyn = np.zeros((frames, h, w), bool)
    for i in range(frames):
        dyn[i, h // 3: 2 * h // 3, w // 4 + 2 * i: w // 4 + 2 * i + w // 5] = True
    scene = Scene(rgb=rng.random((frames, h, w, 3), dtype=np.float32), K=np.repeat(K[None], frames, 0), c2w=c2w,
                  depth=np.full((frames, h, w), 3.0, np.float32), dyn_mask=dyn,
                  flow_fwd=np.full((frames - 1, h, w, 2), [2.0, 0.0], np.float32),
                  flow_bwd=np.full((frames - 1, h, w, 2), [-2.0, 0.0], np.float32))
    renderer = Renderer(scene, config, "cpu")
    for t in (10.25, 50.5, 80.75):
        renderer.render(t, c2w[int(t)], K)
    queue.put(_peak_rss_mb())


def memory_row(config: str = "default", frames: int = 100, hw=(480, 854)) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_probe, args=(config, frames, hw, queue))
    proc.start()
    proc.join()
    peak = queue.get() if proc.exitcode == 0 else float("nan")
    return {"scene": f"memory-{frames}x{hw[1]}x{hw[0]}", "protocol": "memory", "method": config,
            "peak_rss_mb": peak, "passed": bool(peak < 4096)}


@register_suite("synthetic-render", "render core on synthetic scenes with oracle geometry: paper vs default "
                "(quality per region, flicker, speed, memory)", add_arguments=add_arguments)
def run(args) -> list[dict]:
    from ...errors import InputError
    from ..synthetic import SCENES, load_scene

    methods = [m for m in str(getattr(args, "methods", ",".join(METHODS))).split(",") if m]
    protocols = [p for p in str(getattr(args, "protocols", "rig,handheld")).split(",") if p]
    wanted = getattr(args, "scenes", None)
    wanted = set(wanted.split(",")) if wanted else None
    rows = []
    for protocol in protocols:
        for name in SCENES[protocol]:
            if wanted is not None and name not in wanted:
                continue
            try:
                scene = load_scene(name, args.size, args.cache_dir)
            except InputError as exc:
                rows.append({"scene": name, "protocol": protocol, "method": "-", "error": str(exc)})
                continue
            flicker_gt = _flicker_gt(scene, *_flicker_plan(scene))
            for method in methods:
                row = score_method(scene, method, args.device, flicker_gt)
                rows.append({"scene": name, "protocol": protocol, "method": method, **row})
    for summary in summarise([r for r in rows if r["method"] != "-"]):
        rows.append({"scene": "mean", **{k: v for k, v in summary.items() if k != "n"}})
    if getattr(args, "memory", False):
        rows.append(memory_row())
    return rows
