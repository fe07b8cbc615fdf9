"""Static point cloud of a scene as a binary glTF (.glb) with POINTS primitives, for ``gr.Model3D``.

glTF is y-up with the camera looking down -z; OpenCV is y-down, z-forward, so y and z are flipped on export.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_file
from ..geometry import unproject_depth

GLB_MAGIC, GLB_VERSION = 0x46546C67, 2
CHUNK_JSON, CHUNK_BIN = 0x4E4F534A, 0x004E4942
FLOAT32, UINT8 = 5126, 5121
ARRAY_BUFFER = 34962
POINTS_MODE = 0


def scene_points(scene, max_points: int = 60_000, frames: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Static pixels of a few frames lifted to world space.

    Returns xyz (P, 3) float32 (OpenCV world) and rgb (P, 3) uint8, P <= max_points.
    """
    idx = np.unique(np.linspace(0, scene.n_frames - 1, min(frames, scene.n_frames)).round().astype(int))
    depth = torch.from_numpy(scene.depth[idx].astype(np.float32))
    world = unproject_depth(depth, torch.from_numpy(scene.K[idx]).float(), torch.from_numpy(scene.c2w[idx]).float())
    keep = ~scene.dyn_mask[idx]
    xyz = world.numpy()[keep]
    rgb = (scene.rgb[idx][keep] * 255).round().astype(np.uint8)
    if len(xyz) > max_points:
        pick = np.random.default_rng(0).choice(len(xyz), max_points, replace=False)
        xyz, rgb = xyz[pick], rgb[pick]
    return xyz.astype(np.float32), rgb


def write_points_glb(path: str | Path, xyz: np.ndarray, rgb: np.ndarray) -> Path:
    """Write coloured points as a glTF 2.0 binary. xyz (P, 3) float OpenCV world, rgb (P, 3) uint8, P >= 1."""
    xyz = np.ascontiguousarray(np.asarray(xyz, np.float32) * np.array([1, -1, -1], np.float32))
    rgba = np.concatenate([np.asarray(rgb, np.uint8), np.full((len(xyz), 1), 255, np.uint8)], axis=1)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0 or len(rgba) != len(xyz):
        raise ValueError(f"write_points_glb needs matching (P, 3) points and colours, got {xyz.shape}, {rgb.shape}")
    pos_bytes, col_bytes = xyz.tobytes(), np.ascontiguousarray(rgba).tobytes()
    gltf = {
        "asset": {"version": "2.0", "generator": "pgdvs"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "mode": POINTS_MODE}]}],
        "buffers": [{"byteLength": len(pos_bytes) + len(col_bytes)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(pos_bytes), "target": ARRAY_BUFFER},
            {"buffer": 0, "byteOffset": len(pos_bytes), "byteLength": len(col_bytes), "target": ARRAY_BUFFER},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": FLOAT32, "count": len(xyz), "type": "VEC3",
             "min": xyz.min(0).tolist(), "max": xyz.max(0).tolist()},
            {"bufferView": 1, "componentType": UINT8, "normalized": True, "count": len(xyz), "type": "VEC4"},
        ],
    }
    json_chunk = _pad(json.dumps(gltf, separators=(",", ":")).encode(), b" ")
    bin_chunk = _pad(pos_bytes + col_bytes, b"\0")
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<III", GLB_MAGIC, GLB_VERSION, total))
            f.write(struct.pack("<II", len(json_chunk), CHUNK_JSON) + json_chunk)
            f.write(struct.pack("<II", len(bin_chunk), CHUNK_BIN) + bin_chunk)
    return Path(path)


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)
