"""Preview picture: the camera path against the input trajectory, seen from the top and from the side.

Coordinates are those of the first input camera (x right, z forward, up = -y), so "top" and "side" mean the
same on every clip. Uses matplotlib's Agg canvas directly (no pyplot state), safe in app worker threads.
"""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .paths import CameraPath

N_ARROWS = 8  # viewing directions drawn per trajectory


def _local(c2w: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (T, 3) and viewing directions (T, 3) of c2w (T, 4, 4) in the frame of ref (4, 4)."""
    rel = np.linalg.inv(ref) @ c2w
    return rel[:, :3, 3], rel[:, :3, 2]


def _draw(ax, centres, dirs, axes, length, color, label, colors=None):
    (i, si), (j, sj) = axes
    x, y = si * centres[:, i], sj * centres[:, j]
    ax.plot(x, y, "-", color=color, lw=1.2, label=label, zorder=2)
    if colors is not None:
        ax.scatter(x, y, c=colors, cmap="viridis", s=9, zorder=3)
    ax.plot(x[:1], y[:1], "o", color=color, ms=6, zorder=4)
    step = max(1, len(centres) // N_ARROWS)
    for k in range(0, len(centres), step):
        ax.plot([x[k], x[k] + length * si * dirs[k, i]], [y[k], y[k] + length * sj * dirs[k, j]],
                "-", color=color, lw=0.8, alpha=0.7, zorder=1)


def plot_path(path: CameraPath, input_c2w: np.ndarray, size: tuple[int, int] = (720, 360)) -> np.ndarray:
    """Top (x-z) and side (z-up) views of ``path`` (blue-to-yellow by time) over the input cameras (grey).

    path: CameraPath; input_c2w (N, 4, 4); size (width, height) in pixels. Returns (height, width, 3) uint8.
    Dots mark the first camera of each trajectory; short ticks show where cameras look.
    """
    ref = input_c2w[0]
    path_c, path_d = _local(path.c2w, ref)
    in_c, in_d = _local(np.asarray(input_c2w, dtype=np.float64), ref)
    extent = np.ptp(np.concatenate([path_c, in_c]), axis=0).max()
    length = 0.15 * extent if extent > 0 else 1.0
    fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    views = (("top", ((0, 1), (2, 1)), "x (right)", "z (forward)"), ("side", ((2, 1), (1, -1)), "z (forward)", "up"))
    progress = np.linspace(0, 1, len(path_c))
    for n, (title, axes, xlabel, ylabel) in enumerate(views):
        ax = fig.add_subplot(1, 2, n + 1)
        _draw(ax, in_c, in_d, axes, length, "0.55", "input cameras")
        _draw(ax, path_c, path_d, axes, length, "tab:blue", f"path {path.name}".strip(), colors=progress)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_aspect("equal", adjustable="datalim")
        ax.margins(0.15)
    fig.axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
