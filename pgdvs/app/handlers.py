"""One handler per user action, as plain functions over a :class:`Session` (no browser needed to call them).

Handlers return plain data (uint8 images, file paths, text). A library error (``pgdvs.errors.PGDVSError``) or a
step taken out of order becomes a ``gr.Error`` with a message for the user; things the user should know but
that do not stop the step (trims, fallbacks) come back as ``notices``.
"""
from __future__ import annotations

import functools
import logging
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np

from ..errors import PGDVSError, SceneFormatError
from ..scene import SCENE_ARRAYS, SCENE_JSON, Scene
from ..videoio import to_uint8
from . import gpu, visuals
from .path_controls import apply_values, preset_values
from .pointcloud import scene_points, write_points_glb
from .session import Session

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
MAX_SCENE_ARCHIVE_BYTES = 2 << 30
STRIP_FRAMES = 8
PREVIEW_SIDE = 160
SAM_CPU_REPROMPT_EVERY = 8
SEGMENTER_LABELS = {"sam": "SAM", "classical": "classical (GrabCut from clicks + motion mask)"}

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str):
    pass


def user_facing(fn):
    """Turn library errors into ``gr.Error`` (shown as a toast, nothing crashes); log anything unexpected."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except PGDVSError as exc:
            raise gr.Error(str(exc)) from None
        except MemoryError:
            raise gr.Error("Out of memory: use a shorter or smaller clip (Advanced: frames, max side).") from None
        except Exception as exc:
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"Internal error in {fn.__name__}: {type(exc).__name__}: {exc}") from None

    return wrapper


def _need(session: Session, what: str):
    if what == "clip" and session.clip is None and session.scene is None:
        raise gr.Error("Step 1 first: upload a clip or pick an example.")
    if what == "scene" and session.scene is None:
        raise gr.Error("Step 2 first: reconstruct the clip (masks and cameras come from the reconstruction).")


# ---------------------------------------------------------------- step 1: clip

@dataclass
class ClipView:
    """What ingest did: summary (markdown), the kept frames as a playable mp4, notices to show as warnings.
    ``scene_view`` is set when the upload was a scene archive (reconstruction skipped)."""

    summary: str
    video: Path
    notices: list[str] = field(default_factory=list)
    scene_view: "SceneView | None" = None


def list_examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES_DIR.glob("*.mp4"))


@user_facing
def load_example(session: Session, name: str, max_frames: int = 60, max_side: int = 480) -> ClipView:
    """Ingest a bundled example, chosen by file name (never a path from the user)."""
    if name not in list_examples():
        raise gr.Error(f"Unknown example {name!r}; choose one of: {', '.join(list_examples()) or 'none shipped'}.")
    return ingest(session, EXAMPLES_DIR / name, max_frames=max_frames, max_side=max_side)


@user_facing
def ingest(session: Session, path: str | Path | None, max_frames: int = 60, max_side: int = 480) -> ClipView:
    """Decode an upload (video, zip of frames, or a scene archive zip from step 4) into the session."""
    from ..ingest import load_clip

    if not path:
        raise gr.Error("No file received: upload a video (mp4, mov, webm, mkv, gif) or a zip of frames.")
    path = Path(path)
    if session.busy:
        raise gr.Error(f"{session.busy} is still running; wait for it before loading a new clip.")
    if path.suffix.lower() == ".zip" and _is_scene_archive(path):
        return _load_scene_archive(session, path)
    clip = load_clip(path, max_frames=int(max_frames), max_side=int(max_side))
    session.drop_from_clip()  # only now: a failed upload keeps the previous work
    session.clip = clip
    video = _write_video(session.file("clip.mp4"), clip.frames, clip.fps)
    n, h, w = clip.frames.shape[:3]
    h0, w0 = clip.original_hw
    summary = (f"**{path.name}**: kept **{n}** frames at **{w}x{h}**, {clip.fps:.3g} fps "
               f"(source: {clip.original_frames} frames decoded, {w0}x{h0}).")
    if clip.notices:
        summary += "\n\n" + "\n".join(f"- {note}" for note in clip.notices)
    return ClipView(summary, video, list(clip.notices))


def _is_scene_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(Path(name).name == SCENE_JSON for name in zf.namelist())
    except zipfile.BadZipFile:
        return False


def _load_scene_archive(session: Session, path: Path) -> ClipView:
    """Unpack only scene.json and arrays.npz (fixed names: no member can write elsewhere), then validate."""
    target = session.file("uploaded_scene")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    with zipfile.ZipFile(path) as zf:
        members = {Path(m.filename).name: m for m in zf.infolist()
                   if Path(m.filename).name in (SCENE_JSON, SCENE_ARRAYS)}
        if len(members) != 2:
            raise SceneFormatError(f"{path.name}: a scene archive needs {SCENE_JSON} and {SCENE_ARRAYS}")
        if sum(m.file_size for m in members.values()) > MAX_SCENE_ARCHIVE_BYTES:
            raise SceneFormatError(f"{path.name}: scene archive unpacks to more than 2 GB")
        for name, member in members.items():
            (target / name).write_bytes(zf.read(member))
    scene = Scene.load(target)
    session.drop_from_clip()
    _set_scene(session, scene)
    session.stage_log = ["scene archive loaded: reconstruction skipped"]
    video = _write_video(session.file("clip.mp4"), scene.rgb, scene.meta.get("fps", 24.0))
    n, (h, w) = scene.n_frames, scene.hw
    summary = f"**{path.name}**: scene archive with **{n}** frames at **{w}x{h}**; reconstruction skipped."
    return ClipView(summary, video, [], scene_view(session))


def _write_video(path: Path, frames: np.ndarray, fps: float) -> Path:
    from ..videoio import write_video

    return write_video(path, frames, fps=float(fps) if fps else 24.0)


# ---------------------------------------------------------------- step 2: reconstruct

@dataclass
class SceneView:
    """Pictures of a reconstruction: overlay strip [(image, caption)], depth preview, camera plot, point cloud."""

    overlays: list[tuple[np.ndarray, str]]
    depth: np.ndarray
    trajectory: np.ndarray
    points: Path | None
    log: str
    n_frames: int
    notices: list[str] = field(default_factory=list)


@user_facing
def reconstruct(session: Session, progress: Progress | None = None, hub=None) -> SceneView:
    """Run the reconstruction pipeline on the session's clip, with learned models from ``hub`` when ready."""
    _need(session, "clip")
    if session.clip is None:
        raise gr.Error("This session holds an uploaded scene archive: it is already reconstructed.")
    progress = progress or _no_progress
    with session.job("reconstruction"):
        scene = reconstruct_clip(session.clip, hub, gpu.device(),
                                 lambda stage, f, msg: progress(float(f), f"{stage}: {msg}" if msg else stage))
        _set_scene(session, scene)
        backends = scene.meta.get("backends", {})
        session.stage_log = [f"{stage}: {secs:.1f} s" + (f" ({backends[stage]})" if stage in backends else "")
                             for stage, secs in scene.meta.get("seconds", {}).items()]
        view = scene_view(session)
    view.notices = [n for n in scene.meta.get("notices", []) if n not in session.clip.notices]
    return view


