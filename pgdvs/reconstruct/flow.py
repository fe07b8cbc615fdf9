"""Optical flow between frames: OpenCV DIS (no weights, default) or torchvision RAFT (learned, from the Hub).

Flow convention (as the original): flow[v, u] = (dx, dy) displacement of pixel (u, v) of frame i into frame j.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch

from ..warp import flow_consistency
from ..videoio import to_uint8

RAFT_ITERATIONS = 32  # the original's setting (raft-things, 32 refinement iterations)


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(to_uint8(frame), cv2.COLOR_RGB2GRAY)


def dis_flow(frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
    """DIS flow a -> b, refined down to full resolution (the medium preset stops at half resolution, which blurs
    the flow over object boundaries: on the synthetic handheld suite full resolution halves the camera ATE and
    raises mask IoU 0.79 -> 0.84, for ~4x the flow time, ~10 s per 48-frame clip).
    frames (H, W, 3) float [0, 1] -> (H, W, 2) float32."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)
    return dis.calc(_grey(frame_a), _grey(frame_b), None).astype(np.float32)


def raft_flow_fn(model: torch.nn.Module, device: str = "cpu", iterations: int = RAFT_ITERATIONS) -> Callable:
    """Wrap a torchvision RAFT model as ``fn(frame_a, frame_b) -> (H, W, 2)``.

    Inputs are padded to a multiple of 8 and to at least 128 px (RAFT's correlation pyramid needs it).
    """
    model = model.eval().to(device)

    @torch.inference_mode()
    def run(frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        h, w = frame_a.shape[:2]
        pad_h, pad_w = max(128, h + (-h) % 8) - h, max(128, w + (-w) % 8) - w
        pair = torch.from_numpy(np.stack([frame_a, frame_b])).permute(0, 3, 1, 2).float().to(device)
        pair = torch.nn.functional.pad(pair * 2 - 1, (0, pad_w, 0, pad_h), mode="replicate")
        flow = model(pair[:1], pair[1:], num_flow_updates=iterations)[-1]
        return flow[0, :, :h, :w].permute(1, 2, 0).cpu().numpy().astype(np.float32)

    return run


def compute_flows(frames: np.ndarray, pairs: list[tuple[int, int]], backend: str = "dis",
                  model: torch.nn.Module | None = None, device: str = "cpu", progress=None) -> np.ndarray:
    """Flow for each (i, j) pair. frames (N, H, W, 3) float [0, 1] -> (P, H, W, 2) float32 (i -> j).

    backend "dis" needs no weights; "raft" needs ``model`` (torchvision raft_large / raft_small).
    ``progress(fraction)`` is called after each pair.
    """
    if backend == "dis":
        fn = dis_flow
    elif backend == "raft":
        if model is None:
            raise ValueError("backend 'raft' needs a RAFT model (see pgdvs.hub)")
        fn = raft_flow_fn(model, device)
    else:
        raise ValueError(f"unknown flow backend {backend!r}; use 'dis' or 'raft'")
    h, w = frames.shape[1:3]
    out = np.empty((len(pairs), h, w, 2), np.float32)
    for k, (i, j) in enumerate(pairs):
        out[k] = fn(frames[i], frames[j])
        if progress:
            progress((k + 1) / len(pairs))
    return out


def neighbour_flows(frames: np.ndarray, gap: int = 1, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Forward (i -> i+gap) and backward (i+gap -> i) flows. -> two (N-gap, H, W, 2) arrays."""
    n = len(frames)
    pairs = [(i, i + gap) for i in range(n - gap)] + [(i + gap, i) for i in range(n - gap)]
    flows = compute_flows(frames, pairs, **kwargs)
    return flows[: n - gap], flows[n - gap:]


def consistency_error(flow_ab: np.ndarray, flow_ba: np.ndarray) -> np.ndarray:
    """|dx| + |dy| of the forward-backward check (original threshold: <= 1 px is consistent).

    flow_ab, flow_ba (B, H, W, 2) -> (B, H, W) float32.
    """
    diff = flow_consistency(torch.from_numpy(flow_ab), torch.from_numpy(flow_ba))
    return diff.abs().sum(-1).numpy()
