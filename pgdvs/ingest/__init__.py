"""Ingest: user clip -> bounded frame stack (see :mod:`pgdvs.ingest.clip`)."""
from .clip import Clip, IngestOptions, load_clip

__all__ = ["Clip", "IngestOptions", "load_clip"]