@gpu.gpu_task(gpu.RECONSTRUCT_DURATION_S)
def reconstruct_clip(clip, hub, device: str, progress: Progress):
    """The pipeline on a clip; RAFT flow when the hub holds it (the pipeline takes the depth prior by itself)."""
    from ..reconstruct.pipeline import ReconstructConfig
    from ..reconstruct.pipeline import reconstruct as run_pipeline

    learned_flow = hub is not None and hub.backend_for("flow").startswith("learned")
    config = ReconstructConfig(flow="raft" if learned_flow else "dis", device=device,
                               depth_prior="auto" if hub is not None else "none")
    return run_pipeline(clip, config, progress=progress, hub=hub)


def _set_scene(session: Session, scene: Scene):
    session.drop_from_scene()
    session.scene = scene
    scene.save(session.file("scene"))


def scene_view(session: Session) -> SceneView:
    from ..trajectories import CameraPath, plot_path

    scene = session.scene
    overlays = [(visuals.mask_overlay(scene.rgb[i], scene.dyn_mask[i]), f"frame {i}")
                for i in visuals.pick_frames(scene.n_frames, STRIP_FRAMES)]
    mid = scene.n_frames // 2
    depth = np.concatenate([to_uint8(scene.rgb[mid]), visuals.depth_colour(scene.depth[mid])], axis=1)
    fps = float(scene.meta.get("fps") or 24.0)
    inputs = CameraPath(np.arange(scene.n_frames, dtype=float), scene.c2w, scene.K, scene.hw, fps, "input")
    trajectory = plot_path(inputs, scene.c2w)
    xyz, rgb = scene_points(scene)
    points = write_points_glb(session.file("points.glb"), xyz, rgb) if len(xyz) else None
    log_text = "\n".join(f"- {line}" for line in session.stage_log)
    return SceneView(overlays, depth, trajectory, points, log_text, scene.n_frames)


