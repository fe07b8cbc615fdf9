"""Inputs for the app tests: a tiny moving clip, a scene archive, and a hub whose SAM is a tiny random model."""
from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

import numpy as np
import torch


def moving_square_clip(n: int = 12, hw: tuple[int, int] = (96, 160), tint=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(n, H, W, 3) float32: a textured background panning left and a red square moving right and down."""
    h, w = hw
    rng = np.random.default_rng(0)
    texture = rng.random((h // 4 + 1, (w + 4 * n) // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)
    frames = np.empty((n, h, w, 3), np.float32)
    side = max(4, h // 4)
    for i in range(n):
        frames[i] = texture[:h, 2 * i:2 * i + w] * 0.8
        y, x = h // 4 + i, w // 4 + 3 * i
        frames[i, y:y + side, x:x + side] = (1.0, 0.1, 0.1)
    return np.clip(frames * np.asarray(tint, np.float32), 0, 1)


def synthetic_scene_archive(folder: Path, **scene_args) -> Path:
    """A scene archive (as step 4 offers it for download) of a small synthetic scene with exact geometry."""
    from pgdvs.bench.synthetic import make_scene

    scene = make_scene(**scene_args)
    scene_dir = scene.save(folder / "scene")
    archive = folder / "scene_archive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in scene_dir.iterdir():
            zf.write(f, f"scene/{f.name}")
    return archive


def tiny_sam_hub(folder: Path):
    """A started ModelHub over a one-model manifest: a tiny random SAM in an offline Hub cache."""
    from hub_fixtures import write_hub_repo

    from pgdvs.hub.loaders import build_sam_tiny
    from pgdvs.hub.manifest import parse_manifest
    from pgdvs.hub.registry import ModelHub

    torch.manual_seed(0)
    ckpt = folder / "sam_tiny.pth"
    torch.save(build_sam_tiny().state_dict(), ckpt)
    write_hub_repo(folder / "hub", "test-org/tiny-sam", {"sam_tiny.pth": ckpt})
    manifest = parse_manifest({
        "stages": {"segmentation": {"classical": "GrabCut"}},
        "models": [{"name": "sam", "label": "tiny SAM", "stage": "segmentation", "repo_id": "test-org/tiny-sam",
                    "files": [{"path": "sam_tiny.pth"}], "license": "MIT", "loader": "sam",
                    "loader_args": {"model_type": "tiny_test"}}],
    }, source="tiny-sam-manifest")
    hub = ModelHub(manifest, cache_dir=folder / "hub", offline=True, environ={})
    hub.start(background=False)
    return hub


@contextlib.contextmanager
def running_app(root: Path, hub=None):
    """The app served in-process on a free local port; yields (url, store)."""
    from pgdvs.app.session import SessionStore
    from pgdvs.app.ui import build_demo

    store = SessionStore(root)
    demo = build_demo(store, hub)
    demo.queue(max_size=32, default_concurrency_limit=4)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            ssr_mode=False)
    try:
        yield url, store
    finally:
        demo.close()
        store.close_all()
