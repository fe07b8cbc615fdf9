"""``ModelHub``: the process's learned models, fetched in the background, loaded once, never fatal.

The app asks ``backend_for(stage)`` to label a stage and ``get(name)`` / ``get_stage(stage)`` for the model;
``None`` means "use the classical backend". Nothing here raises because a model is missing or corrupt: the
reason goes into ``status()``.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..errors import InputError
from . import loaders as _loaders
from .manifest import Manifest, ModelSpec, apply_env_overrides, load_manifest
from .store import OFFLINE, Unavailable, hub_offline, resolve_files, verify_files

log = logging.getLogger("pgdvs.hub")

QUEUED, DOWNLOADING, READY, UNAVAILABLE = "queued", "downloading", "ready", "unavailable"


@dataclass(frozen=True)
class ModelStatus:
    state: str            # queued | downloading | ready | unavailable
    reason: str           # what is happening, or why the model cannot be used
    backend_label: str    # the learned backend this model provides, e.g. "SAM ViT-B"
    path: str | None      # the local file (or folder, for multi-file models) once found
    stage: str = ""
    verified: bool = False  # files found and checked (a model can be verified yet unavailable: GNT today)

    def line(self) -> str:
        return f"{self.state}: {self.reason}" if self.reason else self.state


class ModelHub:
    """Models of one manifest. Thread-safe; ``start()`` once, then ``status/get/backend_for`` from any thread.

    manifest: a :class:`Manifest`, a path to a YAML manifest, or None for the project's ``models.yaml``.
    cache_dir / token: passed to huggingface_hub (None: ``HF_HUB_CACHE`` / ``HF_HOME`` / ``HF_TOKEN`` decide).
    offline: None follows ``HF_HUB_OFFLINE``. torch_dir: folder for direct-URL weights (None: torch hub cache).
    environ: where ``PGDVS_<NAME>_*`` overrides are read (None: ``os.environ``). loaders: replace loader functions
    by name (tests count calls this way).
    """

    def __init__(self, manifest: Manifest | str | Path | None = None, *, cache_dir: str | Path | None = None,
                 token: str | None = None, offline: bool | None = None, torch_dir: str | Path | None = None,
                 device: str = "cpu", environ: Mapping[str, str] | None = None,
                 loaders: Mapping[str, Callable] | None = None):
        self.manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        self.cache_dir, self.token, self.torch_dir, self.device = cache_dir, token, torch_dir, device
        self._offline = offline
        self._loaders = {**_loaders.LOADERS, **(loaders or {})}
        self._lock = threading.Lock()
        self._load_locks = {name: threading.Lock() for name in self.manifest.models}
        self._loaded: dict[str, object] = {}
        self._paths: dict[str, dict[str, Path]] = {}
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.specs: dict[str, ModelSpec] = {}
        self._status: dict[str, ModelStatus] = {}
        for name, spec in self.manifest.models.items():
            try:
                spec = apply_env_overrides(spec, environ)
                state, reason = (QUEUED, "") if spec.enabled else (
                    UNAVAILABLE, f"disabled (set {spec.env_prefix}ENABLED=1 to use it)")
            except InputError as exc:
                state, reason = UNAVAILABLE, str(exc)
            self.specs[name] = spec
            self._status[name] = ModelStatus(state, reason, spec.label, None, spec.stage)

    # --- process-wide instance ---------------------------------------------------------------------------
    _default: "ModelHub | None" = None
    _default_lock = threading.Lock()

    @classmethod
    def default(cls) -> "ModelHub":
        """The process's hub over the project manifest (created on first use, not started)."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    # --- fetching ------------------------------------------------------------------------------------------
    def start(self, background: bool = True, check_hash: bool = True, local_only: bool = False,
              preload: bool = False) -> "ModelHub":
        """Find, download (unless offline or ``local_only``) and verify every enabled model; idempotent.

        ``check_hash=False`` checks presence and size only (a quick status). ``preload`` loads each model as soon
        as it is ready (in the same thread), so that the first user does not wait for it.
        """
        with self._lock:
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._fetch_all, args=(check_hash, local_only, preload),
                                            name="pgdvs-hub", daemon=True)
        if background:
            self._thread.start()
        else:
            self._thread.run()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every model has been fetched or given up on; False on timeout."""
        return self._done.wait(timeout)

    def _fetch_all(self, check_hash: bool, local_only: bool, preload: bool) -> None:
        offline = hub_offline() if self._offline is None else self._offline
        why_not = OFFLINE if offline else ("local check only (download with `python -m pgdvs hub download`)"
                                           if local_only else None)
        try:
            for name, spec in self.specs.items():
                if self._status[name].state == QUEUED:
                    self._fetch_one(spec, why_not, check_hash)
                if preload:
                    self.get(name)
        finally:
            self._done.set()

    def _fetch_one(self, spec: ModelSpec, offline: str | None, check_hash: bool) -> None:
        name = spec.name
        try:
            paths, source = resolve_files(spec, cache_dir=self.cache_dir, offline=offline, token=self.token,
                                          torch_dir=self.torch_dir,
                                          on_download=lambda msg: self._set(name, DOWNLOADING, msg))
            self._set(name, DOWNLOADING, "verifying" if check_hash else "checking sizes")
            verify_files(spec, paths, check_hash=check_hash)
            first = str(_location(paths))
            missing = _loaders.missing_backend(spec.loader)
            if missing:
                self._check_structure(spec, paths)
                self._set(name, UNAVAILABLE, f"{missing}; checkpoint verified ({source})", first, verified=True)
                return
            with self._lock:
                self._paths[name] = paths
            self._set(name, READY, source, first, verified=True)
        except Unavailable as exc:
            self._set(name, UNAVAILABLE, str(exc))
        except Exception as exc:  # a bug or an odd OS error must not take the app down
            log.exception("model %s: unexpected error", name)
            self._set(name, UNAVAILABLE, f"unexpected error: {exc}")

    def _check_structure(self, spec: ModelSpec, paths) -> None:
        check = _loaders.CHECKS.get(spec.loader)
        if check is None:
            return
        try:
            check(paths)
        except Exception as exc:
            raise Unavailable(f"unreadable file: {exc}") from None

    def _set(self, name: str, state: str, reason: str, path: str | None = None, verified: bool | None = None) -> None:
        with self._lock:
            old = self._status[name]
            self._status[name] = ModelStatus(state, reason, old.backend_label, path or old.path, old.stage,
                                             old.verified if verified is None else verified)
        log.info("model %s: %s%s", name, state, f": {reason}" if reason else "")

    # --- queries -------------------------------------------------------------------------------------------
    def status(self) -> dict[str, ModelStatus]:
        with self._lock:
            return dict(self._status)

    def get(self, name: str):
        """The loaded model, or None while it is not ready or when it cannot be loaded. Loads once per hub."""
        if name not in self.specs:
            raise KeyError(f"unknown model '{name}'; known: {sorted(self.specs)}")
        if self._status[name].state != READY:
            return None
        with self._load_locks[name]:
            if name in self._loaded:
                return self._loaded[name]
            if self._status[name].state != READY:  # an earlier load failed while we waited
                return None
            spec = self.specs[name]
            try:
                model = self._loaders[spec.loader](self._paths[name], dict(spec.loader_args), self.device)
            except Exception as exc:
                self._set(name, UNAVAILABLE, f"unreadable file: loading {spec.label} failed ({exc}); "
                                             "the file may be truncated or corrupt", verified=False)
                return None
            self._loaded[name] = model
            log.info("model %s: loaded", name)
            return model

    def get_stage(self, stage: str):
        """(model name, loaded model) of the first model of ``stage`` that loads, or None (use classical)."""
        for spec in self.manifest.for_stage(self._check_stage(stage)):
            model = self.get(spec.name)
            if model is not None:
                return spec.name, model
        return None

    def backend_for(self, stage: str) -> str:
        """``"learned: <label>"`` when a model of the stage is ready, else ``"classical: <label>"``."""
        status = self.status()
        for spec in self.manifest.for_stage(self._check_stage(stage)):
            if status[spec.name].state == READY:
                return f"learned: {spec.label}"
        return f"classical: {self.manifest.classical[stage]}"

    def backends(self) -> dict[str, str]:
        return {stage: self.backend_for(stage) for stage in self.manifest.classical}

    def _check_stage(self, stage: str) -> str:
        if stage not in self.manifest.classical:
            raise KeyError(f"unknown stage '{stage}'; known: {sorted(self.manifest.classical)}")
        return stage


def _location(paths: dict[str, Path]) -> Path:
    """The file of a single-file model, else the folder that holds the model's files."""
    if len(paths) == 1:
        return next(iter(paths.values()))
    return Path(os.path.commonpath([p.parent for p in paths.values()]))
