"""Reconstruction suites: cameras, depth, masks and end-to-end views with estimated geometry.

- ``synthetic-reconstruct``: every synthetic scene of both protocols is reconstructed from its RGB alone
  (classical path). Method ``oracle`` renders the held-out views from the exact geometry, ``estimated`` from the
  reconstruction, aligned to the ground-truth frame by a similarity fitted to the reconstructed vs true 3D points
  of static pixels (same renderer, same views). Rig targets are cameras that also filmed input frames, so they
  are rendered from the reconstruction's own pose and K for that camera (:func:`rig_views_in_reconstruction`);
  handheld targets never filmed an input frame and keep their true pose and K in the aligned frame. Rows of
  ``estimated`` also carry ``ate`` / ``rpe`` (camera centres after Sim(3) (Umeyama) alignment, scene units;
  RPE over 1-frame gaps), ``rpe_deg``, ``depth_absrel`` / ``depth_delta1`` (per frame, scaled by the median of
  GT / estimate), ``mask_iou`` (mean per frame), ``mask_iou_clicks`` (the same after two simulated clicks,
  :func:`simulated_clicks`) and ``seconds`` (reconstruction wall time).
- ``real-static``: ``hololens_office_000`` (GT poses in metres, metric depth) -> ``ate`` (m), ``rpe``,
  ``depth_absrel``, ``depth_delta1``; ``llff_fern`` with images 0, 8, 16 held out: reconstruct the other 17,
  map the held-out COLMAP poses into the reconstruction with the Sim(3) between the 17 shared cameras, render,
  PSNR / SSIM against the photos.
- ``real-loo --data DIR``: every clip in DIR (video file, frame folder, or a folder holding one of those) is
  reconstructed; ``--loo-frames`` interior frames are each rendered at their own pose and time from a scene
  without them (temporal pair (i-1, i+1)); PSNR / SSIM against the real frame, also on the static and dynamic
  regions of the reconstruction's own mask.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...errors import PGDVSError
from .. import metrics
from ..harness import summarise
from ..registry import register_suite

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data"
LLFF_HOLDOUT = (0, 8, 16)
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".gif", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_MISSED_PART = 0.2  # a simulated include click needs a missed piece this large (fraction of the object)


# ------------------------------------------------------------------------------------------------ metrics

def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|^2. src, dst (P, 3) -> (scale, (3, 3), (3,))."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.eye(3)
    d[2, 2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ d @ vt
    var = (a ** 2).sum() / len(src)
    scale = float((sig * np.diag(d)).sum() / var) if var > 1e-12 else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def apply_sim3(c2w: np.ndarray, sim: tuple[float, np.ndarray, np.ndarray]) -> np.ndarray:
    """Cameras moved by a similarity (rotation applied to orientations, scale to positions). (N, 4, 4)."""
    s, rot, t = sim
    out = c2w.copy()
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = s * c2w[:, :3, 3] @ rot.T + t
    return out


def trajectory_errors(est: np.ndarray, gt: np.ndarray) -> dict:
    """ATE (RMSE of camera centres after Sim(3)), RPE over 1-frame gaps (translation, scaled; rotation in
    degrees). est, gt (N, 4, 4)."""
    sim = umeyama(est[:, :3, 3], gt[:, :3, 3])
    aligned = apply_sim3(est, sim)
    ate = float(np.sqrt(((aligned[:, :3, 3] - gt[:, :3, 3]) ** 2).sum(1).mean()))
    rel_e = np.linalg.inv(aligned[:-1]) @ aligned[1:]
    rel_g = np.linalg.inv(gt[:-1]) @ gt[1:]
    err = np.linalg.inv(rel_g) @ rel_e
    rpe = float(np.linalg.norm(err[:, :3, 3], axis=1).mean()) if len(err) else float("nan")
    cos = np.clip((np.trace(err[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1)
    return {"ate": ate, "rpe": rpe, "rpe_deg": float(np.degrees(np.arccos(cos)).mean()) if len(err) else float("nan")}


def depth_errors(est: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """AbsRel and delta < 1.25 after per-frame scaling by median(gt / est). est, gt (N, H, W); valid bool."""
    absrel, delta = [], []
    for i in range(len(est)):
        m = (gt[i] > 0) & np.isfinite(gt[i]) & (est[i] > 0)
        if valid is not None:
            m &= valid[i]
        if m.sum() < 10:
            continue
        e, g = est[i][m], gt[i][m]
        e = e * np.median(g / e)
        absrel.append(np.mean(np.abs(e - g) / g))
        delta.append(np.mean(np.maximum(e / g, g / e) < 1.25))
    return {"depth_absrel": float(np.mean(absrel)) if absrel else float("nan"),
            "depth_delta1": float(np.mean(delta)) if delta else float("nan")}


def mask_iou(est: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-frame IoU; a frame where both masks are empty counts as 1. (N, H, W) bool."""
    ious = [(a & b).sum() / (a | b).sum() if (a | b).any() else 1.0 for a, b in zip(est, gt)]
    return float(np.mean(ious))


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of an (H, W) bool mask, each (H, W) bool."""
    import cv2

    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [labels == c for c in range(1, count)]


def click_targets(est: np.ndarray, gt: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Where a user clicks on one frame: on the largest missed piece of the object (GT component) with the most
    missed pixels, when that piece is at least ``MIN_MISSED_PART`` of the object (label 1; a click on its part
    that is already masked would change nothing, and nobody clicks a sliver along a border), and inside the
    automatic component that is mostly wrong and has the most wrong pixels, on its largest wrong piece
    (label 0); each when there is one. est, gt (H, W) bool -> [(point (2,) (x, y), label)]."""
    from ...reconstruct.segmenters import interior_point

    clicks = []
    objects = _components(gt)
    missed = [(obj & ~est).sum() for obj in objects]
    if missed and max(missed) > 0:
        obj = objects[int(np.argmax(missed))]
        piece = max(_components(obj & ~est), key=np.sum)
        if piece.sum() >= MIN_MISSED_PART * obj.sum():
            clicks.append((interior_point(piece), 1))
    wrong = [comp for comp in _components(est) if (comp & gt).sum() < 0.5 * comp.sum()]
    if wrong:
        comp = max(wrong, key=lambda c: (c & ~gt).sum())
        clicks.append((interior_point(max(_components(comp & ~gt), key=np.sum)), 0))
    return clicks


