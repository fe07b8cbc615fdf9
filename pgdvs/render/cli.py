"""``python -m pgdvs render SCENE_DIR --preset NAME --out video.mp4``: render a camera path to an H.264 mp4.

Presets come from ``pgdvs.trajectories`` (``python -m pgdvs presets`` lists them); ``input-wobble`` is always
available: the input trajectory (slow motion over the whole clip) with the original's small elliptical wobble.
"""
from __future__ import annotations

import argparse

BUILTIN_PRESET = "input-wobble"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "render", help="render a novel-view video of a scene along a camera-path preset",
        description="Render SCENE_DIR (from `python -m pgdvs reconstruct`) along a preset camera path into a "
                    f"browser-playable H.264 mp4. '{BUILTIN_PRESET}' is always available.")
    parser.add_argument("scene", metavar="SCENE_DIR", help="scene folder (scene.json + arrays.npz)")
    parser.add_argument("--preset", default=BUILTIN_PRESET, help=f"camera-path preset (default {BUILTIN_PRESET})")
    parser.add_argument("--out", required=True, help="output video, .mp4")
    parser.add_argument("--frames", type=int, default=None, help="number of output frames (default: the preset's)")
    parser.add_argument("--frames-dir", help="also write every frame as PNG into this folder")
    parser.add_argument("--depth-video", help="also write the rendered depth (near = bright) as an mp4")
    parser.add_argument("--mask-video", help="also write the dynamic-layer mask as an mp4")
    parser.add_argument("--config", default="default", help="render configuration: paper | default | fast")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.set_defaults(func=run)


def wobble_path(scene, frames: int | None = None, max_disp_px: float = 32.0):
    """The original's path (method reference §10) over the whole clip: times linspace(0, N-1), base pose
    interpolated between input frames, camera-frame offset on an ellipse (max_disp px at the near depth,
    twice as wide as tall, a lap every frames // 8). Returns (times (T,), c2w (T, 4, 4), K (T, 3, 3))."""
    import numpy as np

    from ..trajectories.interpolate import interpolate_intrinsics, interpolate_poses
    from ..trajectories.paths import scene_scale

    count = frames or max(2 * scene.n_frames, 2)
    times = np.linspace(0.0, scene.n_frames - 1, count)
    c2w = interpolate_poses(scene.c2w, times)
    amp = scene_scale(scene).pixels_to_units(max_disp_px)
    theta = 2 * np.pi * np.arange(count) / max(count // 8, 1)
    offset = np.repeat(np.eye(4)[None], count, axis=0)
    offset[:, 0, 3] = -amp * np.sin(theta)
    offset[:, 1, 3] = -0.5 * amp * np.cos(theta)
    return times, c2w @ offset, interpolate_intrinsics(scene.K, times)


def _camera_path(scene, name: str, frames: int | None):
    """(times, c2w, K, fps) of a preset on the scene."""
    from ..errors import InputError

    fps = float(scene.meta.get("fps") or 30.0)
    if name == BUILTIN_PRESET:
        return (*wobble_path(scene, frames), fps)
    try:
        from ..trajectories import load_presets, make_path
        presets = load_presets()
    except (ImportError, FileNotFoundError):
        presets = {}
    if name not in presets:
        known = ", ".join([BUILTIN_PRESET, *presets])
        raise InputError(f"--preset {name!r} is unknown; allowed values: {known}")
    path = make_path(presets[name], scene, **({"frames": frames} if frames else {}))
    return path.times, path.c2w, path.K, path.fps


def _depth_to_grey(depths):
    """Rendered depths (T, H, W) -> grey video in [0, 1], near = bright, one scale for the whole clip."""
    import numpy as np

    inv = np.where(depths > 0, 1.0 / np.maximum(depths, 1e-12), 0.0)
    seen = inv[depths > 0]
    if seen.size == 0:
        return np.zeros_like(depths)
    lo, hi = np.percentile(seen, [1, 99])
    return np.clip((inv - lo) / max(hi - lo, 1e-12), 0, 1) * (depths > 0)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from ..atomic import atomic_dir
    from ..errors import InputError
    from ..scene import Scene
    from ..videoio import to_uint8, write_video
    from .renderer import Renderer

    if not str(args.out).lower().endswith(".mp4"):
        raise InputError(f"--out {args.out!r}: the output video must be an .mp4 file")
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames must be >= 1, got {args.frames}")
    scene = Scene.load(args.scene)
    times, c2w, K, fps = _camera_path(scene, args.preset, args.frames)
    renderer = Renderer(scene, args.config, args.device)
    rgb, depth, mask = [], [], []
    for i, (t, pose, intr) in enumerate(zip(times, c2w, K)):
        out = renderer.render(float(t), pose, intr)
        rgb.append(to_uint8(out.rgb))  # uint8 keeps long clips in memory
        if args.depth_video:
            depth.append(out.depth)
        mask.append(out.dyn_mask)
        print(f"\rrendered {i + 1}/{len(times)}", end="", flush=True)
    print()
    write_video(args.out, np.stack(rgb), fps)
    if args.depth_video:
        write_video(args.depth_video, _depth_to_grey(np.stack(depth)), fps)
    if args.mask_video:
        write_video(args.mask_video, np.stack(mask).astype(np.float32), fps)
    if args.frames_dir:
        with atomic_dir(args.frames_dir) as tmp:
            for i, frame in enumerate(rgb):
                Image.fromarray(frame).save(Path(tmp) / f"{i:05d}.png")
    print(f"wrote {args.out} ({len(times)} frames at {fps:g} fps, config {args.config})")
    return 0
