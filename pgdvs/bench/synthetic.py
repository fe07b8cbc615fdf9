"""Synthetic dynamic scenes with exact ground truth, in two evaluation protocols.

- ``rig`` (like NVIDIA Dynamic Scenes): K synchronised static cameras on an arc; input frame i is camera
  i mod K at time i; evaluation on every other camera at a few times.
- ``handheld`` (like DyCheck iPhone): one smoothly moving camera is the input; evaluation on 2 fixed held-out
  cameras at a few times, with covisibility masks (target pixels whose surface point some input frame sees).

Scenes are analytic (see :mod:`synthetic_raycast`, :mod:`synthetic_layouts`): depth, dynamic mask, cameras and
flow are exact at integer pixel centres; RGB is Lambertian, mip-filtered and anti-aliased at boundaries.
Names are ``"<protocol>-<layout>"``, e.g. ``"rig-room"``. Time is a (fractional) frame index t in [0, N-1].

    scene = make_scene("handheld-room", "small")            # Scene with gt (cameras, depth, masks, eval views)
    scenes = load_suite("rig", "bench", cache_dir)           # SCENES["rig"], cached on disk
    scene = load_scene("rig-hall", "bench", cache_dir)       # one scene through the same cache
    gt = render_gt("rig-room", "small", 0, 7.5, c2w, K, hw)  # any camera, any time
"""
from __future__ import annotations

import contextlib
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..geometry import in_image, look_at, pixel_grid, project_points
from ..scene import EvalViews, GroundTruth, Scene
from .synthetic_layouts import LAYOUTS, World, build_world
from .synthetic_raycast import render

GENERATOR_VERSION = 1
PROTOCOLS = ("rig", "handheld")
SCENES: dict[str, list[str]] = {p: [f"{p}-{layout}" for layout in LAYOUTS] for p in PROTOCOLS}
SIZES = {"small": (24, 96, 160), "bench": (48, 270, 480)}  # frames, height, width
EVAL_TIMES = {"rig": {"small": 3, "bench": 6}, "handheld": {"small": 4, "bench": 8}}  # held-out times per scene
CAMERA_MODES = ("default", "static", "rotation")
RIG_CAMERAS = 12
DURATION_S = 2.0  # every clip spans the same motion; fps = frames / duration
HFOV_DEG = 60.0
COVIS_RTOL = 0.02


def parse_name(name: str) -> tuple[str, str]:
    """``"rig-room"`` -> ("rig", "room"); raises InputError naming the allowed values."""
    protocol, _, layout = str(name).partition("-")
    if protocol not in PROTOCOLS or layout not in LAYOUTS:
        allowed = ", ".join(f"{p}-{l}" for p in PROTOCOLS for l in LAYOUTS)
        raise InputError(f"unknown synthetic scene {name!r}; allowed: {allowed}")
    return protocol, layout


def _size(size: str) -> tuple[int, int, int]:
    if size not in SIZES:
        raise InputError(f"unknown synthetic size {size!r}; allowed: {', '.join(SIZES)}")
    return SIZES[size]


def intrinsics(hw: tuple[int, int]) -> np.ndarray:
    """Pinhole K (3, 3) float64 with HFOV_DEG and the principal point at the image centre (integer pixels)."""
    h, w = hw
    f = (w / 2) / np.tan(np.radians(HFOV_DEG) / 2)
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])


