"""Intrinsics and camera poses for a casual clip.

The route is COLMAP's incremental SfM through pycolmap (SIFT, sequential matching, one shared SIMPLE_PINHOLE
camera), with features restricted to static pixels when a mask is given, and a last robust bundle adjustment.
Where SIFT finds too little (small or weakly textured frames), corner tracks chained through the optical flow
replace its features and matches. Frames COLMAP leaves out are filled by interpolating their registered
neighbours. Poses are normalised so frame 0 is the identity and the median depth of the sparse points is 1 (any
scale is valid for a monocular clip; this one keeps depths near 1).

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
MIN_TRACKED = 0.3  # flow tracks all end at a frame pair where fewer than this fraction of them survive
UPSAMPLE_BELOW = 320  # SIFT runs on 2x images for frames smaller than this (longer side): too few features else
SFM_THREADS = 1  # COLMAP is deterministic (fixed seed) only on one thread: same clip, same cameras
ROBUST_SCALE_PX = 0.5  # Cauchy scale of the final bundle adjustment: larger residuals (moving objects) count less
GLOBAL_BA_GROWTH = 1.4  # the mapper's global adjustment runs when the model grew by this factor (COLMAP: 1.1)
BA_ITERATIONS, BA_TOLERANCE = 20, 1e-6  # ... which stops here (a flow-track model took 17 s to run 100 rounds)


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
                 overlap: int = 10, seed: int = 0, upsample: bool | None = None,
                 init_min_tri_angle: float = 4.0, flows: dict[tuple[int, int], np.ndarray] | None = None,
                 verify_seed: int | None = None) -> CameraEstimate | None:
    """Incremental SfM with pycolmap; the shared focal length is refined from COLMAP's own guess (1.2 x the
    longer side; passing a 60 degree guess as a prior made mapping less reliable here). Returns None when no
    model with at least 3 frames could be built.

    frames (N, H, W, 3) float32 [0, 1]; static_mask (N, H, W) bool, True = may hold features. Features are SIFT
    matched over ``overlap`` neighbours, or, with ``flows`` = {(i, j): flow i -> j (H, W, 2)} holding both
    directions between every pair of neighbours, corner tracks chained through the flow (:func:`flow_tracks`):
    denser on weakly textured frames, where SIFT finds too few features; flows over larger gaps add matches
    between the tracks' corners (:func:`gap_matches`), which links tracks across a cut. ``upsample``: SIFT on 2x
    images (finds more features, 3-4x slower); None = only for frames whose longer side is under UPSAMPLE_BELOW.
    ``verify_seed``: seed of the geometric verification's RANSAC, for repeatable models; None keeps COLMAP's fresh
    draw per run (one seed for every pair moved the synthetic suite's cameras for the worse: handheld-garden ATE
    0.003 -> 0.04).
    """
    import pycolmap

    pycolmap.logging.minloglevel = 2
    pycolmap.set_random_seed(seed)  # RANSAC in matching and mapping draws from COLMAP's global generator
    n, height, width = frames.shape[:3]
    if upsample is None:
        upsample = max(height, width) < UPSAMPLE_BELOW
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
        db = tmp / "db.db"
        verify = pycolmap.TwoViewGeometryOptions()
        if verify_seed is not None:
            verify.ransac.random_seed = verify_seed
        if flows is None:
            if static_mask is not None:
                reader.mask_path = str(mask_dir)
            extraction = pycolmap.FeatureExtractionOptions()
            extraction.sift.max_num_features = max_features
            extraction.sift.first_octave = -1 if upsample else 0
            extraction.num_threads = SFM_THREADS
            pycolmap.extract_features(db, image_dir, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                                      extraction_options=extraction, device=pycolmap.Device.cpu)
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = overlap
            matching = pycolmap.FeatureMatchingOptions()
            matching.num_threads = SFM_THREADS
            pycolmap.match_sequential(db, matching_options=matching, pairing_options=pairing,
                                      verification_options=verify, device=pycolmap.Device.cpu)
        else:
            pycolmap.Database.open(db).close()  # creates the empty database import_images expects
            pycolmap.import_images(db, image_dir, camera_mode=pycolmap.CameraMode.SINGLE, image_names=names,
                                   options=reader)
            keypoints, ids = flow_tracks(frames, flows, static_mask=static_mask)
            _write_track_matches(db, tmp / "pairs.txt", names, keypoints, ids, overlap, flows)
            verify.detect_watermark = False  # short video baselines look like a static overlay to this test
            pycolmap.verify_matches(db, tmp / "pairs.txt", options=verify)
        opts = pycolmap.IncrementalPipelineOptions()
        opts.multiple_models = False
        opts.num_threads = SFM_THREADS
        opts.random_seed = seed
        opts.mapper.init_min_tri_angle = init_min_tri_angle  # video baselines are short
        opts.mapper.init_min_num_inliers = 50  # small frames have few features (COLMAP's default: 100)
        opts.mapper.abs_pose_min_num_inliers = 15
        # fewer global adjustments while the model grows (a 48-frame flow-track model: 40 s -> 28 s); the robust
        # one below ends every run
        opts.ba_global_frames_ratio = opts.ba_global_points_ratio = GLOBAL_BA_GROWTH
        models = pycolmap.incremental_mapping(db, image_dir, out_dir, options=opts)
        if not models:
            return None
        rec = max(models.values(), key=lambda r: r.num_reg_images())
        if rec.num_reg_images() < 3:
            return None
        rec = robust_refine(rec)
        backend = "colmap" if flows is None else "colmap (flow tracks)"
        return _from_reconstruction(rec, names, (height, width), backend)


def robust_refine(rec):
    """A last global bundle adjustment of a pycolmap Reconstruction with a Cauchy loss (scale ROBUST_SCALE_PX),
    focal length included. COLMAP's own adjustments use squared errors, so features on moving objects, which
    fit no static point, bend the shared focal length (rig scenes: 3-13 % off; 1-4 % after this). Returns the
    refined copy, or ``rec`` itself when the solve fails or worsens the mean reprojection error by half."""
    import pycolmap

    refined = pycolmap.Reconstruction(rec)
    refined.update_point_3d_errors()
    before = refined.compute_mean_reprojection_error()
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    options.ceres.loss_function_scale = ROBUST_SCALE_PX
    solver = options.ceres.solver_options
    solver.num_threads = SFM_THREADS
    solver.max_num_iterations = BA_ITERATIONS
    solver.function_tolerance = BA_TOLERANCE
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in refined.reg_image_ids():
        config.add_image(image_id)
    config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    # the adjuster itself, not pycolmap.bundle_adjustment: that one logs to stderr whatever the log level
    summary = pycolmap.create_default_bundle_adjuster(options, config, refined).solve()
    refined.update_point_3d_errors()
    after = refined.compute_mean_reprojection_error()
    failed = summary.termination_type == pycolmap.BundleAdjustmentTerminationType.FAILURE
    return refined if not failed and np.isfinite(after) and after <= 1.5 * before else rec


def flow_tracks(frames: np.ndarray, flows: dict[tuple[int, int], np.ndarray], spacing: int | None = None,
                tol: float = 1.0, static_mask: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Corner tracks chained through neighbour flows (KLT-style, with DIS or RAFT flow): corners (Shi-Tomasi)
    are seeded on each frame where no track runs within ``spacing`` px and followed while forward and backward
    flow agree within ``tol`` px (|dx| + |dy|) and they stay inside the image.

    frames (N, H, W, 3) float [0, 1], flows {(i, j): (H, W, 2)} with (i, i+1) and (i+1, i) for every i;
    static_mask (N, H, W) bool or None (tracks end where it is False) -> per frame: keypoints (M_i, 2) float32
    pixel (u, v) and track ids (M_i,) int64.
    """
    n, h, w = frames.shape[:3]
    spacing = spacing or max(3, round(max(h, w) / 80))
    pos, ids, next_id = np.zeros((0, 2), np.float32), np.zeros(0, np.int64), 0
    keypoints, track_ids = [], []
    for i in range(n):
        if i > 0 and len(pos):
            end, ok = _follow(pos, flows[(i - 1, i)], flows[(i, i - 1)], tol)
            if ok.mean() < MIN_TRACKED:  # the flow failed as a whole (a cut, or a jump): its survivors are luck
                ok[:] = False
            pos, ids = end[ok], ids[ok]
        if static_mask is not None and len(pos):
            keep = static_mask[i][pos[:, 1].round().astype(int), pos[:, 0].round().astype(int)]
            pos, ids = pos[keep], ids[keep]
        free = np.full((h, w), 255, np.uint8) if static_mask is None else static_mask[i].astype(np.uint8) * 255
        for u, v in pos.round().astype(int):
            cv2.circle(free, (int(u), int(v)), spacing, 0, -1)
        grey = cv2.cvtColor(to_uint8(frames[i]), cv2.COLOR_RGB2GRAY)
        corners = cv2.goodFeaturesToTrack(grey, (h // spacing) * (w // spacing), 0.001, spacing, mask=free)
        if corners is not None:
            corners = corners.reshape(-1, 2).astype(np.float32)
            pos = np.concatenate([pos, corners])
            ids = np.concatenate([ids, np.arange(next_id, next_id + len(corners))])
            next_id += len(corners)
        keypoints.append(pos.copy())
        track_ids.append(ids.copy())
    return keypoints, track_ids


def _follow(pos: np.ndarray, flow_ab: np.ndarray, flow_ba: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Points (M, 2) of frame a moved along flow a -> b; ok (M,) where the backward flow brings them back within
    ``tol`` (|dx| + |dy|) and they land inside the image. -> (end (M, 2), ok (M,) bool)."""
    h, w = flow_ab.shape[:2]
    step = _sample(flow_ab, pos)
    end = pos + step
    back = _sample(flow_ba, end)
    ok = (np.abs(step + back).sum(1) <= tol) & (end[:, 0] >= 0) & (end[:, 0] <= w - 1) & (end[:, 1] >= 0) & \
        (end[:, 1] <= h - 1)
    return end, ok


def gap_matches(kp_a: np.ndarray, kp_b: np.ndarray, flow_ab: np.ndarray, flow_ba: np.ndarray, radius: float = 1.0,
                tol: float = 1.0) -> np.ndarray:
    """Matches between two frames' corners through a direct flow: corner k of frame a, moved along the flow,
    lands within ``radius`` px of corner l of frame b (corners are repeatable, so the same physical corner was
    found in both). kp_a (Ma, 2), kp_b (Mb, 2), flows (H, W, 2) -> (K, 2) index pairs (k, l), unique in l."""
    from scipy.spatial import cKDTree

    if not len(kp_a) or not len(kp_b):
        return np.zeros((0, 2), np.int64)
    end, ok = _follow(kp_a, flow_ab, flow_ba, tol)
    dist, near = cKDTree(kp_b).query(end)
    k = np.flatnonzero(ok & (dist <= radius))
    _, first = np.unique(near[k], return_index=True)
    return np.stack([k[first], near[k[first]]], 1)


def _sample(field: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Bilinear samples of an (H, W, C) field at float pixel positions (M, 2) -> (M, C)."""
    maps = pos.reshape(-1, 1, 2).astype(np.float32)
    return cv2.remap(field, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).reshape(len(pos), -1)


def _write_track_matches(db_path: Path, pairs_path: Path, names: list[str], keypoints: list[np.ndarray],
                         ids: list[np.ndarray], overlap: int, flows: dict) -> None:
    """Keypoints (COLMAP puts pixel centres at +0.5) and the matches: between observations of one track for
    frames up to ``overlap`` apart, plus :func:`gap_matches` for every pair with flows both ways; the pairs go
    to ``pairs_path`` for geometric verification."""
    import pycolmap

    db = pycolmap.Database.open(db_path)
    image_ids = {image.name: image.image_id for image in db.read_all_images()}
    for name, kp in zip(names, keypoints):
        db.write_keypoints(image_ids[name], (kp + 0.5).astype(np.float32))
    pairs = {(i, j) for i in range(len(names)) for j in range(i + 1, min(len(names), i + overlap + 1))}
    pairs |= {(i, j) for i, j in flows if i < j and (j, i) in flows}
    lines = []
    for i, j in sorted(pairs):
        _, a, b = np.intersect1d(ids[i], ids[j], assume_unique=True, return_indices=True)
        matches = np.stack([a, b], 1)
        if (i, j) in flows and (j, i) in flows and j > i + 1:
            matches = np.unique(np.concatenate([matches, gap_matches(keypoints[i], keypoints[j], flows[(i, j)],
                                                                     flows[(j, i)])]), axis=0)
        if len(matches) >= 15:
            db.write_matches(image_ids[names[i]], image_ids[names[j]], matches.astype(np.uint32))
            lines.append(f"{names[i]} {names[j]}")
    db.close()
    pairs_path.write_text("\n".join(lines) + "\n")


def _from_reconstruction(rec, names: list[str], hw: tuple[int, int], backend: str = "colmap") -> CameraEstimate:
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
                          backend, notices)


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