def simulated_clicks(scene, gt_mask: np.ndarray) -> np.ndarray:
    """A user's two clicks (:func:`click_targets`) on the frame whose automatic mask has the most wrong pixels,
    through the app's editor with the classical (GrabCut) backend, then propagated to every frame.
    scene: the reconstruction (rgb, dyn_mask, flows, cameras); gt_mask (N, H, W) bool -> edited masks (N, H, W) bool."""
    from ...reconstruct.mask_edit import MaskEditor
    from ...reconstruct.segmenters import ClassicalSegmenter

    est = scene.dyn_mask
    k = int(np.argmax((est ^ gt_mask).sum(axis=(1, 2))))
    editor = MaskEditor(scene.rgb, est, scene.flow_fwd, scene.flow_bwd, ClassicalSegmenter(), K=scene.K, c2w=scene.c2w)
    for point, label in click_targets(est[k], gt_mask[k]):
        editor.add_point(k, *point, label)
    return editor.propagate(k)


def align_to_truth(scene, gt_K: np.ndarray, gt_c2w: np.ndarray, gt_depth: np.ndarray, static: np.ndarray,
                   samples: int = 20000, seed: int = 0):
    """Sim(3) taking the reconstruction's world to the true one, fitted to the 3D points of static pixels
    (reconstructed depth + poses vs true depth + poses), trimmed once at the 80th percentile.
    gt_K (N, 3, 3), gt_c2w (N, 4, 4), gt_depth (N, H, W), static (N, H, W) bool -> (s, R, t)."""
    import torch

    from ...geometry import unproject_depth

    def lift(depth, K, c2w):
        return unproject_depth(torch.from_numpy(depth.astype(np.float64)), torch.from_numpy(K),
                               torch.from_numpy(c2w)).numpy().reshape(-1, 3)

    idx = np.flatnonzero(static.ravel() & (gt_depth.ravel() > 0))
    idx = np.random.default_rng(seed).choice(idx, min(samples, len(idx)), replace=False)
    src, dst = lift(scene.depth, scene.K, scene.c2w)[idx], lift(gt_depth, gt_K, gt_c2w)[idx]
    sim = umeyama(src, dst)
    res = np.linalg.norm(sim[0] * src @ sim[1].T + sim[2] - dst, axis=1)
    keep = res <= np.quantile(res, 0.8)
    return umeyama(src[keep], dst[keep])


