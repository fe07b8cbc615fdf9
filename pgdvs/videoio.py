"""Write browser-playable H.264 (yuv420p) mp4 files with PyAV, atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_file


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) float in [0, 1] or uint8 -> uint8."""
    if frames.dtype == np.uint8:
        return frames
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 24.0, crf: int = 18) -> Path:
    """Encode (T, H, W, 3) RGB frames (float [0, 1] or uint8; grey (T, H, W) is expanded) as H.264 mp4.

    yuv420p needs even sides: odd sizes are padded by one edge-replicated row/column.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"write_video needs (T, H, W, 3) frames, got shape {frames.shape}")
    frames = to_uint8(frames)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with atomic_file(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=max(1, int(round(fps))))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast", "movflags": "+faststart"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return Path(path)
