"""Clip -> Scene: ingest, flow, motion check, cameras, depth, dynamic masks, consistent depth and the masks judged
again on it, save.

Stages (``progress(stage, fraction, message)`` is called as each advances): "ingest", "flow", "motion",
"cameras", "depth", "masks", "refine", "save".

Classical path (default, no weights): DIS flow, COLMAP SfM (pycolmap; on SIFT and on flow tracks, one kept; the
tracks' run is repeated while the neighbouring frames' flow misfits its cameras), flow triangulation + regularised
consistent depth, moving objects' depth from their motion over three frames (``moving_depth``). With a Depth
Anything model (``depth_prior="auto"`` and a model ready in ``pgdvs.hub``, or ``depth_model=`` given) its disparity
is aligned to the triangulated depth and refined.
Degenerate camera motion (static, pure rotation) is detected and gives identity / rotation-only cameras and a smooth
depth, reported in ``scene.meta["motion"]`` and the notices.

Default sizes: at most 60 frames, longer side 480 px (``ReconstructConfig``); a 48-frame 480x270 clip takes 1-1.5
minutes on 2 CPU cores (see the ``synthetic-reconstruct`` benchmark's ``seconds``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..scene import Scene
from .cameras import colmap_poses, guess_intrinsics
from .degeneracy import analyse_motion, rotation_only_poses
from .depth import DepthConfig, consistent_depth, default_pairs
from .moving_depth import MOVING_REACH, refine_moving_depth
from .scale import REFERENCE_SIDE

FLOW_BACKENDS = ("dis", "raft")
PRIOR_MODES = ("auto", "none")
STAGES = ("ingest", "flow", "motion", "cameras", "depth", "masks", "refine", "save")
MIN_REGISTERED = 0.5  # SfM must register at least this fraction of frames, else rotation-only cameras are used
TRACK_SFM_ATTEMPTS = 5  # SfM on flow tracks is tried this often while it registers too few frames (see tracked_poses)
ROUGH_SCALE = 2 / 3  # the first depth pass works at this fraction of the final working size
ROUGH_GAPS = (1, 4)  # ... and triangulates only these frame gaps
MIN_BASELINE = 0.02  # SfM camera spread / scene depth under which a "rotation" verdict stands
MIN_SFM_POINTS = 100  # ... and fewer sparse points than this
TRACKS_MISFIT_MARGIN = 1.05  # the flow-track model is kept unless the flow fits SIFT's better by more than this
RETRY_MISFIT_PX = 0.75  # neighbour flow misfit (px at 480) over which the flow-track SfM runs again (steadier_tracks)
MISFIT_RETRIES = 2  # ... at most this many more times
MAX_AUTO_DYNAMIC = 0.5  # an automatic mask covering more of a frame than this is a failed estimate, not motion


@dataclass
class ReconstructConfig:
    """max_frames / max_side: ingest budget (frames, longer side in px; 480 keeps a 48-frame clip within 1.5 minutes
    on 2 cores); flow: "dis" | "raft" (raft falls back to dis without a model); depth_prior: "auto" (use Depth
    Anything when available) | "none"; flow_gaps: frame gaps with flow for triangulation; depth: DepthConfig;
    sfm_features: SIFT features per frame; device: torch device for learned models."""

    max_frames: int = 60
    max_side: int = 480
    flow: str = "dis"
    depth_prior: str = "auto"
    flow_gaps: tuple[int, ...] = (1, 2, 4, 8)
    depth: DepthConfig = field(default_factory=DepthConfig)
    sfm_features: int = 2048
    device: str = "cpu"

    def check(self) -> "ReconstructConfig":
        if self.flow not in FLOW_BACKENDS:
            raise InputError(f"flow backend {self.flow!r} is unknown; allowed: {', '.join(FLOW_BACKENDS)}")
        if self.depth_prior not in PRIOR_MODES:
            raise InputError(f"depth_prior {self.depth_prior!r} is unknown; allowed: {', '.join(PRIOR_MODES)}")
        if self.max_frames < 2 or self.max_side < 16:
            raise InputError(f"max_frames must be >= 2 and max_side >= 16 (got {self.max_frames}, {self.max_side})")
        return self


Progress = Callable[[str, float, str], None]


def reconstruct(source, config: ReconstructConfig | None = None, progress: Progress | None = None,
                out_dir: str | Path | None = None, hub=None, depth_model=None, flow_model=None) -> Scene:
    """Reconstruct a Scene from ``source`` (video file, frame folder, or a ``pgdvs.ingest.Clip``).

    hub: a ``pgdvs.hub.ModelHub`` to take learned models from (default: the process's hub; it is not started
    here, so only models it already holds are used); depth_model / flow_model: explicit models that override the
    hub. out_dir: where the scene folder is written (atomically: nothing is left behind on error).
    Returns the Scene (its ``meta`` holds notices, the motion report, backends and per-stage seconds).
    """
    config = (config or ReconstructConfig()).check()
    report = progress or (lambda stage, fraction, message: None)
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def done(stage: str, message: str):
        now = time.perf_counter()
        timings[stage] = round(now - clock[0], 3)
        clock[0] = now
        report(stage, 1.0, message)

    report("ingest", 0.0, "reading the clip")
    clip = _load(source, config)
    frames = clip.frames
    n, h, w = frames.shape[:3]
    notices = list(clip.notices)
    done("ingest", f"{n} frames at {w}x{h}")

    flow_backend, flow_model = _flow_backend(config, hub, flow_model, notices)
    pairs = default_pairs(n, config.flow_gaps)
    report("flow", 0.0, f"{len(pairs)} flows ({flow_backend})")
    from .flow import compute_flows

    flows = compute_flows(frames, pairs, backend=flow_backend, model=flow_model, device=config.device,
                          progress=lambda f: report("flow", f, "optical flow"))
    index = {p: k for k, p in enumerate(pairs)}
    pair_flows = dict(zip(pairs, flows))
    fwd = flows[[index[(i, i + 1)] for i in range(n - 1)]]
    bwd = flows[[index[(i + 1, i)] for i in range(n - 1)]]
    done("flow", flow_backend)

    motion = analyse_motion(*_widest_flows(flows, pairs))
    done("motion", motion.message)

    report("cameras", 0.0, "estimating camera poses")
    K, c2w, camera_info = _cameras(frames, pair_flows, motion, config, notices)
    if motion.kind == "rotation" and camera_info["backend"].startswith("colmap"):
        motion = replace(motion, kind="general", message="SfM found camera translation (the flow is dominated by "
                                                         "one plane, which a homography also fits)")
    done("cameras", camera_info["backend"])

    prior = None
    depth_model = _depth_model(config, hub, depth_model)
    if depth_model is not None:
        from .depth_prior import predict_disparity

        report("depth", 0.0, "monocular depth prior")
        prior = predict_disparity(depth_model, frames, device=config.device,
                                  progress=lambda f: report("depth", 0.5 * f, "monocular depth prior"))
    # the first depth only feeds the motion masks and the refinement's start: coarser, fewer pairs, no rounds
    first = DepthConfig(**{**asdict(config.depth), "consistency_iters": 0,
                           "work_side": int(config.depth.work_side * ROUGH_SCALE)})
    few = [k for k, (i, j) in enumerate(pairs) if abs(j - i) in ROUGH_GAPS] or list(range(len(pairs)))
    rough = consistent_depth(frames, K, c2w, [pairs[k] for k in few], flows[few], prior_disparity=prior,
                             config=first, progress=lambda f: report("depth", 0.5 + 0.5 * f, "first depth"))
    done("depth", "first depth")

    from .mask_neighbours import NEIGHBOUR_OFFSETS
    from .motion_masks import chained_flows, motion_masks

    Ks = np.repeat(K[None], n, 0)
    judged_on_depth = motion.kind != "static"
    # the neighbour flows chained over several frames, once for the masks and the moving depth
    chained = chained_flows(fwd, bwd, max(MOVING_REACH, *(abs(o) for o in NEIGHBOUR_OFFSETS)),
                            max(1.0, max(frames.shape[1:3]) / REFERENCE_SIDE))
    dyn = motion_masks(frames, fwd, bwd, Ks, c2w, rough.depth if judged_on_depth else None, chained=chained)
    # masks judged on the first depth only steer the consistent depth when they are judged again on it
    dyn = drop_implausible_masks(dyn, [] if judged_on_depth else notices)
    done("masks", f"{dyn.mean() * 100:.1f}% of pixels dynamic")

    init = rough.depth
    if camera_info["backend"].startswith("colmap") and camera_info["registered"] < n:
        # SfM missed frames: try again with features only on static pixels, keep it if it registers more
        report("refine", 0.0, "re-running SfM on static pixels")
        again = colmap_poses(frames, static_mask=~dyn, max_features=config.sfm_features,
                             flows=pair_flows if camera_info["backend"] != "colmap" else None)
        if again is not None and again.registered.sum() > camera_info["registered"]:
            K, c2w, init = again.K, again.c2w, None
            Ks = np.repeat(K[None], n, 0)
            notices[:] = [m for m in notices if not m.startswith("cameras:")] + again.notices
            camera_info.update(registered=int(again.registered.sum()), reprojection_error_px=again.reproj_error,
                               points=int(len(again.points)), static_mask=True)
    result = consistent_depth(frames, K, c2w, pairs, flows, dyn_mask=dyn, prior_disparity=prior,
                              config=config.depth, init_depth=init,
                              progress=lambda f: report("refine", 0.7 * f, "consistent depth"))
    depth = result.depth
    if judged_on_depth:
        # the first depth is coarse and blurs objects' depth over the background beside them, which then fails the
        # photometric test; judged on the consistent depth, synthetic-reconstruct mask IoU rises (handheld 0.73 ->
        # 0.79, rig 0.83 -> 0.86) for ~15 s per 48-frame clip
        report("refine", 0.7, "motion masks on the consistent depth")
        dyn = drop_implausible_masks(motion_masks(frames, fwd, bwd, Ks, c2w, depth, chained=chained), notices)
    if motion.kind not in ("static", "rotation"):
        depth = refine_moving_depth(depth, dyn, fwd, bwd, K, c2w, chained=chained)
    depth = _safe_depth(depth)
    done("refine", f"triangulated coverage {result.coverage.mean() * 100:.0f}%, {dyn.mean() * 100:.1f}% of pixels "
                   "dynamic")

    if motion.kind in ("static", "rotation"):
        notices.append(f"camera motion: {motion.message}")
    elif motion.kind == "low_parallax":
        notices.append(f"camera motion: {motion.message} (parallax {motion.parallax_px:.2f} px)")
    meta = {
        "source": clip.source, "fps": float(clip.fps), "frame_ids": list(clip.frame_ids),
        "notices": notices, "motion": motion.to_dict(), "cameras": camera_info,
        "backends": {"flow": flow_backend, "cameras": camera_info["backend"],
                     "depth": "depth-anything + triangulation" if prior is not None else "triangulation",
                     "masks": "motion"},
        "depth_coverage": float(result.coverage.mean()),
        "reconstruct_config": asdict(config),
        "seconds": timings,
    }
    scene = Scene(rgb=np.clip(frames, 0, 1).astype(np.float32), K=Ks.astype(np.float64), c2w=c2w.astype(np.float64),
                  depth=depth, dyn_mask=dyn.astype(bool), flow_fwd=fwd.astype(np.float32),
                  flow_bwd=bwd.astype(np.float32), meta=meta)
    scene.validate("reconstruction")
    if out_dir is not None:
        report("save", 0.0, f"writing {out_dir}")
        scene.save(out_dir)
    done("save", "done")
    meta["seconds"]["total"] = round(sum(timings.values()), 3)
    return scene


def _load(source, config: ReconstructConfig):
    from ..ingest import clip as ingest

    if isinstance(source, ingest.Clip):
        if source.frames.ndim != 4 or source.frames.shape[0] < 2 or source.frames.shape[-1] != 3:
            raise InputError(f"clip frames have shape {source.frames.shape}; need (N >= 2, H, W, 3)")
        return source
    if not isinstance(source, (str, Path)):
        raise InputError(f"source must be a video path, a frame folder or a Clip, got {type(source).__name__}")
    return ingest.load_clip(source, max_frames=config.max_frames, max_side=config.max_side)


def _flow_backend(config, hub, model, notices):
    if config.flow == "dis":
        return "dis", None
    if model is None:
        got = _hub(hub).get_stage("flow")
        model = got[1] if got else None
    if model is None:
        notices.append("flow: RAFT is not available (no checkpoint); used OpenCV DIS")
        return "dis", None
    return "raft", model


def _depth_model(config, hub, model):
    if config.depth_prior == "none":
        return None
    if model is not None:
        return model
    got = _hub(hub).get_stage("depth")
    return got[1] if got else None


def _hub(hub):
    if hub is not None:
        return hub
    from ..hub import ModelHub

    return ModelHub.default()


def widest_pairs(pairs, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` forward pairs (i, j) at the largest gap j - i among ``pairs``, spread over the clip."""
    gap = max(j - i for i, j in pairs)
    wide = [(i, j) for i, j in pairs if j - i == gap]
    return [wide[k] for k in np.unique(np.linspace(0, len(wide) - 1, min(count, len(wide))).round().astype(int))]