def _orbit(world: World, azimuth_deg, height, radius=None, target_offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Cameras on a circle around ``world.target``: azimuth 0 looks along +z. -> (..., 4, 4) float64."""
    az = np.radians(np.asarray(azimuth_deg, np.float64))
    radius = world.radius if radius is None else np.asarray(radius, np.float64)
    target = world.target + np.asarray(target_offset, np.float64)
    eye = np.stack([target[..., 0] + radius * np.sin(az), np.broadcast_to(height, az.shape),
                    target[..., 2] - radius * np.cos(az)], -1)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    return look_at(torch.from_numpy(eye), torch.from_numpy(np.broadcast_to(target, eye.shape).copy()), up).numpy()


def rig_cameras(world: World, count: int = RIG_CAMERAS) -> np.ndarray:
    """Synchronised rig: ``count`` cameras left to right on a 30 degree arc, in two rows. -> (count, 4, 4)."""
    rows = world.height + np.where(np.arange(count) % 2 == 0, 0.12, -0.12)
    return _orbit(world, np.linspace(-15, 15, count), rows)


def handheld_path(world: World, tau: np.ndarray) -> np.ndarray:
    """Smooth hand-held sweep with bob and aim drift, tau (N,) in [0, 1] -> (N, 4, 4)."""
    ease = 0.5 - 0.5 * np.cos(np.pi * tau)
    az = -16 + 28 * ease
    radius = world.radius * (1 + 0.05 * np.sin(3 * np.pi * tau))
    height = world.height + 0.1 * np.sin(5 * np.pi * tau + 0.3)
    aim = np.stack([0.15 * np.sin(2 * np.pi * tau), 0.08 * np.cos(3 * np.pi * tau), np.zeros_like(tau)], -1)
    return _orbit(world, az, height, radius, aim)


def handheld_eval_cameras(world: World) -> np.ndarray:
    """The two fixed held-out cameras, outside the input sweep (left-high, right-low). -> (2, 4, 4)."""
    return _orbit(world, np.array([-30.0, 26.0]), world.height + np.array([0.35, -0.25]))


def _degenerate(c2w: np.ndarray, tau: np.ndarray, camera: str) -> np.ndarray:
    """Input cameras for reconstruction corner cases: a fixed camera, or one that only rotates."""
    if camera == "default":
        return c2w
    mid = c2w[len(c2w) // 2]
    if camera == "static":
        return np.repeat(mid[None], len(c2w), 0)
    yaw = np.radians(10 * np.sin(np.pi * (tau - 0.5)))
    pitch = np.radians(3 * np.sin(2 * np.pi * tau))
    out = np.repeat(mid[None], len(c2w), 0)
    for i, (a, b) in enumerate(zip(yaw, pitch)):
        ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
        rot = np.array([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]]) @ np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
        out[i, :3, :3] = mid[:3, :3] @ rot  # rotate in the camera frame, centre fixed
    return out


_THREADS = {"lock": threading.Lock(), "depth": 0, "saved": 1}


@contextlib.contextmanager
def _one_thread():
    """Ray casting runs many mid-sized tensor ops; intra-op threads only add overhead (and oversubscribe
    shared cores), so generation runs single-threaded -- scenes run in parallel instead (load_suite).
    Re-entrant and thread-safe; the caller's setting comes back when the last user leaves."""
    with _THREADS["lock"]:
        if _THREADS["depth"] == 0:
            _THREADS["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _THREADS["depth"] += 1
    try:
        yield
    finally:
        with _THREADS["lock"]:
            _THREADS["depth"] -= 1
            if _THREADS["depth"] == 0:
                torch.set_num_threads(_THREADS["saved"])


@functools.lru_cache(maxsize=16)
def _world(layout: str, seed: int) -> World:
    return build_world(layout, seed)


def _render(world: World, n_frames: int, t: float, c2w: np.ndarray, K: np.ndarray, hw, under=None) -> dict:
    """One view at time t; ``under``: the static layer of the same camera (see :func:`_static_layer`)."""
    out = render(world.snapshot(t / (n_frames - 1)), world.look, torch.from_numpy(K).float(),
                 torch.from_numpy(c2w).float(), tuple(hw), only=None if under is None else world.dynamic_ids,
                 under=under)
    hits = out["hits"]
    dyn_mask = world.dynamic.index_select(0, hits["prim"]).reshape(hw)
    return {"rgb": out["rgb"], "depth": hits["depth"].reshape(hw), "dyn_mask": dyn_mask,
            "prim": hits["prim"], "local": hits["local"], "world": hits["world"]}


def _static_layer(world: World, c2w: np.ndarray, K: np.ndarray, hw) -> dict:
    return render(world.snapshot(0.0), world.look, torch.from_numpy(K).float(), torch.from_numpy(c2w).float(),
                  tuple(hw), only=world.static_ids)


def _views(world: World, n_frames: int, times, c2ws, K: np.ndarray, hw):
    """Yield the views (t, c2w) in order; a camera used more than once renders its static part once."""
    keys = [c.tobytes() for c in c2ws]
    layers = {}
    for t, c, key in zip(times, c2ws, keys):
        if key not in layers and keys.count(key) > 1:
            layers[key] = _static_layer(world, c, K, hw)
        yield _render(world, n_frames, float(t), c, K, hw, layers.get(key))


def _track(world: World, n_frames: int, view: dict, t: float) -> torch.Tensor:
    """World positions at time t of the surface points seen in ``view`` (its ``prim``, ``local``, ``world``
    per pixel, flattened). Static points stay where they were hit. -> (P, 3) float32."""
    pts = view["world"].clone()
    dyn = world.dynamic.index_select(0, view["prim"]).nonzero()[:, 0]
    if len(dyn):
        A = world.transforms(t / (n_frames - 1)).index_select(0, view["prim"].index_select(0, dyn))
        moved = (A[:, :3, :3] @ view["local"].index_select(0, dyn)[:, :, None])[:, :, 0] + A[:, :3, 3]
        pts.index_copy_(0, dyn, moved)
    return pts


def _flow(world: World, n_frames: int, view: dict, t_to: float, K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Exact flow of ``view``'s pixels to the camera (K, c2w) at time t_to. -> (H, W, 2) float32."""
    h, w = view["depth"].shape
    uv, _ = project_points(_track(world, n_frames, view, t_to), torch.from_numpy(K).float(),
                           torch.from_numpy(c2w).float())
    return (uv.reshape(h, w, 2) - pixel_grid(h, w)).numpy()


def _covisible(world: World, n_frames: int, view: dict, frame_depths: list[torch.Tensor], K: np.ndarray,
               c2w: np.ndarray, rtol: float = COVIS_RTOL) -> np.ndarray:
    """Pixels of ``view`` whose surface point (tracked through time) is visible in at least one input frame:
    it projects inside frame j at time j and its depth there agrees with frame j's depth within ``rtol``."""
    h, w = view["depth"].shape
    covis = torch.zeros(h * w, dtype=torch.bool)
    todo = {"idx": torch.arange(h * w), **{k: view[k] for k in ("prim", "local", "world")}}
    # far-apart frames first, so that most pixels are settled after a few; the rest shrinks as it goes
    for j in [*range(0, len(frame_depths), 6), *(j for j in range(len(frame_depths)) if j % 6)]:
        if not len(todo["idx"]):
            break
        uv, z = project_points(_track(world, n_frames, todo, float(j)), torch.from_numpy(K[j]).float(),
                               torch.from_numpy(c2w[j]).float())
        px = uv.round().long().clamp(min=0)
        flat = px[:, 1].clamp(max=h - 1) * w + px[:, 0].clamp(max=w - 1)
        seen = frame_depths[j].reshape(-1).index_select(0, flat)
        ok = in_image(uv, h, w) & (z > 0) & ((seen - z).abs() <= rtol * z)
        covis[todo["idx"][ok]] = True
        todo = {k: v[~ok] for k, v in todo.items()}
    return covis.reshape(h, w).numpy()


def _eval_plan(protocol: str, world: World, n_frames: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out targets at ``count`` times spread over the clip: times (M,), camera ids (M,), c2w (M, 4, 4).
    Rig: every camera but the input one; handheld: both held-out cameras."""
    if protocol == "rig":
        rig = rig_cameras(world)
        times = np.unique(np.linspace(2, n_frames - 3, count).round())
        pairs = [(t, c) for t in times for c in range(len(rig)) if c != int(t) % len(rig)]
        return (np.array([t for t, _ in pairs], np.float32), np.array([c for _, c in pairs], np.int64),
                rig[[c for _, c in pairs]])
    cams = handheld_eval_cameras(world)
    times = np.unique(np.linspace(1, n_frames - 2, count).round())
    return (np.repeat(times, 2).astype(np.float32), np.tile(np.arange(2), len(times)).astype(np.int64),
            cams[np.tile(np.arange(2), len(times))])


@_one_thread()
def make_scene(name: str, size: str = "small", seed: int = 0, camera: str = "default") -> Scene:
    """Generate scene ``name`` (see SCENES) at ``size`` ("small": 24 frames 160x96, "bench": 48 frames 480x270).

    ``camera``: "default" (the protocol's input cameras), "static" (a fixed input camera) or "rotation" (the
    input camera only rotates) -- the degenerate cases for reconstruction tests; held-out views are unchanged.
    Returns a Scene whose depth, dyn_mask and cameras are the ground truth, with exact flows and ``gt.views``.
    """
    protocol, layout = parse_name(name)
    n, h, w = _size(size)
    if camera not in CAMERA_MODES:
        raise InputError(f"unknown camera mode {camera!r}; allowed: {', '.join(CAMERA_MODES)}")
    world = _world(layout, int(seed))
    tau = np.arange(n) / (n - 1)
    if protocol == "rig":
        c2w = rig_cameras(world)[np.arange(n) % RIG_CAMERAS]
    else:
        c2w = handheld_path(world, tau)
    c2w = _degenerate(c2w, tau, camera)
    K1 = intrinsics((h, w))
    K = np.repeat(K1[None], n, 0)
    times, cam_ids, eval_c2w = _eval_plan(protocol, world, n, EVAL_TIMES[protocol][size])
    m = len(times)
    rgb = np.zeros((n + m, h, w, 3), np.float32)
    depth, dyn = np.zeros((n + m, h, w), np.float32), np.zeros((n + m, h, w), bool)
    flow_fwd, flow_bwd = np.zeros((2, n - 1, h, w, 2), np.float32)
    covis = np.zeros((m, h, w), bool) if protocol == "handheld" else None
    frame_depths, prev = [], None
    views = _views(world, n, [*range(n), *times], [*c2w, *eval_c2w], K1, (h, w))
    for i, view in enumerate(views):  # streamed: only depth maps are kept, for covisibility
        rgb[i], depth[i], dyn[i] = view["rgb"].numpy(), view["depth"].numpy(), view["dyn_mask"].numpy()
        if i < n:
            frame_depths.append(view["depth"])
            if prev is not None:
                flow_fwd[i - 1] = _flow(world, n, prev, float(i), K1, c2w[i])
                flow_bwd[i - 1] = _flow(world, n, view, i - 1.0, K1, c2w[i - 1])
            prev = view
        elif covis is not None:
            covis[i - n] = _covisible(world, n, view, frame_depths, K, c2w)
    ev = EvalViews(time=times, camera=cam_ids, c2w=eval_c2w, K=np.repeat(K1[None], m, 0), rgb=rgb[n:],
                   depth=depth[n:], dyn_mask=dyn[n:], covis=covis)
    rgb, depth, dyn = rgb[:n], depth[:n], dyn[:n]
    meta = {"source": f"synthetic:{name}", "fps": n / DURATION_S, "frame_ids": [f"{i:05d}" for i in range(n)],
            "protocol": protocol, "layout": layout, "size": size, "seed": int(seed), "camera": camera,
            "scene_scale": 1.0, "generator_version": GENERATOR_VERSION,
            "rig_cameras": RIG_CAMERAS if protocol == "rig" else None,
            "depth_range": [float(depth.min()), float(depth.max())]}
    return Scene(rgb=rgb, K=K, c2w=c2w, depth=depth, dyn_mask=dyn, flow_fwd=flow_fwd, flow_bwd=flow_bwd,
                 gt=GroundTruth(c2w=c2w.copy(), K=K.copy(), depth=depth.copy(), dyn_mask=dyn.copy(), views=ev),
                 meta=meta).validate(f"synthetic:{name}")


@_one_thread()
def render_gt(name: str, size: str, seed: int, t: float, c2w: np.ndarray, K: np.ndarray,
              hw: tuple[int, int]) -> dict:
    """Ground truth of scene ``name`` seen from any camera at fractional time t (frame index in [0, N-1]).
    c2w (4, 4), K (3, 3) -> dict(rgb (H, W, 3) float32, depth (H, W) float32, dyn_mask (H, W) bool)."""
    _, layout = parse_name(name)
    n = _size(size)[0]
    if not 0 <= t <= n - 1:
        raise InputError(f"render_gt: time {t} is outside [0, {n - 1}] for size {size!r}")
    out = _render(_world(layout, int(seed)), n, float(t), np.asarray(c2w, np.float64), np.asarray(K, np.float64),
                  tuple(hw))
    return {"rgb": out["rgb"].numpy(), "depth": out["depth"].numpy(), "dyn_mask": out["dyn_mask"].numpy()}


@_one_thread()
def track_points(name: str, size: str, seed: int, t: float, c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int],
                 t_to: float) -> np.ndarray:
    """Where the surface points seen at each pixel of camera (c2w (4, 4), K (3, 3)) at time t are at time
    ``t_to`` (exact motion, any fractional times). -> (H, W, 3) float32 world positions."""
    _, layout = parse_name(name)
    n = _size(size)[0]
    for when in (t, t_to):
        if not 0 <= when <= n - 1:
            raise InputError(f"track_points: time {when} is outside [0, {n - 1}] for size {size!r}")
    world = _world(layout, int(seed))
    view = _render(world, n, float(t), np.asarray(c2w, np.float64), np.asarray(K, np.float64), tuple(hw))
    return _track(world, n, view, float(t_to)).reshape(*hw, 3).numpy()


def cache_path(cache_dir: str | Path, name: str, size: str, seed: int = 0) -> Path:
    """Scene folder of one generated scene in a cache: keyed by name, size, seed and GENERATOR_VERSION."""
    return Path(cache_dir) / f"{name}_{size}_s{int(seed)}_v{GENERATOR_VERSION}"


def load_scene(name: str, size: str = "small", cache_dir: str | Path | None = None, seed: int = 0) -> Scene:
    """One scene, read from ``cache_dir`` when there, else generated (and saved there when given)."""
    path = None if cache_dir is None else cache_path(cache_dir, name, size, seed)
    if path is not None and path.is_dir():
        return Scene.load(path)
    scene = make_scene(name, size, seed)
    if path is not None:
        scene.save(path)
    return scene


def load_suite(protocol: str, size: str = "small", cache_dir: str | Path | None = None, seed: int = 0,
               workers: int = 2) -> list[Scene]:
    """All scenes of a protocol (SCENES[protocol]), generated ``workers`` at a time; cached as scene folders
    under ``cache_dir`` when given, keyed by name, size, seed and GENERATOR_VERSION."""
    if protocol not in SCENES:
        raise InputError(f"unknown protocol {protocol!r}; allowed: {', '.join(SCENES)}")
    _size(size)
    # Each worker generates and saves its own scene, so cache writes overlap with generation.
    with _one_thread(), ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(lambda name: load_scene(name, size, cache_dir, seed), SCENES[protocol]))
