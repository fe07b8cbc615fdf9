"""Build a model from verified files. One function per manifest ``loader``; heavy imports stay inside them.

Signature of every loader: ``load(paths: {manifest file path: local Path}, args: loader_args, device) -> model``.
They raise on unreadable files; :class:`pgdvs.hub.registry.ModelHub` turns that into a status line.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

GNT_NOT_AVAILABLE = "GNT renderer not available yet"


def _load_state_dict(path: Path) -> dict:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path.name} holds a {type(state).__name__}, not a state dict")
    return state


def _only_path(paths: dict[str, Path]) -> Path:
    (path,) = paths.values()
    return path


# --- SAM (segment-anything) ---------------------------------------------------------------------------------

def build_sam_tiny(checkpoint=None):
    """A 256-px, 2-block SAM (0.24M params, 1 MB) with segment-anything's own modules: fast enough for unit tests.

    Same call shape as ``sam_model_registry`` builders; ``SamPredictor`` reads ``image_encoder.img_size`` so it
    accepts frames of any size.
    """
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    dim, size, patch = 32, 256, 16
    sam = Sam(
        image_encoder=ImageEncoderViT(img_size=size, patch_size=patch, embed_dim=64, depth=2, num_heads=2,
                                      mlp_ratio=4, out_chans=dim, qkv_bias=True, use_rel_pos=True, window_size=4,
                                      global_attn_indexes=(1,), norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(size // patch, size // patch),
                                     input_image_size=(size, size), mask_in_chans=8),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=dim, iou_head_hidden_dim=32,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=64, num_heads=2)),
    )
    if checkpoint is not None:
        sam.load_state_dict(_load_state_dict(Path(checkpoint)))
    return sam


def sam_builder(model_type: str):
    """segment-anything's registry (``vit_b``, ``vit_l``, ``vit_h``, ``default``) plus ``tiny_test``."""
    from segment_anything import sam_model_registry

    builders = {**sam_model_registry, "tiny_test": build_sam_tiny}
    if model_type not in builders:
        raise ValueError(f"unknown SAM model_type '{model_type}'; allowed: {sorted(builders)}")
    return builders[model_type]


def load_sam(paths, args, device="cpu"):
    """-> ``segment_anything.modeling.Sam`` in eval mode; wrap it in ``SamPredictor`` per session."""
    sam = sam_builder(args.get("model_type", "vit_b"))(checkpoint=None)
    sam.load_state_dict(_load_state_dict(_only_path(paths)))
    return sam.to(device).eval()


# --- Depth Anything V2 (transformers) ------------------------------------------------------------------------

@dataclass
class DepthEstimator:
    """A transformers depth model with its image processor."""
    model: object
    processor: object
    device: str = "cpu"

    def predict_disparity(self, image: np.ndarray) -> np.ndarray:
        """image (H, W, 3) uint8 RGB -> (H, W) float32 relative inverse depth (larger = nearer), up to scale+shift."""
        import torch

        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model(**inputs)
        depth = self.processor.post_process_depth_estimation(out, target_sizes=[image.shape[:2]])[0]
        return depth["predicted_depth"].float().cpu().numpy()


def load_depth_anything(paths, args, device="cpu") -> DepthEstimator:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    folders = {p.parent for p in paths.values()}
    if len(folders) != 1:
        raise ValueError(f"the files of a transformers model must share one folder, got {sorted(map(str, folders))}")
    folder = folders.pop()
    model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True).to(device).eval()
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    return DepthEstimator(model, processor, device)


# --- RAFT (torchvision) --------------------------------------------------------------------------------------

def load_raft(paths, args, device="cpu"):
    """-> torchvision RAFT (``raft_large`` or ``raft_small``) in eval mode; call ``model(img1, img2)``."""
    from torchvision.models import optical_flow

    arch = args.get("arch", "raft_large")
    if arch not in ("raft_large", "raft_small"):
        raise ValueError(f"unknown RAFT arch '{arch}'; allowed: raft_large, raft_small")
    model = getattr(optical_flow, arch)(weights=None, progress=False)
    model.load_state_dict(_load_state_dict(_only_path(paths)))
    return model.to(device).eval()


# --- GNT (the project's renderer module, when it exists) ----------------------------------------------------

GNT_KEYS = ("net_coarse", "feature_net")


def _gnt_module():
    try:
        module = importlib.import_module("pgdvs.render.gnt")
    except ModuleNotFoundError as exc:
        if exc.name != "pgdvs.render.gnt":
            raise
        return None
    return module if hasattr(module, "load_gnt") else None


def check_gnt(paths) -> None:
    """Raise ValueError unless the file is a GNT checkpoint (a dict with ``net_coarse`` and ``feature_net``)."""
    state = _load_state_dict(_only_path(paths))
    missing = [k for k in GNT_KEYS if k not in state]
    if missing:
        raise ValueError(f"not a GNT checkpoint: keys {missing} missing (has {sorted(state)[:6]})")


def load_gnt(paths, args, device="cpu"):
    module = _gnt_module()
    if module is None:
        raise RuntimeError(GNT_NOT_AVAILABLE)
    return module.load_gnt(_only_path(paths), device=device)


def missing_backend(loader: str) -> str | None:
    """Why a loader cannot run in this build (its code is absent), or None."""
    if loader == "gnt" and _gnt_module() is None:
        return GNT_NOT_AVAILABLE
    return None


LOADERS = {"sam": load_sam, "depth_anything": load_depth_anything, "raft": load_raft, "gnt": load_gnt}
CHECKS = {"gnt": check_gnt}  # cheap structural checks for models that are verified but not loaded
