"""Import / export of the original PGDVS per-scene folder (``pgdvs-method.md`` section 2).

```
<scene>/rgbs/<stem>.png|jpg                 uint8 H x W x 3, sorted by name; stems are the frame ids
<scene>/poses/<stem>.npz                    c2w 4x4 (OpenCV), K 4x4 (3x3 top-left) at the RGB resolution
        or <scene>/poses.npy                legacy: N x 32 = [c2w 4x4 | K 4x4] flattened, rows in stem order
<scene>/depths/<stem>.npz                   depth H' x W' z-depth; resized nearest to H x W on import
<scene>/masks/final/<stem>_final.png        dynamic mask (value > 0); resized nearest if not H x W
<scene>/flows/interval_1/<a>_<b>.npz        flow, coord_diff H x W x 2, for (i, i+1) and (i+1, i); optional
```

K: the original's loader resizes depth to the RGB size but never rescales K, so a folder is only correct when
its K describes the RGB resolution (``k_at="rgb"``, the default). Folders written by pipelines that kept K at
the depth resolution (the original's casualSAM path) import correctly with ``k_at="depth"``, which rescales K
to the RGB size.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from .atomic import atomic_dir
from .errors import InputError, SceneFormatError
from .geometry import rescale_intrinsics
from .scene import Scene, check_array
from .videoio import to_uint8
from .warp import flow_consistency

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
K_AT = ("rgb", "depth")
FLOW_DIR = Path("flows") / "interval_1"
MASK_DIR = Path("masks") / "final"


def import_pgdvs_layout(path: str | Path, k_at: str = "rgb") -> Scene:
    """Read an original-layout folder into a validated :class:`Scene` (flows included when present)."""
    root = Path(path)
    if k_at not in K_AT:
        raise InputError(f"k_at must be one of {K_AT}, got {k_at!r}")
    if not root.is_dir():
        raise SceneFormatError(f"{root}: not a PGDVS scene folder (no such directory)")
    stems, rgb = _read_rgbs(root / "rgbs")
    hw = rgb.shape[1:3]
    c2w, K = _read_poses(root, stems)
    depth, depth_hw = _read_depths(root / "depths", stems, hw)
    if k_at == "depth" and depth_hw != hw:
        K = rescale_intrinsics(torch.from_numpy(K), depth_hw, hw).numpy()
    dyn_mask = _read_masks(root / MASK_DIR, stems, hw)
    flow_fwd, flow_bwd = _read_flows(root / FLOW_DIR, stems, hw)
    meta = {"source": f"pgdvs-layout:{root}", "frame_ids": stems}
    scene = Scene(rgb=rgb, K=K, c2w=c2w, depth=depth, dyn_mask=dyn_mask, flow_fwd=flow_fwd, flow_bwd=flow_bwd,
                  meta=meta)
    return scene.validate(str(root))


def export_pgdvs_layout(scene: Scene, path: str | Path) -> Path:
    """Write ``scene`` as an original-layout folder, atomically. RGB goes out as uint8 PNG; flows (both
    directions, with ``coord_diff`` from :func:`pgdvs.warp.flow_consistency`) only when the scene has them."""
    scene.validate()
    if (scene.flow_fwd is None) != (scene.flow_bwd is None):
        raise InputError("export needs both flow_fwd and flow_bwd (the layout stores both directions) or neither")
    stems = scene.frame_ids
    bad = [s for s in stems if not s or "/" in s or "\\" in s or s in (".", "..")]
    if bad or len(set(stems)) != len(stems):
        raise InputError(f"meta.frame_ids must be unique, non-empty file stems; offending: {bad or stems}")
    rgb8 = to_uint8(scene.rgb)
    with atomic_dir(path) as tmp:
        for sub in ("rgbs", "poses", "depths", MASK_DIR):
            (tmp / sub).mkdir(parents=True)
        for i, stem in enumerate(stems):
            _write_image(tmp / "rgbs" / f"{stem}.png", cv2.cvtColor(rgb8[i], cv2.COLOR_RGB2BGR))
            np.savez(tmp / "poses" / f"{stem}.npz", c2w=scene.c2w[i], K=_k44(scene.K[i]))
            np.savez(tmp / "depths" / f"{stem}.npz", depth=scene.depth[i])
            _write_image(tmp / MASK_DIR / f"{stem}_final.png", scene.dyn_mask[i].astype(np.uint8) * 255)
        if scene.flow_fwd is not None:
            _write_flows(tmp / FLOW_DIR, stems, scene.flow_fwd, scene.flow_bwd)
    return Path(path)


def _k44(K: np.ndarray) -> np.ndarray:
    out = np.eye(4, dtype=K.dtype)
    out[:3, :3] = K
    return out


def _write_image(path: Path, image: np.ndarray):
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not write image")


def _write_flows(folder: Path, stems: list[str], flow_fwd: np.ndarray, flow_bwd: np.ndarray):
    folder.mkdir(parents=True)
    fwd, bwd = torch.from_numpy(flow_fwd), torch.from_numpy(flow_bwd)
    diff_fwd = flow_consistency(fwd, bwd).numpy()
    diff_bwd = flow_consistency(bwd, fwd).numpy()
    for i in range(len(stems) - 1):
        a, b = stems[i], stems[i + 1]
        np.savez(folder / f"{a}_{b}.npz", flow=flow_fwd[i], coord_diff=diff_fwd[i])
        np.savez(folder / f"{b}_{a}.npz", flow=flow_bwd[i], coord_diff=diff_bwd[i])


# ---------------------------------------------------------------- readers


def _require_dir(folder: Path) -> Path:
    if not folder.is_dir():
        raise SceneFormatError(f"{folder}: missing folder (the PGDVS layout needs it)")
    return folder


def _check_stems(folder: Path, found: list[str], stems: list[str], pattern: str):
    """Files in ``folder`` must match the RGB stems one to one; name the first offenders."""
    missing = [s for s in stems if s not in set(found)]
    extra = sorted(set(found) - set(stems))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no {pattern.format(missing[0])} for rgb stem(s) {missing[:5]}")
        if extra:
            parts.append(f"stem(s) {extra[:5]} have no image in rgbs/")
        raise SceneFormatError(f"{folder}: stem mismatch with rgbs/: " + "; ".join(parts))


def _read_image(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise SceneFormatError(f"{path}: unreadable image")
    return image


def _read_rgbs(folder: Path) -> tuple[list[str], np.ndarray]:
    files = sorted(f for f in _require_dir(folder).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise SceneFormatError(f"{folder}: several images share the stem(s) {dup[:5]}")
    if len(files) < 2:
        raise SceneFormatError(f"{folder}: holds {len(files)} image(s) ({'/'.join(IMAGE_SUFFIXES)}); need at least 2")
    frames = []
    for f in files:
        bgr = _read_image(f, cv2.IMREAD_COLOR)
        if frames and bgr.shape != frames[0].shape:
            raise SceneFormatError(f"{f}: size {bgr.shape[1]}x{bgr.shape[0]} differs from "
                                   f"{files[0].name} ({frames[0].shape[1]}x{frames[0].shape[0]})")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return stems, np.stack(frames).astype(np.float32) / 255.0


def _load_npz(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise SceneFormatError(f"{path}: missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in keys + optional if k in data.files}
    except Exception as exc:  # zip / format errors differ per corruption; all mean "unreadable" to a user
        raise SceneFormatError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    for k in keys:
        if k not in out:
            raise SceneFormatError(f"{path}: field '{k}' is missing")
    return out


def _npz_stems(folder: Path) -> list[str]:
    return [f.stem for f in folder.iterdir() if f.suffix == ".npz"]


def _k33(where: str, K: np.ndarray) -> np.ndarray:
    if K.shape == (3, 3):
        return K
    check_array(where, "K", K, (4, 4), "fiu")
    return K[:3, :3]


def _read_poses(root: Path, stems: list[str]) -> tuple[np.ndarray, np.ndarray]:
    folder, legacy = root / "poses", root / "poses.npy"
    if not folder.is_dir():
        if legacy.is_file():
            return _read_legacy_poses(legacy, len(stems))
        raise SceneFormatError(f"{folder}: missing folder (and no legacy {legacy.name})")
    _check_stems(folder, _npz_stems(folder), stems, "{}.npz")
    c2w, K = [], []
    for stem in stems:
        f = folder / f"{stem}.npz"
        data = _load_npz(f, ("c2w", "K"))
        check_array(str(f), "c2w", data["c2w"], (4, 4), "fiu")
        check_array(str(f), "K", data["K"], (None, None), "fiu")
        c2w.append(data["c2w"])
        K.append(_k33(str(f), data["K"]))
    return np.stack(c2w).astype(np.float64), np.stack(K).astype(np.float64)


def _read_legacy_poses(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        flat = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise SceneFormatError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    check_array(str(path), "poses", flat, (n, 32), "fiu")
    flat = flat.astype(np.float64)
    return flat[:, :16].reshape(n, 4, 4), flat[:, 16:].reshape(n, 4, 4)[:, :3, :3].copy()


def _read_depths(folder: Path, stems: list[str], hw: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    _check_stems(_require_dir(folder), _npz_stems(folder), stems, "{}.npz")
    out, depth_hw = [], None
    for stem in stems:
        f = folder / f"{stem}.npz"
        depth = _load_npz(f, ("depth",))["depth"]
        check_array(str(f), "depth", depth, (None, None), "f")
        if depth_hw is not None and depth.shape != depth_hw:
            raise SceneFormatError(f"{f}: field 'depth' has shape {depth.shape}, the first depth map has {depth_hw}")
        depth_hw = depth.shape
        if depth.size and depth.min() <= 0:
            raise SceneFormatError(f"{f}: field 'depth' must be > 0 everywhere (min {depth.min():.4g})")
        out.append(_resize_nearest(depth.astype(np.float32), hw))
    return np.stack(out), depth_hw


def _read_masks(folder: Path, stems: list[str], hw: tuple[int, int]) -> np.ndarray:
    found = [f.name[: -len("_final.png")] for f in _require_dir(folder).iterdir() if f.name.endswith("_final.png")]
    _check_stems(folder, found, stems, "{}_final.png")
    out = []
    for stem in stems:
        mask = _read_image(folder / f"{stem}_final.png", cv2.IMREAD_GRAYSCALE)
        out.append(_resize_nearest(mask, hw) > 0)
    return np.stack(out)


def _read_flows(folder: Path, stems: list[str], hw: tuple[int, int]):
    if not folder.is_dir():
        return None, None
    fwd, bwd = [], []
    for i in range(len(stems) - 1):
        a, b = stems[i], stems[i + 1]
        for src, dst, acc in ((a, b, fwd), (b, a, bwd)):
            f = folder / f"{src}_{dst}.npz"
            data = _load_npz(f, ("flow",), optional=("coord_diff",))
            for key, value in data.items():
                check_array(str(f), key, value, (None, None, 2), "f")
                if value.shape[:2] != hw:
                    raise SceneFormatError(f"{f}: field '{key}' is {value.shape[1]}x{value.shape[0]}, the layout "
                                           f"requires the RGB resolution {hw[1]}x{hw[0]} (flows are never resized)")
            acc.append(data["flow"].astype(np.float32))
    return np.stack(fwd), np.stack(bwd)


def _resize_nearest(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(hw):
        return image
    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