def _widest_flows(flows: np.ndarray, pairs: list[tuple[int, int]], count: int = 6):
    """A few forward flows at the largest available gap, spread over the clip (:func:`widest_pairs`), and
    their reverse flows. -> two (<= count, H, W, 2) arrays."""
    index = {p: k for k, p in enumerate(pairs)}
    pick = widest_pairs(pairs, count)
    return flows[[index[p] for p in pick]], flows[[index[p[::-1]] for p in pick]]


def _cameras(frames, flows, motion, config, notices):
    """flows {(i, j): (H, W, 2)} (every computed pair) -> K (3, 3), c2w (N, 4, 4), info dict for meta.
    Both SfM routes run, SIFT and flow tracks, and :func:`better_model` keeps one. Neither is reliable alone:
    SIFT finds too little on weak texture and small frames, and on a rig-like clip (frames from cameras that
    jump about) it can settle on a wrong focal length that still fits its features (rig-studio: f 253 for a
    true 416, ATE 0.50; the tracks' model: f 416, ATE 0.002). After a "rotation" verdict of the flow test only
    a model that translates stands (a scene dominated by one plane, a wall, fits a homography too), and the
    tracks only run to check a SIFT model that does."""
    n, h, w = frames.shape[:3]
    K = guess_intrinsics((h, w))
    assumed = "intrinsics: focal length assumed (60 degree horizontal field of view)"
    if motion.kind == "static":
        notices.append(assumed)
        return K, np.tile(np.eye(4), (n, 1, 1)), {"backend": "static (identity poses)", "registered": n,
                                                  "intrinsics": "assumed"}
    sift = colmap_poses(frames, max_features=config.sfm_features)
    if motion.kind != "rotation":
        est = better_model(sift, steadier_tracks(frames, flows, tracked_poses(frames, flows), (h, w)), flows, (h, w))
    elif sift is not None and translates(sift):
        # SfM found translation that the flow test missed; the tracks' model checks it (one run: after this
        # verdict few frames registering is the expected outcome, not an unlucky draw)
        tracked = tracked_poses(frames, flows, attempts=1)
        est = better_model(sift, tracked if tracked is not None and translates(tracked) else None, flows, (h, w))
    else:
        est = None  # SfM agrees with the flow: no translation to measure depth from
    if est is not None and est.registered.mean() >= MIN_REGISTERED:
        notices.extend(est.notices)  # names frames whose poses are interpolated
        return est.K, est.c2w, {"backend": est.backend, "registered": int(est.registered.sum()),
                                "reprojection_error_px": est.reproj_error, "intrinsics": "estimated",
                                "points": int(len(est.points))}
    if motion.kind != "rotation":
        notices.append("cameras: SfM could not register enough frames; rotation-only cameras are used")
    notices.append(assumed)
    fwd = np.stack([flows[(i, i + 1)] for i in range(n - 1)])
    return K, rotation_only_poses(fwd, K), {"backend": "rotation-only (homographies)", "registered": 0,
                                            "intrinsics": "assumed"}