def aligned_scene(scene, sim):
    """A copy of ``scene`` in the true world frame: cameras moved by the similarity, depth scaled."""
    from dataclasses import replace

    return replace(scene, c2w=apply_sim3(scene.c2w, sim), depth=(scene.depth * sim[0]).astype(np.float32), gt=None)


def rig_views_in_reconstruction(scene, views, rig_cameras: int):
    """Held-out rig views with the camera the reconstruction found for them. Input frame i was filmed by rig
    camera ``i % rig_cameras`` (the rig protocol), so each target camera is one the reconstruction has already
    placed, several times: its pose is the mean of those frames' poses (rotations: chordal mean) and its K the
    reconstruction's, rescaled to the view size. This is how the original gets its rig targets (one camera
    calibration for inputs and targets) and keeps a separate Sim(3) fit and the focal error out of the score.
    scene: reconstruction (c2w (N, 4, 4), K (N, 3, 3)); views: EvalViews with ``camera`` ids -> EvalViews."""
    from dataclasses import replace

    import torch
    from scipy.spatial.transform import Rotation

    from ...geometry import rescale_intrinsics

    frame_camera = np.arange(scene.n_frames) % rig_cameras
    c2w = np.tile(np.eye(4), (len(views.camera), 1, 1))
    K = np.zeros((len(views.camera), 3, 3))
    for j, cam in enumerate(views.camera):
        own = frame_camera == cam
        if not own.any():
            raise PGDVSError(f"rig camera {cam} filmed no input frame; it cannot be placed from the reconstruction")
        c2w[j, :3, :3] = Rotation.from_matrix(scene.c2w[own, :3, :3]).mean().as_matrix()
        c2w[j, :3, 3] = scene.c2w[own, :3, 3].mean(0)
        K[j] = rescale_intrinsics(torch.from_numpy(scene.K[own].mean(0)), scene.hw, views.rgb.shape[1:3]).numpy()
    return replace(views, c2w=c2w, K=K)


def render_views(scene, views, device: str, method: str = "default") -> list[np.ndarray]:
    from ...render.renderer import Renderer

    renderer = Renderer(scene, method, device)
    return [renderer.render(float(t), c2w, K, views.rgb.shape[1:3]).rgb for t, c2w, K in
            zip(views.time, views.c2w, views.K)]


def view_scores(preds, gts, masks=None) -> dict:
    per = [metrics.region_scores(p, g, None if masks is None else m)
           for p, g, m in zip(preds, gts, masks if masks is not None else [None] * len(preds))]
    return {k: metrics.nanmean([s[k] for s in per]) for k in per[0]}


# ------------------------------------------------------------------------------------------------ synthetic

def add_synthetic_arguments(parser):
    parser.add_argument("--protocols", default="rig,handheld", help="comma-separated protocols")
    parser.add_argument("--scenes", default=None, help="comma-separated scene names (default: all)")


@register_suite("synthetic-reconstruct", "cameras / depth / masks from RGB on synthetic scenes; novel views "
                "with estimated vs oracle geometry", add_arguments=add_synthetic_arguments)
def run_synthetic(args) -> list[dict]:
    from ...ingest import Clip
    from ...reconstruct.pipeline import ReconstructConfig, reconstruct
    from ..synthetic import SCENES, load_scene

    protocols = [p for p in str(getattr(args, "protocols", "rig,handheld")).split(",") if p]
    wanted = getattr(args, "scenes", None)
    wanted = set(wanted.split(",")) if wanted else None
    rows = []
    for protocol in protocols:
        for name in SCENES.get(protocol, []):
            if wanted is not None and name not in wanted:
                continue
            try:
                scene = load_scene(name, args.size, getattr(args, "cache_dir", None))
            except PGDVSError as exc:  # a scene that cannot be generated is reported, the others still run
                rows.append({"scene": name, "protocol": protocol, "method": "estimated", "error": str(exc)})
                continue
            views = scene.gt.views
            base = {"scene": name, "protocol": protocol}
            oracle = view_scores(render_views(scene, views, args.device), views.rgb, views.dyn_mask)
            rows.append({**base, "method": "oracle", **oracle})
            start = time.perf_counter()
            est = reconstruct(Clip(scene.rgb, float(scene.meta.get("fps", 24.0)), scene.frame_ids, name),
                              ReconstructConfig(depth_prior="none"))
            seconds = time.perf_counter() - start
            sim = align_to_truth(est, scene.gt.K, scene.gt.c2w, scene.gt.depth, ~scene.gt.dyn_mask)
            placed = aligned_scene(est, sim)
            targets = (rig_views_in_reconstruction(placed, views, scene.meta["rig_cameras"])
                       if protocol == "rig" else views)
            est_views = view_scores(render_views(placed, targets, args.device), views.rgb, views.dyn_mask)
            rows.append({**base, "method": "estimated", **est_views,
                         **trajectory_errors(est.c2w, scene.gt.c2w),
                         **depth_errors(est.depth, scene.gt.depth, ~scene.gt.dyn_mask),
                         "mask_iou": mask_iou(est.dyn_mask, scene.gt.dyn_mask),
                         "mask_iou_clicks": mask_iou(simulated_clicks(est, scene.gt.dyn_mask), scene.gt.dyn_mask),
                         "seconds": seconds,
                         "psnr_gap": oracle["psnr"] - est_views["psnr"],
                         "motion": est.meta["motion"]["kind"], "cameras": est.meta["cameras"]["backend"]})
    rows += summarise(rows)
    return rows