# ---------------------------------------------------------------- step 3: masks

@dataclass
class MaskView:
    """The working frame with its mask overlay and click points, enlarged ``scale`` times for display (frame
    pixel (x, y) is shown at (scale x, scale y)), plus a one-line description."""

    image: np.ndarray
    info: str
    scale: int = 1


def make_segmenter(hub=None):
    """(segmenter, label): SAM when the hub has a segmentation model ready, the classical one otherwise."""
    from ..reconstruct.segmenters import ClassicalSegmenter, SamSegmenter

    found = hub.get_stage("segmentation") if hub is not None else None
    if found is not None:
        name, model = found
        return SamSegmenter(model), f"SAM ({hub.specs[name].label})"
    return ClassicalSegmenter(), SEGMENTER_LABELS["classical"]


def _editor(session: Session, hub=None, segmenter=None):
    """The session's MaskEditor over the scene, created on the first edit."""
    from ..reconstruct.mask_edit import MaskEditor

    if session.editor is None:
        if session.scene.flow_fwd is None or session.scene.flow_bwd is None:
            raise gr.Error("This scene has no optical flow, so its masks cannot be edited: reconstruct the clip "
                           "instead of uploading this scene.")
        if segmenter is not None:
            label = SEGMENTER_LABELS.get(segmenter.name, segmenter.name)
        else:
            segmenter, label = make_segmenter(hub)
        scene = session.scene
        session.editor = MaskEditor(scene.rgb, scene.dyn_mask, scene.flow_fwd, scene.flow_bwd, segmenter, K=scene.K,
                                    c2w=scene.c2w)
        session.segmenter_label = label
    return session.editor


def _frame_index(session: Session, frame) -> int:
    n = session.scene.n_frames
    try:
        k = int(frame)
    except (TypeError, ValueError):
        raise gr.Error(f"Frame must be a number from 0 to {n - 1}, got {frame!r}.") from None
    if not 0 <= k < n:
        raise gr.Error(f"Frame {k} is out of range: this clip has frames 0 to {n - 1}.")
    return k


def _mask_view(session: Session, k: int) -> MaskView:
    scene = session.scene
    if session.editor is not None:
        mask, points = session.editor.mask(k), session.editor.points(k)
    else:
        mask, points = scene.dyn_mask[k], []
    scale = visuals.display_scale(scene.hw)
    image = visuals.draw_points(visuals.enlarge(visuals.mask_overlay(scene.rgb[k], mask), scale), points, scale)
    share = 100.0 * float(np.mean(mask))
    who = session.segmenter_label or "automatic motion mask"
    return MaskView(image, f"frame {k}: {int(mask.sum())} dynamic px ({share:.1f} %), "
                           f"{len(points)} point(s); segmenter: {who}", scale)


@user_facing
def show_frame(session: Session, frame) -> MaskView:
    _need(session, "scene")
    return _mask_view(session, _frame_index(session, frame))


@user_facing
def segment(session: Session, frame, x, y, label, hub=None, segmenter=None) -> MaskView:
    """Add a point at pixel (x, y) of ``frame``; label 1 / 'include' adds to the mask, 0 / 'exclude' removes."""
    _need(session, "scene")
    k = _frame_index(session, frame)
    h, w = session.scene.hw
    try:
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise gr.Error(f"Point must be two numbers (x, y), got ({x!r}, {y!r}).") from None
    if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
        raise gr.Error(f"Point ({x:g}, {y:g}) is outside the {w}x{h} frame.")
    include = _label_value(label)
    if session.busy:
        raise gr.Error(f"{session.busy} is still running; wait for it before editing masks.")
    _editor(session, hub, segmenter).add_point(k, x, y, include)
    session.pending_masks = None
    return _mask_view(session, k)


def _label_value(label) -> int:
    if isinstance(label, str):
        word = label.strip().lower()
        if word.startswith(("incl", "add", "pos", "1")):
            return 1
        if word.startswith(("excl", "rem", "neg", "0")):
            return 0
        raise gr.Error(f"Point label must be 'include' or 'exclude', got {label!r}.")
    return 1 if label else 0


