"""Tiny random checkpoints of every model kind, laid out as an offline Hugging Face Hub cache.

Used by tests/test_hub.py; the app's tests can reuse ``build_tiny_checkpoints`` + ``write_hub_repo`` +
``tiny_manifest`` to give ``ModelHub(manifest=..., cache_dir=...)`` real (tiny) learned models.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch

from pgdvs.hub.manifest import parse_manifest

TINY_REVISION = "0123456789abcdef0123456789abcdef01234567"
PINNED_REVISION = "fedcba9876543210fedcba9876543210fedcba98"

# name -> (repo_id, loader, loader_args, stage, revision the manifest asks for)
TINY_MODELS = {
    "sam": ("test-org/tiny-sam", "sam", {"model_type": "tiny_test"}, "segmentation", "main"),
    "depth": ("test-org/tiny-depth", "depth_anything", {}, "depth", PINNED_REVISION),
    "raft": ("test-org/tiny-raft", "raft", {"arch": "raft_small"}, "flow", "main"),
    "gnt": ("test-org/tiny-gnt", "gnt", {}, "static_render", "main"),
}


def build_tiny_checkpoints(folder: Path) -> dict[str, dict[str, Path]]:
    """Write random tiny checkpoints; returns {model name: {repo file path: file}}."""
    from torchvision.models.optical_flow import raft_small
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    from pgdvs.hub.loaders import build_sam_tiny

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}

    sam_path = folder / "sam" / "checkpoints" / "sam_tiny.pth"
    sam_path.parent.mkdir(parents=True)
    torch.save(build_sam_tiny().state_dict(), sam_path)
    out["sam"] = {"checkpoints/sam_tiny.pth": sam_path}

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            patch_size=14, image_size=56, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32,
                                 neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8,
                                 depth_estimation_type="relative")
    depth_dir = folder / "depth"
    DepthAnythingForDepthEstimation(config).save_pretrained(depth_dir)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(depth_dir)
    out["depth"] = {name: depth_dir / name for name in ("config.json", "model.safetensors", "preprocessor_config.json")}

    raft_path = folder / "raft" / "raft_tiny.pth"
    raft_path.parent.mkdir()
    torch.save(raft_small(weights=None).state_dict(), raft_path)
    out["raft"] = {"raft_tiny.pth": raft_path}

    gnt_path = folder / "gnt" / "generalized_model_720000.pth"
    gnt_path.parent.mkdir()
    torch.save({"net_coarse": {"w": torch.randn(4, 4)}, "feature_net": {"w": torch.randn(4)}, "step": 720000},
               gnt_path)
    out["gnt"] = {"generalized_model_720000.pth": gnt_path}
    return out


def write_hub_repo(cache: Path, repo_id: str, files: dict[str, Path], revision: str = TINY_REVISION,
                   blobs: bool = False) -> Path:
    """Lay ``files`` out as ``models--ORG--NAME/snapshots/REV/...`` + ``refs/main``; returns the snapshot folder.

    ``blobs=True`` stores content in ``blobs/<sha256>`` with snapshot symlinks, as a real download does.
    """
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    for rel, src in files.items():
        dst = snapshot / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if blobs:
            blob = repo_dir / "blobs" / sha256_of(src)
            blob.parent.mkdir(exist_ok=True)
            shutil.copyfile(src, blob)
            dst.symlink_to(Path(*[".."] * (len(Path(rel).parts) + 1), "blobs", blob.name))
        else:
            shutil.copyfile(src, dst)
    return snapshot


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tiny_manifest(sources: dict[str, dict[str, Path]], checksums: bool = True, extra: list[dict] | None = None):
    """A validated manifest for the tiny models (sha256 + size from the files unless ``checksums=False``)."""
    return parse_manifest(tiny_manifest_data(sources, checksums, extra), source="tiny-manifest")


def tiny_manifest_data(sources: dict[str, dict[str, Path]], checksums: bool = True, extra: list[dict] | None = None):
    """The same manifest as plain data (dump it with yaml for ``--manifest``)."""
    models = []
    for name, (repo_id, loader, args, stage, revision) in TINY_MODELS.items():
        files = [{"path": rel, "sha256": sha256_of(p) if checksums else None,
                  "size": p.stat().st_size if checksums else None} for rel, p in sources[name].items()]
        models.append({"name": name, "label": f"tiny {name}", "stage": stage, "repo_id": repo_id,
                       "revision": revision, "files": files, "license": "MIT", "loader": loader,
                       "loader_args": args})
    data = {"stages": {"segmentation": {"classical": "GrabCut"}, "depth": {"classical": "triangulation"},
                       "flow": {"classical": "DIS"}, "static_render": {"classical": "masked IBR"}},
            "models": models + (extra or [])}
    return data


def write_tiny_cache(cache: Path, sources: dict[str, dict[str, Path]], names=None, blobs: bool = False) -> Path:
    """Put the tiny models ``names`` (default: all) into the Hub cache ``cache``; returns ``cache``."""
    for name in names if names is not None else TINY_MODELS:
        repo_id, _, _, _, revision = TINY_MODELS[name]
        write_hub_repo(cache, repo_id, sources[name], revision if revision != "main" else TINY_REVISION, blobs)
    return cache