def tracked_poses(frames: np.ndarray, flows: dict, attempts: int = TRACK_SFM_ATTEMPTS):
    """SfM on flow tracks (``colmap_poses(frames, flows=flows)``), run again while its model registers fewer than
    MIN_REGISTERED of the frames, up to ``attempts`` runs; the model registering most frames, or None. COLMAP's
    verification draws fresh RANSAC samples per run, and an unlucky draw can start the model from a wrong pair:
    on sam2_bedroom half the runs register 3 of 50 frames (in 6 s) where the others register all 50 (35 s), so
    three runs all failed in one real-loo run of two."""
    best = None
    for _ in range(attempts):
        est = colmap_poses(frames, flows=flows)
        if est is not None and (best is None or est.registered.sum() > best.registered.sum()):
            best = est
        if best is not None and best.registered.mean() >= MIN_REGISTERED:
            break
    return best


def steadier_tracks(frames: np.ndarray, flows: dict, tracked, hw: tuple[int, int], retries: int = MISFIT_RETRIES):
    """The flow-track model, run again (up to ``retries`` times) while the neighbouring frames' flow strays from
    its epipolar lines by over RETRY_MISFIT_PX (:func:`flow_misfit` on the gap-1 pairs: wider gaps can lose the
    flow on a fast pan); of the runs registering the most frames, the one the flow fits best is kept. Under
    little parallax a draw can settle on cameras that fit their own tracks as well as the right ones do
    (hololens_office_000, three runs: misfit 0.51, 1.02, 1.43 px, focal 431, 443, 532 for a true 441, held-out
    views 24.1, 21.4, 19.5 dB). The synthetic clips' misfit is 0.02-0.12: they never run again."""
    neighbours = {key: flow for key, flow in flows.items() if key[1] - key[0] == 1}
    if tracked is None or not neighbours:
        return tracked
    misfit = flow_misfit(tracked, neighbours, hw)
    for _ in range(retries):
        if misfit <= RETRY_MISFIT_PX:
            break
        again = colmap_poses(frames, flows=flows)
        if again is None or again.registered.sum() < tracked.registered.sum():
            continue
        again_misfit = flow_misfit(again, neighbours, hw)
        if again.registered.sum() > tracked.registered.sum() or again_misfit < misfit:
            tracked, misfit = again, again_misfit
    return tracked


