"""Decode a user clip (video file, frame folder or zip of frames) into a bounded stack of frames.

Everything is capped before it is held in memory: frames are resized while decoding, decoding stops at the time
window, and absurd inputs (huge resolution, hour-long files, giant archives) are refused with a message.
"""
from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".gif", ".avi", ".m4v"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MAX_SOURCE_SIDE = 8192  # larger frames are refused (decoding one would already cost ~200 MB)
MAX_SOURCE_SECONDS = 3600.0
MAX_FILE_BYTES = 4 << 30
MAX_ZIP_BYTES = 2 << 30
MAX_DECODED_FRAMES = 3000  # hard stop while decoding, whatever the fps


@dataclass
class IngestOptions:
    """How a clip is cut down. Defaults keep a 48-60 frame 480x270 clip, which reconstructs in 1-1.5 minutes
    on 2 CPU cores.

    max_frames: frame budget after subsampling; max_side: longer image side after resizing (px);
    start_s / max_seconds: time window taken from the clip (seconds); stride: keep every stride-th frame
    (None = choose it to fit ``max_frames`` evenly over the window).
    """

    max_frames: int = 60
    max_side: int = 480
    start_s: float = 0.0
    max_seconds: float = 10.0
    stride: int | None = None


@dataclass
class Clip:
    """frames (N, H, W, 3) float32 in [0, 1]; fps of the kept frames; frame_ids (N stems); notices for the user."""

    frames: np.ndarray
    fps: float
    frame_ids: list[str]
    source: str
    notices: list[str] = field(default_factory=list)
    original_hw: tuple[int, int] = (0, 0)
    original_frames: int = 0


def load_clip(path: str | Path, options: IngestOptions | None = None, **overrides) -> Clip:
    """Read ``path`` (video, folder of frames, or .zip of frames). ``overrides`` set IngestOptions fields."""
    opts = options or IngestOptions()
    for key, value in overrides.items():
        if not hasattr(opts, key):
            raise TypeError(f"unknown ingest option {key!r}")
        setattr(opts, key, value)
    if opts.max_frames < 2 or opts.max_side < 16:
        raise InputError(f"max_frames must be >= 2 and max_side >= 16 (got {opts.max_frames}, {opts.max_side})")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        raw, fps, ids = _read_frame_folder(path, opts)
    elif path.suffix.lower() == ".zip":
        raw, fps, ids = _read_zip(path, opts)
    else:
        raw, fps, ids = _read_video(path, opts)
    return _finish(raw, fps, ids, str(path), opts)


def _finish(decoded: "_Decoded", fps: float, ids: list[str], source: str, opts: IngestOptions) -> Clip:
    frames, notices = decoded.frames, list(decoded.notices)
    if len(frames) == 0:
        raise InputError(f"{source}: no frames could be decoded")
    if len(frames) == 1:
        raise InputError(f"{source}: only one frame; a clip needs at least 2 frames with some camera motion")
    stride = opts.stride or max(1, int(np.ceil(len(frames) / opts.max_frames)))
    keep = list(range(0, len(frames), stride))[: opts.max_frames]
    if stride > 1:
        notices.append(f"kept every {stride}th frame ({len(keep)} of {len(frames)})")
    elif len(keep) < len(frames):
        notices.append(f"kept the first {len(keep)} of {len(frames)} frames (frame budget {opts.max_frames})")
    stack = np.stack([frames[i] for i in keep]).astype(np.float32) / 255.0
    h0, w0 = decoded.original_hw
    if (h0, w0) != stack.shape[1:3]:
        notices.append(f"resized from {w0}x{h0} to {stack.shape[2]}x{stack.shape[1]} (max side {opts.max_side})")
    return Clip(stack, fps / stride, [ids[i] for i in keep], source, notices, (h0, w0), decoded.total)


@dataclass
class _Decoded:
    frames: list[np.ndarray]  # uint8 (H, W, 3), already resized
    original_hw: tuple[int, int]
    total: int
    notices: list[str]