# ------------------------------------------------------------------------------------------------ real

def add_real_arguments(parser):
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder with hololens_office_000 and llff_fern")


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def hololens_row(folder: Path, device: str) -> dict:
    import cv2

    from ...ingest import Clip
    from ...reconstruct.pipeline import ReconstructConfig, reconstruct

    files = sorted((folder / "images").glob("*.png"))
    frames = np.stack([_read_rgb(f) for f in files])
    gt_c2w = np.loadtxt(folder / "poses.txt").reshape(-1, 4, 4)
    gt_depth = np.stack([cv2.imread(str(folder / "depth" / f.name), cv2.IMREAD_UNCHANGED) for f in files])
    start = time.perf_counter()
    est = reconstruct(Clip(frames, 30.0, [f.stem for f in files], str(folder)), ReconstructConfig(depth_prior="none"))
    seconds = time.perf_counter() - start
    h, w = est.hw
    gt_small = np.stack([cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST) for d in gt_depth]) / 1000.0
    return {"scene": folder.name, "protocol": "real-static", "method": "estimated",
            **trajectory_errors(est.c2w, gt_c2w), **depth_errors(est.depth, gt_small.astype(np.float32)),
            "seconds": seconds, "cameras": est.meta["cameras"]["backend"]}


def llff_c2w(poses_bounds: np.ndarray) -> np.ndarray:
    """LLFF rows [R | t | hwf] with rotation columns (down, right, back) -> OpenCV c2w (N, 4, 4)."""
    mats = poses_bounds[:, :15].reshape(-1, 3, 5)
    c2w = np.tile(np.eye(4), (len(mats), 1, 1))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2] = mats[:, :, 1], mats[:, :, 0], -mats[:, :, 2]
    c2w[:, :3, 3] = mats[:, :, 3]
    return c2w


def llff_row(folder: Path, device: str) -> dict:
    from ...ingest import Clip
    from ...reconstruct.pipeline import ReconstructConfig, reconstruct
    from ...render.renderer import Renderer

    files = sorted((folder / "images_8").glob("*.png"))
    frames = np.stack([_read_rgb(f) for f in files])
    gt_c2w = llff_c2w(np.load(folder / "poses_bounds.npy"))
    train = [i for i in range(len(files)) if i not in LLFF_HOLDOUT]
    start = time.perf_counter()
    est = reconstruct(Clip(frames[train], 30.0, [files[i].stem for i in train], str(folder)),
                      ReconstructConfig(depth_prior="none", max_side=max(frames.shape[1:3])))
    seconds = time.perf_counter() - start
    scale = umeyama(gt_c2w[train, :3, 3], est.c2w[:, :3, 3])[0]  # true world -> reconstruction
    renderer = Renderer(est, "default", device)
    preds = []
    for i in LLFF_HOLDOUT:
        # the held-out pose relative to the nearest training camera, carried into the reconstruction
        near = int(np.argmin(np.linalg.norm(gt_c2w[train, :3, 3] - gt_c2w[i, :3, 3], axis=1)))
        rel = np.linalg.inv(gt_c2w[train[near]]) @ gt_c2w[i]
        rel[:3, 3] *= scale
        c2w = est.c2w[near] @ rel
        preds.append(renderer.render(float(min(near, est.n_frames - 2)), c2w, est.K[0], est.hw).rgb)
    scores = view_scores(preds, frames[list(LLFF_HOLDOUT)])
    return {"scene": folder.name, "protocol": "real-static", "method": "estimated", **scores,
            **trajectory_errors(est.c2w, gt_c2w[train]), "seconds": seconds,
            "cameras": est.meta["cameras"]["backend"]}