def better_model(sift, tracked, flows: dict, hw: tuple[int, int]):
    """Of two SfM models (either may be None), the one registering more frames; at a tie the flow-track model
    unless the flow fits SIFT's model better by more than TRACKS_MISFIT_MARGIN (:func:`flow_misfit`). The tracks
    are denser and spread over the whole frame (3-6 k points against SIFT's 0.5-1.6 k on the synthetic suite),
    which pins the focal length that the flow's epipolar fit barely sees (rig-room: the same misfit, f 1.9 % off
    with SIFT, 0.05 % with tracks)."""
    if sift is None or tracked is None:
        return tracked if sift is None else sift
    if sift.registered.sum() != tracked.registered.sum():
        return max((sift, tracked), key=lambda m: m.registered.sum())
    return tracked if flow_misfit(tracked, flows, hw) <= TRACKS_MISFIT_MARGIN * flow_misfit(sift, flows, hw) else sift


def flow_misfit(est, flows: dict, hw: tuple[int, int], pairs: int = 8, step: int = 4) -> float:
    """How far the optical flow strays from the epipolar lines of the estimated cameras: the median over up to
    ``pairs`` frame pairs (the widest gap, spread over the clip) of the median epipolar distance of every
    ``step``-th pixel, in px at 480 px (moving objects are a minority of the pixels). flows {(i, j): (H, W, 2)}."""
    import torch

    from .motion_masks import epipolar_residual

    keys = widest_pairs(flows, pairs)
    flow = torch.as_tensor(np.stack([flows[key] for key in keys])[:, ::step, ::step] / step, dtype=torch.float32)
    # the cameras of the subsampled grid: pixel centres (u * step) -> u, so K scales by 1 / step
    K = torch.as_tensor(est.K, dtype=torch.float64).clone()
    K[:2] /= step
    K = K.expand(len(keys), 3, 3)
    c2w = torch.as_tensor(est.c2w, dtype=torch.float64)
    a, b = (torch.tensor([key[k] for key in keys]) for k in (0, 1))
    dist = epipolar_residual(flow, K, c2w[a], K, c2w[b]) * step
    return float(dist.flatten(1).median(dim=1).values.median()) * REFERENCE_SIDE / max(hw)


