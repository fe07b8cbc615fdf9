"""``Scene``: the one data model every pipeline stage reads and writes.

Arrays are numpy (the library converts to torch where it computes). Shapes, N frames of H x W:
- ``rgb``      (N, H, W, 3) float32 in [0, 1]
- ``K``        (N, 3, 3)    float64, pixels, at the RGB resolution
- ``c2w``      (N, 4, 4)    float64, OpenCV camera-to-world
- ``depth``    (N, H, W)    float32 z-depth > 0, in pose units
- ``dyn_mask`` (N, H, W)    bool, True = dynamic
- ``flow_fwd`` (N-1, H, W, 2) float32, frame i -> i+1 (x, y); ``flow_bwd`` the same for i+1 -> i (optional)
- ``meta``     dict: ``source``, ``fps``, ``frame_ids`` (list of N stems), anything else JSON-able.

A scene folder holds ``scene.json`` (version, meta, shapes) and ``arrays.npz``; RGB is stored as uint8.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .atomic import atomic_dir
from .errors import SceneFormatError
from .videoio import to_uint8

SCENE_VERSION = 1
SCENE_JSON = "scene.json"
SCENE_ARRAYS = "arrays.npz"


@dataclass
class EvalViews:
    """Held-out ground-truth views: M targets at times ``time`` (fractional frame index).

    time (M,), camera (M,) int (rig camera id, -1 if none), c2w (M, 4, 4), K (M, 3, 3), rgb (M, H, W, 3),
    depth (M, H, W), dyn_mask (M, H, W) bool, covis (M, H, W) bool or None (pixels seen by an input frame).
    """

    time: np.ndarray
    camera: np.ndarray
    c2w: np.ndarray
    K: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray
    dyn_mask: np.ndarray
    covis: np.ndarray | None = None


@dataclass
class GroundTruth:
    """Exact geometry of the input frames (any field may be None) plus held-out views."""

    c2w: np.ndarray | None = None
    K: np.ndarray | None = None
    depth: np.ndarray | None = None
    dyn_mask: np.ndarray | None = None
    views: EvalViews | None = None


@dataclass
class Scene:
    rgb: np.ndarray
    K: np.ndarray
    c2w: np.ndarray
    depth: np.ndarray
    dyn_mask: np.ndarray
    flow_fwd: np.ndarray | None = None
    flow_bwd: np.ndarray | None = None
    gt: GroundTruth | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[2])

    @property
    def frame_ids(self) -> list[str]:
        return list(self.meta.get("frame_ids") or [f"{i:05d}" for i in range(self.n_frames)])

    def validate(self, where: str = "scene") -> "Scene":
        """Check shapes, dtypes and ranges; raise SceneFormatError naming ``where`` and the field."""
        validate_fields(self, where)
        return self

    def save(self, path: str | Path) -> Path:
        """Write the scene folder atomically (temp folder + rename). Returns the path."""
        self.validate()
        arrays = _flatten(self)
        arrays["rgb"] = to_uint8(self.rgb)
        info = {"version": SCENE_VERSION, "meta": self.meta, "shapes": {k: list(v.shape) for k, v in arrays.items()}}
        try:
            text = json.dumps(info, indent=1, default=_json_default)
        except TypeError as exc:
            raise SceneFormatError(f"{path}: field 'meta' {exc}") from None
        with atomic_dir(path) as tmp:
            np.savez(tmp / SCENE_ARRAYS, **arrays)
            (tmp / SCENE_JSON).write_text(text)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Scene":
        path = Path(path)
        meta_file, arr_file = path / SCENE_JSON, path / SCENE_ARRAYS
        if not path.is_dir():
            raise SceneFormatError(f"{path}: not a scene folder (no such directory)")
        for f in (meta_file, arr_file):
            if not f.is_file():
                raise SceneFormatError(f"{f}: missing (a scene folder needs {SCENE_JSON} and {SCENE_ARRAYS})")
        try:
            info = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SceneFormatError(f"{meta_file}: not valid JSON ({exc})") from None
        if not isinstance(info, dict) or not isinstance(info.get("meta", {}), dict):
            raise SceneFormatError(f"{meta_file}: must be a JSON object with an object 'meta'")
        version = info.get("version")
        if version != SCENE_VERSION:
            raise SceneFormatError(f"{meta_file}: field 'version' is {version!r}, this release reads {SCENE_VERSION}")
        try:
            with np.load(arr_file, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:  # zipfile/np errors differ per corruption; all mean the same to a user
            raise SceneFormatError(f"{arr_file}: unreadable ({type(exc).__name__}: {exc})") from None
        for key in ("rgb", "K", "c2w", "depth", "dyn_mask"):
            if key not in arrays:
                raise SceneFormatError(f"{arr_file}: field '{key}' is missing")
        if arrays["rgb"].dtype != np.uint8:
            raise SceneFormatError(f"{arr_file}: field 'rgb' must be uint8, got {arrays['rgb'].dtype}")
        arrays["rgb"] = arrays["rgb"].astype(np.float32) / 255.0
        scene = _unflatten(arrays, info.get("meta", {}))
        return scene.validate(str(arr_file))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"meta value of type {type(obj).__name__} is not JSON-serialisable")


def _flatten(scene: Scene) -> dict[str, np.ndarray]:
    out = {}
    for f in fields(Scene):
        value = getattr(scene, f.name)
        if isinstance(value, np.ndarray):
            out[f.name] = value
    if scene.gt is not None:
        for f in fields(GroundTruth):
            value = getattr(scene.gt, f.name)
            if isinstance(value, np.ndarray):
                out[f"gt_{f.name}"] = value
        if scene.gt.views is not None:
            for f in fields(EvalViews):
                value = getattr(scene.gt.views, f.name)
                if value is not None:
                    out[f"view_{f.name}"] = value
    return out


def _unflatten(arrays: dict[str, np.ndarray], meta: dict) -> Scene:
    views = None
    if "view_time" in arrays:
        views = EvalViews(**{f.name: arrays.get(f"view_{f.name}") for f in fields(EvalViews)})
    gt_fields = {f.name: arrays.get(f"gt_{f.name}") for f in fields(GroundTruth) if f.name != "views"}
    gt = GroundTruth(**gt_fields, views=views) if views is not None or any(v is not None for v in gt_fields.values()) else None
    return Scene(
        rgb=arrays["rgb"], K=arrays["K"], c2w=arrays["c2w"], depth=arrays["depth"], dyn_mask=arrays["dyn_mask"],
        flow_fwd=arrays.get("flow_fwd"), flow_bwd=arrays.get("flow_bwd"), gt=gt, meta=meta,
    )


def _fail(where: str, name: str, problem: str):
    raise SceneFormatError(f"{where}: field '{name}' {problem}")


def check_array(where: str, name: str, arr, shape: tuple, kinds: str, lo=None, hi=None, finite=True):
    """Validate one array. ``shape`` entries of None match anything; ``kinds`` are numpy dtype kinds ('f', 'b', ...)."""
    if not isinstance(arr, np.ndarray):
        _fail(where, name, f"must be a numpy array, got {type(arr).__name__}")
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "x".join("?" if s is None else str(s) for s in shape)
        _fail(where, name, f"has shape {arr.shape}, expected {want}")
    if arr.dtype.kind not in kinds:
        _fail(where, name, f"has dtype {arr.dtype}, expected kind {kinds!r}")
    if arr.dtype.kind == "f" and arr.size:
        if finite and not np.isfinite(arr).all():
            _fail(where, name, "contains NaN or infinite values")
        if lo is not None and arr.min() < lo:
            _fail(where, name, f"has values below {lo} (min {arr.min():.4g})")
        if hi is not None and arr.max() > hi:
            _fail(where, name, f"has values above {hi} (max {arr.max():.4g})")


def check_cameras(where: str, prefix: str, K: np.ndarray, c2w: np.ndarray, n: int | None):
    check_array(where, f"{prefix}K", K, (n, 3, 3), "f")
    check_array(where, f"{prefix}c2w", c2w, (n, 4, 4), "f")
    if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
        _fail(where, f"{prefix}K", "has a non-positive focal length")
    rot = c2w[:, :3, :3]
    err = np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max() if len(rot) else 0.0
    if err > 1e-3:
        _fail(where, f"{prefix}c2w", f"rotation is not orthonormal (max error {err:.2e})")
    if len(c2w) and np.abs(c2w[:, 3] - np.array([0, 0, 0, 1])).max() > 1e-6:
        _fail(where, f"{prefix}c2w", "last row must be [0, 0, 0, 1]")


def validate_fields(scene: Scene, where: str):
    check_array(where, "rgb", scene.rgb, (None, None, None, 3), "f", 0.0, 1.0)
    n, h, w = scene.rgb.shape[:3]
    if n < 2:
        _fail(where, "rgb", f"holds {n} frame(s); a scene needs at least 2")
    check_cameras(where, "", scene.K, scene.c2w, n)
    check_array(where, "depth", scene.depth, (n, h, w), "f")
    if scene.depth.size and scene.depth.min() <= 0:
        _fail(where, "depth", f"must be > 0 everywhere (min {scene.depth.min():.4g})")
    check_array(where, "dyn_mask", scene.dyn_mask, (n, h, w), "b")
    for name in ("flow_fwd", "flow_bwd"):
        if getattr(scene, name) is not None:
            check_array(where, name, getattr(scene, name), (n - 1, h, w, 2), "f")
    ids = scene.meta.get("frame_ids")
    if ids is not None and len(ids) != n:
        _fail(where, "meta.frame_ids", f"has {len(ids)} entries for {n} frames")
    gt = scene.gt
    if gt is None:
        return
    if gt.c2w is not None or gt.K is not None:
        if gt.c2w is None or gt.K is None:
            _fail(where, "gt_c2w" if gt.c2w is None else "gt_K", "must be given together with its pair")
        check_cameras(where, "gt_", gt.K, gt.c2w, n)
    if gt.depth is not None:
        check_array(where, "gt_depth", gt.depth, (n, h, w), "f", 0.0)
    if gt.dyn_mask is not None:
        check_array(where, "gt_dyn_mask", gt.dyn_mask, (n, h, w), "b")
    v = gt.views
    if v is not None:
        m = v.time.shape[0] if isinstance(v.time, np.ndarray) else None
        check_array(where, "view_time", v.time, (m,), "f", 0.0, n - 1.0)
        check_array(where, "view_camera", v.camera, (m,), "iu")
        check_cameras(where, "view_", v.K, v.c2w, m)
        check_array(where, "view_rgb", v.rgb, (m, None, None, 3), "f", 0.0, 1.0)
        vh, vw = v.rgb.shape[1:3]
        check_array(where, "view_depth", v.depth, (m, vh, vw), "f", 0.0)
        check_array(where, "view_dyn_mask", v.dyn_mask, (m, vh, vw), "b")
        if v.covis is not None:
            check_array(where, "view_covis", v.covis, (m, vh, vw), "b")