@register_suite("real-static", "pose ATE / depth AbsRel on hololens_office_000, held-out view PSNR on llff_fern",
                add_arguments=add_real_arguments)
def run_real_static(args) -> list[dict]:
    data = Path(getattr(args, "data", DATA_DIR))
    rows = []
    if (data / "hololens_office_000").is_dir():
        rows.append(hololens_row(data / "hololens_office_000", args.device))
    if (data / "llff_fern").is_dir():
        rows.append(llff_row(data / "llff_fern", args.device))
    return rows


# ------------------------------------------------------------------------------------------------ leave-one-out

def add_loo_arguments(parser):
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder of clips (video files / frame folders)")
    parser.add_argument("--loo-frames", type=int, default=5, help="held-out interior frames per clip")
    parser.add_argument("--max-frames", type=int, default=None, help="ingest frame budget (default: the pipeline's)")


def find_clips(folder: Path) -> list[Path]:
    """Clips in ``folder``: video files, frame folders, or sub-folders holding a video or a frame folder (one
    named ``images*`` first: data folders also hold depth maps as images)."""
    def frames_in(d: Path) -> bool:
        return sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) >= 2

    clips = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            clips.append(entry)
        elif entry.is_dir():
            if frames_in(entry):
                clips.append(entry)
                continue
            videos = sorted(f for f in entry.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
            subdirs = sorted((not d.name.startswith("images"), d.name, d) for d in entry.iterdir()
                             if d.is_dir() and frames_in(d))
            subdirs = [d for _, _, d in subdirs]
            if videos:
                clips.append(videos[0])
            elif subdirs:
                clips.append(subdirs[0])
    return clips


def without_frame(scene, i: int, flow_pair: tuple[np.ndarray, np.ndarray]):
    """The scene with frame i (0 < i < N-1) removed; the new neighbour flows (i-1 <-> i+1) come from flow_pair."""
    from dataclasses import replace

    keep = [k for k in range(scene.n_frames) if k != i]
    fwd = np.concatenate([scene.flow_fwd[:i - 1], flow_pair[0][None], scene.flow_fwd[i + 1:]])
    bwd = np.concatenate([scene.flow_bwd[:i - 1], flow_pair[1][None], scene.flow_bwd[i + 1:]])
    ids = [scene.frame_ids[k] for k in keep]
    return replace(scene, rgb=scene.rgb[keep], K=scene.K[keep], c2w=scene.c2w[keep], depth=scene.depth[keep],
                   dyn_mask=scene.dyn_mask[keep], flow_fwd=fwd, flow_bwd=bwd, gt=None,
                   meta={**scene.meta, "frame_ids": ids})


@register_suite("real-loo", "leave-one-frame-out re-rendering on every clip of --data (PSNR / SSIM vs the real "
                "frame)", add_arguments=add_loo_arguments)
def run_loo(args) -> list[dict]:
    from ...reconstruct.flow import compute_flows
    from ...reconstruct.pipeline import ReconstructConfig, reconstruct
    from ...render.renderer import Renderer

    data = Path(getattr(args, "data", DATA_DIR))
    count = int(getattr(args, "loo_frames", 5))
    config = ReconstructConfig(depth_prior="none")
    if getattr(args, "max_frames", None):
        config.max_frames = int(args.max_frames)
    rows = []
    for clip in find_clips(data):
        start = time.perf_counter()
        scene = reconstruct(clip, config)
        seconds = time.perf_counter() - start
        n = scene.n_frames
        held = np.unique(np.linspace(1, n - 2, min(count, n - 2)).round().astype(int))
        preds, gts, masks = [], [], []
        for i in held:
            pair = compute_flows(scene.rgb, [(i - 1, i + 1), (i + 1, i - 1)])
            sub = without_frame(scene, int(i), (pair[0], pair[1]))
            out = Renderer(sub, "default", args.device).render(i - 0.5, scene.c2w[i], scene.K[i], scene.hw)
            preds.append(out.rgb)
            gts.append(scene.rgb[i])
            masks.append(scene.dyn_mask[i])
        rows.append({"scene": clip.relative_to(data).parts[0], "protocol": "real-loo",
                     "method": "estimated", **view_scores(preds, gts, masks), "seconds": seconds,
                     "frames": n, "held_out": len(held), "motion": scene.meta["motion"]["kind"],
                     "cameras": scene.meta["cameras"]["backend"]})
    return rows