def _target_hw(h: int, w: int, max_side: int) -> tuple[int, int]:
    if h > MAX_SOURCE_SIDE or w > MAX_SOURCE_SIDE:
        raise InputError(f"frame size {w}x{h} exceeds the {MAX_SOURCE_SIDE} px limit")
    scale = min(1.0, max_side / max(h, w))
    return max(2, int(round(h * scale))), max(2, int(round(w * scale)))


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == hw:
        return img
    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def _read_video(path: Path, opts: IngestOptions):
    import av

    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"{path.name}: file is larger than {MAX_FILE_BYTES >> 30} GB")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name}: file is empty")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        kind = "not a video file" if path.suffix.lower() not in VIDEO_SUFFIXES else "unreadable or corrupt video"
        raise InputError(f"{path.name}: {kind} ({exc.__class__.__name__})") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path.name}: not a video file (no video stream)")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 24.0)
        duration = float(stream.duration * stream.time_base) if stream.duration else None
        if duration is None and container.duration:
            duration = container.duration / 1e6
        if duration is not None and duration > MAX_SOURCE_SECONDS:
            raise InputError(f"{path.name}: {duration / 60:.0f} minutes long; clips over "
                             f"{MAX_SOURCE_SECONDS / 60:.0f} minutes are refused (cut a short part first)")
        hw = _target_hw(stream.codec_context.height or 1, stream.codec_context.width or 1, opts.max_side)
        frames, notices, total = [], [], 0
        end = opts.start_s + opts.max_seconds
        try:
            for frame in container.decode(stream):
                ts = float(frame.time) if frame.time is not None else total / fps
                total += 1
                if ts < opts.start_s - 1e-6:
                    continue
                if ts >= end or len(frames) >= MAX_DECODED_FRAMES:
                    notices.append(f"used {opts.max_seconds:g} s from {opts.start_s:g} s of the clip")
                    break
                hw = _target_hw(frame.height, frame.width, opts.max_side)
                frames.append(_resize(frame.to_ndarray(format="rgb24"), hw))
        except av.FFmpegError as exc:
            if not frames:
                raise InputError(f"{path.name}: unreadable or corrupt video ({exc.__class__.__name__})") from None
            notices.append(f"decoding stopped early at frame {total}: the file is damaged after that point")
        original = (stream.codec_context.height, stream.codec_context.width)
    return _Decoded(frames, original, total, notices), fps, [f"{i:05d}" for i in range(len(frames))]


def _read_images(files: list[Path], opts: IngestOptions, source: str):
    if not files:
        raise InputError(f"{source}: no frames found (expected {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    frames, original = [], None
    for f in files[:MAX_DECODED_FRAMES]:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"{f.name}: unreadable image in {source}")
        original = original or img.shape[:2]
        if img.shape[:2] != original:
            raise InputError(f"{f.name}: size {img.shape[1]}x{img.shape[0]} differs from the first frame "
                             f"({original[1]}x{original[0]})")
        frames.append(_resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), _target_hw(*original, opts.max_side)))
    return _Decoded(frames, original, len(files), []), 24.0, [f.stem for f in files[: len(frames)]]


def _read_frame_folder(path: Path, opts: IngestOptions):
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return _read_images(files, opts, path.name)


def _read_zip(path: Path, opts: IngestOptions):
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist()
                       if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
                       and not Path(m.filename).name.startswith(".")]
            if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                raise InputError(f"{path.name}: archive unpacks to more than {MAX_ZIP_BYTES >> 30} GB")
            with tempfile.TemporaryDirectory(prefix="pgdvs-zip-") as tmp:
                files = []
                for i, m in enumerate(sorted(members, key=lambda m: m.filename)):
                    # Flat, index-prefixed names: no member can write outside tmp (zip-slip).
                    target = Path(tmp) / f"{i:06d}_{Path(m.filename).name}"
                    target.write_bytes(zf.read(m))
                    files.append(target)
                decoded, fps, ids = _read_images(files, opts, path.name)
                ids = [Path(m.filename).stem for m in sorted(members, key=lambda m: m.filename)][: len(ids)]
                return decoded, fps, ids
    except zipfile.BadZipFile:
        raise InputError(f"{path.name}: not a valid zip archive") from None
