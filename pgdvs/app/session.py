"""Per-session state of the app: one ``Session`` per browser tab or API client, each with its own temp folder.

All session folders live under one app-owned root; a session's folder is removed when the tab closes
(``demo.unload``), when the session has been idle for ``max_idle_s`` (API clients never "close"), and at exit.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

ROOT_PREFIX = "pgdvs-app-"
_SAFE_KEY = re.compile(r"[^A-Za-z0-9_-]")


class SessionBusy(InputError):
    """A long job (reconstruct, render) is already running in this session."""


@dataclass
class Session:
    """Everything one user has produced so far. Later steps are dropped whenever an earlier one is redone.

    clip: the ingested ``pgdvs.ingest.Clip``; scene: the reconstructed ``pgdvs.scene.Scene`` (its ``dyn_mask``
    holds the accepted masks); editor: the ``MaskEditor`` over the scene; pending_masks (N, H, W) bool:
    propagated masks shown for checking, not yet accepted.
    """

    folder: Path
    clip: object | None = None
    scene: object | None = None
    editor: object | None = None
    segmenter_label: str = ""
    pending_masks: np.ndarray | None = None
    stage_log: list[str] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _job: str | None = None

    def file(self, name: str) -> Path:
        """Path of an app-written file inside this session's folder (created on demand)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    def drop_from_clip(self):
        """A new clip invalidates the scene and every edit."""
        self.clip = None
        self.drop_from_scene()
        self.scene = None

    def drop_from_scene(self):
        self.editor = None
        self.pending_masks = None
        self.stage_log = []

    @contextlib.contextmanager
    def job(self, name: str):
        """Run one long job at a time per session; a second request is refused instead of queued twice."""
        if not self._lock.acquire(blocking=False):
            raise SessionBusy(f"{self._job or 'another job'} is still running in this session; "
                              f"wait for it to finish before starting {name}")
        self._job = name
        try:
            yield
        finally:
            self._job = None
            self.last_used = time.monotonic()
            self._lock.release()

    @property
    def busy(self) -> str | None:
        return self._job


class SessionStore:
    """Sessions keyed by the Gradio session hash, with their folders under one app-owned ``root``."""

    def __init__(self, root: str | Path | None = None, max_idle_s: float = 2 * 3600.0):
        # A root we create is ours to delete at exit; a given one may hold other things, so only our
        # session folders are removed from it.
        self._own_root = not root
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX)) if self._own_root else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_idle_s = max_idle_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Session:
        """The session for ``key`` (created on first use). Also closes sessions idle for too long."""
        key = _SAFE_KEY.sub("_", key or "anonymous")[:64]
        self.sweep()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = Session(folder=self.root / key)
            session.last_used = time.monotonic()
            return session

    def close(self, key: str):
        """Forget the session and delete its folder (a running job keeps its own references)."""
        key = _SAFE_KEY.sub("_", key or "anonymous")[:64]
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            shutil.rmtree(session.folder, ignore_errors=True)

    def sweep(self, now: float | None = None):
        now = time.monotonic() if now is None else now
        with self._lock:
            stale = [k for k, s in self._sessions.items() if s.busy is None and now - s.last_used > self.max_idle_s]
        for key in stale:
            self.close(key)

    def close_all(self):
        for key in list(self._sessions):
            self.close(key)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)