@user_facing
def edit(session: Session, frame, action: str) -> MaskView:
    """``action``: 'undo' (last point of the frame), 'clear' (all points of the frame), 'reset' (automatic mask)."""
    _need(session, "scene")
    k = _frame_index(session, frame)
    if action not in ("undo", "clear", "reset"):
        raise gr.Error(f"Unknown mask action {action!r}: use undo, clear or reset.")
    if session.editor is not None:
        getattr(session.editor, action)(k)
        session.pending_masks = None
    return _mask_view(session, k)


@user_facing
def propagate(session: Session, progress: Progress | None = None) -> list[tuple[np.ndarray, str]]:
    """Spread the edits to every frame; returns a strip of frames to check. The scene's masks change only on
    ``accept``."""
    _need(session, "scene")
    editor = session.editor
    if editor is None or editor.last_edited is None:
        raise gr.Error("No points yet: click on a frame to add include/exclude points, then apply to all frames.")
    # SAM on a CPU costs ~12 s per new frame embedding: re-prompt only every few frames there.
    every = SAM_CPU_REPROMPT_EVERY if editor.segmenter.name == "sam" and gpu.device() == "cpu" else 1
    report = progress or _no_progress
    with session.job("mask propagation"):
        masks = editor.propagate(reprompt_every=every, progress=lambda f: report(f, "propagating masks"))
        session.pending_masks = np.asarray(masks, bool)
    scene = session.scene
    return [(visuals.mask_overlay(scene.rgb[i], masks[i]), f"frame {i}")
            for i in visuals.pick_frames(scene.n_frames, STRIP_FRAMES)]


@user_facing
def accept(session: Session) -> SceneView:
    """Make the propagated masks the scene's masks (saved with the scene; used by every render). A newly marked
    object's depth is what triangulating its motion gave, often far behind it: it is brought forward as the
    reconstruction does (``bring_moving_forward``, then ``refine_moving_depth`` from its motion)."""
    from ..reconstruct.depth import bring_moving_forward
    from ..reconstruct.moving_depth import refine_moving_depth

    _need(session, "scene")
    if session.pending_masks is None:
        raise gr.Error("Nothing to accept: click 'Apply to all frames' first and check the strip.")
    with session.job("saving masks"):
        scene, masks = session.scene, session.pending_masks
        scene.dyn_mask = masks
        forward = bring_moving_forward(scene.depth, masks)
        scene.depth = refine_moving_depth(forward, masks, scene.flow_fwd, scene.flow_bwd, scene.K, scene.c2w)
        session.pending_masks = None
        scene.save(session.file("scene"))
        session.stage_log.append("masks: edited by clicks and accepted")
        return scene_view(session)


@user_facing
def discard(session: Session) -> str:
    """Drop the propagated masks and the clicks: the editor starts again from the scene's accepted masks."""
    session.pending_masks = None
    session.editor = None
    return "Propagated masks and clicks discarded; the scene keeps its current masks."


# ---------------------------------------------------------------- step 4: camera path and render

@dataclass
class RenderResult:
    """The rendered H.264 mp4 plus downloads (video, scene archive, depth video, mask video)."""

    video: Path
    downloads: list[Path]
    info: str
    notices: list[str] = field(default_factory=list)


def presets() -> dict:
    from ..trajectories import load_presets

    return load_presets()


def _preset(name: str):
    known = presets()
    if name not in known:
        raise gr.Error(f"Unknown camera path {name!r}; choose one of: {', '.join(known)}.")
    return known[name]


@user_facing
def preset_settings(session: Session, name: str) -> tuple[str, dict[str, tuple[float, float, float]]]:
    """(description, {slider label: (value, lo, hi)}) of a preset, 'clip' sizes resolved for this scene."""
    preset = _preset(name)
    scene = session.scene
    n = scene.n_frames if scene is not None else 48
    fps = float(scene.meta.get("fps") or 24.0) if scene is not None else 24.0
    return preset.description, preset_values(preset, n, fps)


def _camera_path(session: Session, name: str, values: dict):
    from ..trajectories import make_path

    _need(session, "scene")
    return make_path(apply_values(_preset(name), values or {}), session.scene)


