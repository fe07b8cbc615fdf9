"""Intrinsics and camera poses for a casual clip.

The route is COLMAP's incremental SfM through pycolmap (SIFT, sequential matching, one shared SIMPLE_PINHOLE
camera), with features restricted to static pixels when a mask is given. Frames COLMAP leaves out are filled by
interpolating their registered neighbours. Poses are normalised so frame 0 is the identity and the median depth of
the sparse points is 1 (any scale is valid for a monocular clip; this one keeps depths near 1).

Conventions: OpenCV cameras, ``c2w`` (N, 4, 4) float64, ``K`` (3, 3) pixels with integer pixel centres
(COLMAP puts pixel centres at +0.5, hence the 0.5 shifts below).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ..videoio import to_uint8

DEFAULT_HFOV_DEG = 60.0  # typical phone video; used when SfM cannot constrain the focal length


@dataclass
class CameraEstimate:
    """Result of pose estimation.

    K (3, 3) shared intrinsics; c2w (N, 4, 4); registered (N,) bool (False = interpolated);
    points (P, 3) sparse static world points (may be empty); reproj_error mean pixels (nan if unknown).
    """

    K: np.ndarray
    c2w: np.ndarray
    registered: np.ndarray
    points: np.ndarray
    reproj_error: float
    backend: str
    notices: list[str] = field(default_factory=list)


def guess_intrinsics(hw: tuple[int, int], hfov_deg: float = DEFAULT_HFOV_DEG) -> np.ndarray:
    """Pinhole K (3, 3) for images of size hw = (H, W) with the given horizontal field of view, principal point at
    ((W - 1) / 2, (H - 1) / 2)."""
    height, width = hw
    f = 0.5 * width / np.tan(np.deg2rad(hfov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


def colmap_poses(frames: np.ndarray, static_mask: np.ndarray | None = None, max_features: int = 2048,
                 overlap: int = 10, seed: int = 0, upsample: bool = False,
                 init_min_tri_angle: float = 4.0) -> CameraEstimate | None:
    """Incremental SfM with pycolmap; the shared focal length is refined from COLMAP's own guess (1.2 x the
    longer side; passing a 60 degree guess as a prior made mapping less reliable here). Returns None when no
    model with at least 3 frames could be built.

    frames (N, H, W, 3) float32 [0, 1]; static_mask (N, H, W) bool, True = may hold features.
    """
    import pycolmap

    pycolmap.logging.minloglevel = 2
    n, height, width = frames.shape[:3]
    with tempfile.TemporaryDirectory(prefix="pgdvs-colmap-") as tmp:
        tmp = Path(tmp)
        image_dir, mask_dir, out_dir = tmp / "images", tmp / "masks", tmp / "sparse"
        for d in (image_dir, mask_dir, out_dir):
            d.mkdir()
        names = [f"{i:05d}.png" for i in range(n)]
        for i, name in enumerate(names):
            bgr = cv2.cvtColor(to_uint8(frames[i]), cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(image_dir / name), bgr)
            if static_mask is not None:
                cv2.imwrite(str(mask_dir / f"{name}.png"), static_mask[i].astype(np.uint8) * 255)
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "SIMPLE_PINHOLE"
        if static_mask is not None:
            reader.mask_path = str(mask_dir)
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.sift.max_num_features = max_features
        extraction.sift.first_octave = -1 if upsample else 0  # 2x upsampling finds more features, 3-4x slower
        extraction.num_threads = 2
        db = tmp / "db.db"
        pycolmap.extract_features(db, image_dir, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                                  extraction_options=extraction, device=pycolmap.Device.cpu)
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = overlap
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = 2
        pycolmap.match_sequential(db, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu)
        opts = pycolmap.IncrementalPipelineOptions()
        opts.multiple_models = False
        opts.num_threads = 2
        opts.random_seed = seed
        opts.mapper.init_min_tri_angle = init_min_tri_angle  # video baselines are short
        opts.mapper.init_min_num_inliers = 50  # small frames have few features (COLMAP's default: 100)
        opts.mapper.abs_pose_min_num_inliers = 15
        models = pycolmap.incremental_mapping(db, image_dir, out_dir, options=opts)
        if not models:
            return None
        rec = max(models.values(), key=lambda r: r.num_reg_images())
        if rec.num_reg_images() < 3:
            return None
        return _from_reconstruction(rec, names, (height, width))


def _from_reconstruction(rec, names: list[str], hw: tuple[int, int]) -> CameraEstimate:
    """Convert a pycolmap Reconstruction to our conventions, interpolate missing frames, normalise scale."""
    n = len(names)
    index = {name: i for i, name in enumerate(names)}
    c2w = np.tile(np.eye(4), (n, 1, 1))
    registered = np.zeros(n, bool)
    for image in rec.images.values():
        if not image.has_pose:
            continue
        i = index[image.name]
        w2c = np.eye(4)
        w2c[:3] = image.cam_from_world().matrix()
        c2w[i] = np.linalg.inv(w2c)
        registered[i] = True
    camera = next(iter(rec.cameras.values()))
    f, cx, cy = camera.params[:3]
    K = np.array([[f, 0, cx - 0.5], [0, f, cy - 0.5], [0, 0, 1]], dtype=np.float64)
    points = np.array([p.xyz for p in rec.points3D.values()], dtype=np.float64).reshape(-1, 3)
    errors = [p.error for p in rec.points3D.values()]
    c2w = interpolate_poses(c2w, registered)
    c2w, points = normalise_poses(c2w, points)
    notices = []
    if not registered.all():
        notices.append(f"cameras: {int((~registered).sum())} of {n} frames were not registered by SfM; "
                       "their poses are interpolated")
    return CameraEstimate(K, c2w, registered, points, float(np.mean(errors)) if errors else float("nan"),
                          "colmap", notices)


def interpolate_poses(c2w: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill poses where ``known`` is False: slerp + linear inside, nearest known pose at the ends.

    c2w (N, 4, 4), known (N,) bool with at least one True -> (N, 4, 4).
    """
    idx = np.flatnonzero(known)
    out = c2w.copy()
    if len(idx) == len(c2w):
        return out
    t = np.arange(len(c2w))
    clipped = np.clip(t, idx[0], idx[-1])
    if len(idx) == 1:
        out[:] = c2w[idx[0]]
        return out
    rots = Slerp(idx, Rotation.from_matrix(c2w[idx, :3, :3]))(clipped)
    out[:, :3, :3] = rots.as_matrix()
    for k in range(3):
        out[:, k, 3] = np.interp(clipped, idx, c2w[idx, k, 3])
    out[:, 3] = [0, 0, 0, 1]
    return out


def normalise_poses(c2w: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move frame 0 to the identity and scale so the median sparse-point depth in the cameras is 1
    (or the camera path length is 1 when there are no points). c2w (N, 4, 4), points (P, 3)."""
    w2c0 = np.linalg.inv(c2w[0])
    c2w = w2c0 @ c2w
    points = points @ w2c0[:3, :3].T + w2c0[:3, 3]
    scale = None
    if len(points):
        w2c = np.linalg.inv(c2w)
        depths = np.einsum("nj,pj->np", w2c[:, 2, :3], points) + w2c[:, 2, 3:4]
        pos = depths[depths > 0]
        if pos.size:
            scale = float(np.median(pos))
    if scale is None:
        path = float(np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1).sum())
        scale = path if path > 1e-9 else 1.0
    c2w = c2w.copy()
    c2w[:, :3, 3] /= scale
    return c2w, points / scale
