"""Learned models from the Hugging Face Hub: manifest (``models.yaml``), background download, verification,
load-once access with classical fallback. See docs/models.md."""
from .manifest import load_manifest, preload_from_hub_entries
from .registry import ModelHub, ModelStatus

__all__ = ["ModelHub", "ModelStatus", "load_manifest", "preload_from_hub_entries"]