@user_facing
def preview_path(session: Session, name: str, values: dict) -> tuple[np.ndarray, np.ndarray]:
    """(plot of the path against the input trajectory, first frame of the path rendered at low resolution)."""
    from ..trajectories import plot_path

    path = _camera_path(session, name, values)
    h, w = path.hw
    scale = min(1.0, PREVIEW_SIDE / max(h, w))
    small = (max(2, round(h * scale)), max(2, round(w * scale)))
    K = path.K[:1].copy()
    K[:, :2] *= np.array([small[1] / w, small[0] / h])[None, :, None]
    _, rgb, _, _ = render_frames(session.scene, path.times[:1], path.c2w[:1], K, small, gpu.device(), None)
    return plot_path(path, session.scene.c2w), to_uint8(rgb[0])


@gpu.gpu_task(gpu.RENDER_DURATION_S)
def render_frames(scene, times, c2w, K, hw, device: str, budget_s: float | None, progress: Progress | None = None):
    """Render up to T views, as many as fit ``budget_s`` seconds (None: all), spread evenly over the path.

    times (T,), c2w (T, 4, 4), K (T, 3, 3), hw (H, W). The first view's time sets the pace. Returns
    (picked indices (M,), rgb (M, H, W, 3) float32, depth (M, H, W) float32, dyn_mask (M, H, W) bool).
    """
    from ..render.renderer import Renderer

    progress = progress or _no_progress
    renderer = Renderer(scene, "default", device)
    started = time.monotonic()
    outputs = {0: renderer.render(float(times[0]), c2w[0], K[0], tuple(hw))}
    count = len(times) if budget_s is None else gpu.frame_budget(len(times), time.monotonic() - started, budget_s)
    pick = np.unique(np.linspace(0, len(times) - 1, count).round().astype(int))
    for done, j in enumerate(pick[1:], start=2):
        outputs[j] = renderer.render(float(times[j]), c2w[j], K[j], tuple(hw))
        progress(done / len(pick), f"rendering frame {done}/{len(pick)}")
    frames = [outputs[j] for j in pick]
    return (pick, np.stack([o.rgb for o in frames]), np.stack([o.depth for o in frames]),
            np.stack([o.dyn_mask for o in frames]))


@user_facing
def render(session: Session, name: str, values: dict, progress: Progress | None = None) -> RenderResult:
    """Render the chosen path; write the video, depth and mask videos and the scene archive."""
    path = _camera_path(session, name, values)
    device = gpu.device()
    notices = []
    if session.pending_masks is not None:
        notices.append("propagated masks are not accepted yet: rendering with the scene's current masks")
    with session.job("rendering"):
        started = time.monotonic()
        pick, rgb, depth, dyn = render_frames(session.scene, path.times, path.c2w, path.K, path.hw, device,
                                              gpu.render_budget_s(device), progress)
        seconds = time.monotonic() - started
        fps = path.fps
        if len(pick) < len(path):  # keep the video's duration: fewer frames, each shown longer
            fps = max(1.0, path.fps * len(pick) / len(path))
            notices.append(f"render shortened to {len(pick)} of {len(path)} frames ({fps:.3g} fps) to fit the "
                           f"{gpu.render_budget_s(device):.0f} s render budget on {device}")
        video = _write_video(session.file("render.mp4"), rgb, fps)
        depth_video = _write_video(session.file("render_depth.mp4"),
                                   visuals.depth_colour(depth, visuals.inverse_depth_limits(depth)), fps)
        mask_video = _write_video(session.file("render_mask.mp4"), dyn.astype(np.float32), fps)
        archive = _scene_archive(session)
    info = (f"{len(pick)} frames at {path.hw[1]}x{path.hw[0]}, {fps:.3g} fps, preset '{path.name}': "
            f"rendered in {seconds:.1f} s on {device} ({len(pick) / max(seconds, 1e-9):.2f} frames/s)")
    return RenderResult(video, [video, archive, depth_video, mask_video], info, notices)


def _scene_archive(session: Session) -> Path:
    """Zip of the scene folder (saved whenever the scene changes); uploading it in step 1 skips the
    reconstruction. Stored, not deflated: deflate takes ~15 s on a 48-frame scene and saves only ~20 %."""
    from ..atomic import atomic_file

    folder, target = session.file("scene"), session.file("scene_archive.zip")
    if target.is_file() and target.stat().st_mtime >= (folder / SCENE_JSON).stat().st_mtime:
        return target
    with atomic_file(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in (SCENE_JSON, SCENE_ARRAYS):
                zf.write(folder / name, f"scene/{name}")
    return target
