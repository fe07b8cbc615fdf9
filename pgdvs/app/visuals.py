"""Pictures the app shows: mask overlays with click points, colour-mapped depth, frame strips.

All functions take float32 [0, 1] or uint8 images and return uint8 (H, W, 3) RGB, ready for Gradio.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..videoio import to_uint8

MASK_COLOUR = np.array([255, 64, 32], np.float32)
INCLUDE_COLOUR = (40, 220, 40)
EXCLUDE_COLOUR = (230, 30, 30)
DISPLAY_SIDE = 640


def mask_overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Tint the masked (dynamic) pixels and outline them. frame (H, W, 3), mask (H, W) bool -> (H, W, 3) uint8."""
    out = to_uint8(frame).astype(np.float32)
    mask = np.asarray(mask, bool)
    out[mask] = (1 - alpha) * out[mask] + alpha * MASK_COLOUR
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    return out


def display_scale(hw: tuple[int, int], target: int = DISPLAY_SIDE) -> int:
    """Integer upscaling that brings a small frame near ``target`` px on its longer side (1 for large frames).
    The browser shows images no larger than their pixel size, so tiny frames would be hard to click."""
    return max(1, int(target // max(hw)))


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor. (H, W, 3) -> (scale H, scale W, 3) uint8."""
    image = to_uint8(image)
    return image if scale == 1 else image.repeat(scale, 0).repeat(scale, 1)


def draw_points(image: np.ndarray, points: list[tuple[float, float, int]], scale: int = 1) -> np.ndarray:
    """Draw click points (x, y, label) given in frame pixels on an image enlarged by ``scale``;
    label 1 = include (green), 0 = exclude (red). -> uint8 copy."""
    out = to_uint8(image).copy()
    radius = max(3, round(max(out.shape[:2]) / 90))
    for x, y, label in points:
        centre = (int(round(x * scale + (scale - 1) / 2)), int(round(y * scale + (scale - 1) / 2)))
        cv2.circle(out, centre, radius + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, centre, radius, INCLUDE_COLOUR if label else EXCLUDE_COLOUR, -1, cv2.LINE_AA)
    return out


def inverse_depth_limits(depth: np.ndarray) -> tuple[float, float]:
    """Robust (2nd, 98th percentile) range of inverse depth over any number of frames, for a stable colour map.
    Depth <= 0 means unknown and is ignored."""
    depth = np.asarray(depth, np.float64)
    known = depth[depth > 0]
    if known.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(1.0 / known, [2, 98])
    return float(lo), float(max(hi, lo + 1e-9))


def depth_colour(depth: np.ndarray, limits: tuple[float, float] | None = None) -> np.ndarray:
    """Inverse depth through the 'turbo' map (near = warm), unknown depth (<= 0) black.
    (..., H, W) -> (..., H, W, 3) uint8.

    limits: inverse-depth range from ``inverse_depth_limits`` (default: this depth's own range); pass one range
    for a whole video so colours do not flicker.
    """
    from matplotlib import colormaps

    depth = np.asarray(depth, np.float64)
    lo, hi = limits or inverse_depth_limits(depth)
    inv = 1.0 / np.maximum(depth, 1e-9)
    out = (colormaps["turbo"](np.clip((inv - lo) / (hi - lo), 0, 1))[..., :3] * 255).astype(np.uint8)
    out[depth <= 0] = 0
    return out


def pick_frames(n_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``n_frames`` (first and last included)."""
    return sorted({int(round(i)) for i in np.linspace(0, n_frames - 1, min(count, n_frames))})


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (never upscale) so the longer side is at most ``max_side``. -> uint8."""
    image = to_uint8(image)
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
