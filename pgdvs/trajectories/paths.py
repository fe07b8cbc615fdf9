"""Preset + Scene -> CameraPath: target times, poses and intrinsics, one per output frame.

A path is ``base(t_j) @ offset_j``: the base pose follows the (interpolated, optionally smoothed or fixed)
input trajectory at the output time, and the offset is the preset's move expressed in the base camera's own
frame (right-multiplied, as in the original). Zoom scales the focal lengths, keeping the principal point.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..geometry import look_at
from .interpolate import interpolate_intrinsics, interpolate_poses, smooth_poses
from .schema import Preset

DEFAULT_FPS = 30.0
MAX_DEPTH_SAMPLES = 1 << 16  # per frame; larger depth maps are read on a regular grid stride for the statistics


@dataclass
class CameraPath:
    """T target views of a scene with N input frames.

    times (T,) float fractional frame index in [0, N-1]; c2w (T, 4, 4) OpenCV camera-to-world; K (T, 3, 3)
    pixels at ``hw`` = (H, W); fps frames per second of the output video; name of the preset it came from.
    """

    times: np.ndarray
    c2w: np.ndarray
    K: np.ndarray
    hw: tuple[int, int]
    fps: float
    name: str = ""

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class SceneScale:
    """What makes magnitudes scene-relative. near_depth: 0.9 x the 5th percentile over frames of each frame's
    5th-percentile depth (the original's rule); subject_depth: median over frames of the median depth of the
    central third of the image (the pivot of arcs, orbits and dollies); focal: fx of frame 0 in pixels."""

    near_depth: float
    subject_depth: float
    focal: float

    def pixels_to_units(self, pixels: float) -> float:
        """Camera translation that moves content at the near depth by ``pixels`` px (the original's max_disp)."""
        return pixels * self.near_depth / self.focal


def scene_scale(scene) -> SceneScale:
    """SceneScale of a Scene (needs ``depth`` (N, H, W) and ``K`` (N, 3, 3))."""
    depth = np.asarray(scene.depth)
    step = int(np.ceil(np.sqrt(depth[0].size / MAX_DEPTH_SAMPLES)))
    depth = depth[:, ::step, ::step]
    n, h, w = depth.shape
    near = 0.9 * np.percentile(np.percentile(depth.reshape(n, -1), 5, axis=1), 5)
    centre = depth[:, h // 3: h - h // 3, w // 3: w - w // 3].reshape(n, -1)
    subject = np.median(np.median(centre, axis=1))
    return SceneScale(float(near), float(subject), float(scene.K[0, 0, 0]))


def sample_times(time: dict, n_frames: int, count: int) -> np.ndarray:
    """Output times (count,) in [0, n_frames-1] for a preset's ``time`` section (fractions of the clip).

    play: start -> end; freeze: constant ``at``; slow: the window of total length ``window`` centred on
    ``center``, clipped to the clip (the original: linspace(max(0, c - d), min(N - 2, c + d), n); our
    interpolation reads t = N-1 exactly, so the upper clip is N-1).
    """
    last = n_frames - 1
    mode = time["mode"]
    if mode == "play":
        return np.linspace(time["start"] * last, time["end"] * last, count)
    if mode == "freeze":
        return np.full(count, time["at"] * last)
    centre, half = time["center"] * last, time["window"] / 2 * last
    return np.linspace(max(0.0, centre - half), min(float(last), centre + half), count)


def progress(profile: str, s: np.ndarray) -> np.ndarray:
    """Share of the move done at s in [0, 1]: linear; ease (in-out cosine); pingpong (out and back)."""
    if profile == "linear":
        return s
    if profile == "ease":
        return (1 - np.cos(np.pi * s)) / 2
    return (1 - np.cos(2 * np.pi * s)) / 2


def rot_x(angle: np.ndarray) -> np.ndarray:
    """Rotations about the camera x axis; positive tilts the view up (OpenCV y is down). (T,) rad -> (T, 3, 3)."""
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(c), np.zeros_like(c)
    return np.stack([one, zero, zero, zero, c, -s, zero, s, c], axis=-1).reshape(-1, 3, 3)


def rot_y(angle: np.ndarray) -> np.ndarray:
    """Rotations about the camera y axis; positive pans the view right. (T,) rad -> (T, 3, 3)."""
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(c), np.zeros_like(c)
    return np.stack([c, zero, s, zero, one, zero, -s, zero, c], axis=-1).reshape(-1, 3, 3)


def aim_at(position: np.ndarray, depth: float) -> np.ndarray:
    """Rotations (no roll) that turn a camera at ``position`` (T, 3), given in the base camera frame, to look
    at the pivot (0, 0, depth) on the base optical axis, keeping the base's up. Returns (T, 3, 3)."""
    eye = torch.from_numpy(np.asarray(position, dtype=np.float64))
    target = torch.tensor([0.0, 0.0, depth], dtype=torch.float64).expand_as(eye)
    up = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64).expand_as(eye)  # OpenCV: image up is -y
    return look_at(eye, target, up)[:, :3, :3].numpy()


def _around_pivot(angle: np.ndarray, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions on the horizontal circle through the camera around the pivot; positive angle = right."""
    position = np.stack([depth * np.sin(angle), np.zeros_like(angle), depth * (1 - np.cos(angle))], axis=-1)
    return aim_at(position, depth), position


def motion_offsets(camera: dict, count: int, scale: SceneScale) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The preset's move in the base camera frame for ``count`` output frames.

    Returns rotation (T, 3, 3), camera centre (T, 3) and focal scale (T,): the offset pose is [rotation | centre].
    """
    motion = camera["motion"]
    s = np.linspace(0.0, 1.0, count)
    p = progress(camera.get("profile", "linear"), s)
    rotation = np.repeat(np.eye(3)[None], count, axis=0)
    centre = np.zeros((count, 3))
    zoom = np.ones(count)
    sign = -1.0 if camera.get("direction") in ("left", "out", "down") else 1.0
    if motion == "wobble":  # the original: v_k on an ellipse, L = n // laps points per lap, offset [I | -v]
        laps_len = max(1, count // camera["laps"])
        theta = 2 * np.pi * (np.arange(count) % laps_len) / laps_len
        amp = scale.pixels_to_units(camera["pixels"])
        centre = -np.stack([amp * np.sin(theta), 0.5 * amp * np.cos(theta), np.zeros(count)], axis=-1)
    elif motion == "truck":
        centre[:, 0] = sign * scale.pixels_to_units(camera["pixels"]) * p
    elif motion == "crane":
        centre[:, 1] = -sign * scale.pixels_to_units(camera["pixels"]) * p  # OpenCV y points down
    elif motion in ("dolly", "dolly_zoom"):
        centre[:, 2] = sign * camera["depth_fraction"] * scale.subject_depth * p
        if motion == "dolly_zoom":  # f' / z' = f / z at the subject depth keeps its projected size
            zoom = (scale.subject_depth - centre[:, 2]) / scale.subject_depth
    elif motion == "zoom":
        zoom = 1 + (camera["factor"] - 1) * p
    elif motion == "pan":
        rotation = rot_y(sign * np.radians(camera["degrees"]) * p)
    elif motion == "tilt":
        rotation = rot_x(sign * np.radians(camera["degrees"]) * p)
    elif motion in ("arc", "orbit"):
        if motion == "arc":
            angle = sign * np.radians(camera["degrees"]) * p
        else:  # swing right, left and back, ``laps`` times
            angle = np.radians(camera["degrees"]) * np.sin(2 * np.pi * camera["laps"] * s)
        rotation, centre = _around_pivot(angle, scale.subject_depth)
    elif motion == "spiral":  # circle whose radius grows then shrinks back, always facing the subject
        radius = scale.pixels_to_units(camera["pixels"]) * np.sin(np.pi * s)
        theta = 2 * np.pi * camera["laps"] * s
        centre = np.stack([radius * np.sin(theta), -radius * np.cos(theta), np.zeros(count)], axis=-1)
        rotation = aim_at(centre, scale.subject_depth)
    return rotation, centre, zoom


def base_trajectory(camera: dict, scene, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base poses (T, 4, 4) and intrinsics (T, 3, 3) at ``times``: follow the input trajectory, its smoothed
    version (sigma = smoothing x clip length), or the single pose at the middle of the time range."""
    c2w, K = np.asarray(scene.c2w, dtype=np.float64), np.asarray(scene.K, dtype=np.float64)
    if camera["base"] == "fixed":
        anchor = np.full(len(times), (times.min() + times.max()) / 2)
        return interpolate_poses(c2w, anchor), interpolate_intrinsics(K, anchor)
    if camera["base"] == "smooth":
        c2w = smooth_poses(c2w, camera["smoothing"] * (len(c2w) - 1))
    return interpolate_poses(c2w, times), interpolate_intrinsics(K, times)


def make_path(preset: Preset, scene, **overrides) -> CameraPath:
    """The camera path of ``preset`` on ``scene`` (needs c2w, K, depth, hw, n_frames, meta).

    ``overrides`` go through ``Preset.with_overrides`` (validated), e.g. ``frames=50, camera={"pixels": 48}``.
    'clip' frames / fps take the scene's frame count / ``meta['fps']`` (30 if unknown).
    """
    if overrides:
        preset = preset.with_overrides(**overrides)
    n = scene.n_frames
    count = preset.frames or n
    fps = preset.fps or float(scene.meta.get("fps") or DEFAULT_FPS)
    times = sample_times(preset.time, n, count)
    base_c2w, base_K = base_trajectory(preset.camera, scene, times)
    rotation, centre, zoom = motion_offsets(preset.camera, count, scene_scale(scene))
    offset = np.zeros((count, 4, 4))
    offset[:, :3, :3], offset[:, :3, 3], offset[:, 3, 3] = rotation, centre, 1
    K = base_K.copy()
    K[:, 0, 0] *= zoom
    K[:, 1, 1] *= zoom
    return CameraPath(times=times, c2w=base_c2w @ offset, K=K, hw=tuple(scene.hw), fps=fps, name=preset.name)
