"""Export / import nerfstudio's ``camera_path.json`` so paths travel between this app and nerfstudio's viewer.

nerfstudio's format (``get_path_from_json``): ``render_height`` / ``render_width``, ``fps``, ``seconds`` and a
``camera_path`` list of {``camera_to_world``: row-major flattened 4x4 in OpenGL convention (x right, y up,
z backward), ``fov``: vertical field of view in degrees, ``aspect``: W / H, ``render_time``: time in [0, 1]}.
Its viewer reloads the ``keyframes`` list ({``matrix``, ``fov``, ``aspect``, ...}); we write one keyframe per
pose. nerfstudio puts the principal point at the image centre with pixel centres at +0.5 and uses one focal
length, so a K with fx != fy or an off-centre principal point does not survive the trip; the pose, the time and
fy do. The number of input frames goes in an extra ``pgdvs`` block (nerfstudio ignores it) to map times back.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from ..errors import InputError
from .paths import DEFAULT_FPS, CameraPath

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])  # flips camera y and z; its own inverse


def to_nerfstudio(path: CameraPath, n_frames: int) -> dict:
    """The camera_path.json mapping of ``path`` on a scene of ``n_frames`` input frames."""
    height, width = path.hw
    fovs = np.degrees(2 * np.arctan2(height / 2, path.K[:, 1, 1]))
    times = path.times / max(n_frames - 1, 1)
    cameras = [{"camera_to_world": (c2w @ OPENCV_TO_OPENGL).reshape(-1).tolist(), "fov": float(fov),
                "aspect": width / height, "render_time": float(t)}
               for c2w, fov, t in zip(path.c2w, fovs, times)]
    keyframes = [{"matrix": cam["camera_to_world"], "fov": cam["fov"], "aspect": cam["aspect"],
                  "override_time_enabled": True, "render_time": cam["render_time"],
                  "override_transition_enabled": False, "override_transition_sec": None} for cam in cameras]
    return {
        "camera_type": "perspective",
        "render_height": int(height),
        "render_width": int(width),
        "fps": float(path.fps),
        "seconds": len(path) / float(path.fps),
        "is_cycle": False,
        "smoothness_value": 0.0,
        "default_fov": float(fovs[0]),
        "default_transition_sec": 1.0 / float(path.fps),
        "keyframes": keyframes,
        "camera_path": cameras,
        "pgdvs": {"n_frames": int(n_frames), "name": path.name},
    }


def write_nerfstudio(path: CameraPath, file: str | Path, n_frames: int) -> Path:
    """Write ``camera_path.json`` atomically. Returns the file path."""
    with atomic_file(file) as tmp:
        tmp.write_text(json.dumps(to_nerfstudio(path, n_frames), indent=1))
    return Path(file)


def _need(data: dict, key: str, source: str, kind=(int, float), lo=0.0, hi=math.inf):
    value = data.get(key)
    if value is None:
        raise InputError(f"{source}: key '{key}' is missing")
    if isinstance(value, bool) or not isinstance(value, kind) or not lo < value < hi:
        raise InputError(f"{source}: key '{key}' is {value!r}, expected a number in ({lo:g}, {hi:g})")
    return value


def from_nerfstudio(data, n_frames: int | None = None, source: str = "camera_path.json") -> CameraPath:
    """A CameraPath from a camera_path.json mapping. Times: ``render_time`` x (n_frames - 1), with n_frames
    from the argument or the file's ``pgdvs`` block; a path without render_time (made for a static scene)
    plays the clip through, or stays at time 0 when n_frames is unknown."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a JSON object with 'camera_path', got {type(data).__name__}")
    if data.get("camera_type", "perspective") != "perspective":
        raise InputError(f"{source}: key 'camera_type' is {data['camera_type']!r}; only 'perspective' is supported")
    height = _need(data, "render_height", source, int)
    width = _need(data, "render_width", source, int)
    fps = _need(data, "fps", source, hi=1000) if "fps" in data else DEFAULT_FPS
    cameras = data.get("camera_path")
    if not isinstance(cameras, list) or not cameras:
        raise InputError(f"{source}: key 'camera_path' must be a non-empty list of cameras")
    n_frames = n_frames or (data.get("pgdvs") or {}).get("n_frames")
    c2w, fy, times = [], [], []
    for i, cam in enumerate(cameras):
        where = f"{source}: camera_path[{i}]"
        if not isinstance(cam, dict):
            raise InputError(f"{where} must be an object, got {type(cam).__name__}")
        matrix = np.asarray(cam.get("camera_to_world"), dtype=object)
        if matrix.shape != (16,) or not all(isinstance(v, (int, float)) for v in matrix):
            raise InputError(f"{where}: key 'camera_to_world' must be a list of 16 numbers (row-major 4x4)")
        c2w.append(matrix.astype(np.float64).reshape(4, 4) @ OPENCV_TO_OPENGL)
        fy.append(height / 2 / math.tan(math.radians(_need(cam, "fov", where, hi=180.0)) / 2))
        times.append(cam.get("render_time"))
    if all(t is not None for t in times):
        if not n_frames:
            raise InputError(f"{source}: has render_time values; pass n_frames (input frames of the scene) to map them")
        times = np.clip(np.asarray(times, dtype=np.float64), 0, 1) * (n_frames - 1)
    else:
        times = np.linspace(0, (n_frames or 1) - 1, len(cameras))
    K = np.zeros((len(cameras), 3, 3))
    K[:, 0, 0] = K[:, 1, 1] = fy
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = width / 2 - 0.5, height / 2 - 0.5, 1.0
    name = (data.get("pgdvs") or {}).get("name", "")
    return CameraPath(times=times, c2w=np.stack(c2w), K=K, hw=(height, width), fps=float(fps), name=str(name))


def read_nerfstudio(file: str | Path, n_frames: int | None = None) -> CameraPath:
    """Read a camera_path.json file; errors name the file and the key."""
    file = Path(file)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{file}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    return from_nerfstudio(data, n_frames, str(file))