def translates(est) -> bool:
    """Whether an SfM model shows real camera translation: enough sparse points (a pure rotation yields a
    handful at best) and a largest distance between registered camera centres of at least MIN_BASELINE of
    the points' median distance."""
    centres = est.c2w[est.registered, :3, 3]
    if len(centres) < 2 or len(est.points) < MIN_SFM_POINTS:
        return False
    spread = np.linalg.norm(centres[:, None] - centres[None], axis=-1).max()
    depth = np.median(np.linalg.norm(est.points[:, None] - centres[None], axis=-1).min(axis=1))
    return bool(spread >= MIN_BASELINE * depth)


def drop_implausible_masks(dyn: np.ndarray, notices: list[str]) -> np.ndarray:
    """Clear automatic masks (N, H, W) bool that cover more than MAX_AUTO_DYNAMIC of their frame: that happens
    when the camera model does not explain the background (e.g. translation seen as rotation), and such a mask
    would send the whole frame to the dynamic layer. The user marks the moving objects by clicking instead."""
    bad = dyn.mean(axis=(1, 2)) > MAX_AUTO_DYNAMIC
    if bad.any():
        dyn = dyn.copy()
        dyn[bad] = False
        notices.append(f"masks: the automatic mask covered over {MAX_AUTO_DYNAMIC:.0%} of {int(bad.sum())} of "
                       f"{len(dyn)} frames and was cleared there; click the moving objects to mark them")
    return dyn


def _safe_depth(depth: np.ndarray) -> np.ndarray:
    """Replace any non-finite or non-positive value (never expected) by the frame median, as float32."""
    out = depth.astype(np.float32)
    bad = ~np.isfinite(out) | (out <= 0)
    if bad.any():
        good = out[~bad]
        out[bad] = np.median(good) if good.size else 1.0
    return out
