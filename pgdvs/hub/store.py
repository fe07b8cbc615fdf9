"""Find a model's files (local override, Hub cache, Hub download, direct URL) and verify them.

Every failure is an :class:`Unavailable` whose message is the status line the user sees, one wording per cause
(missing, truncated, checksum mismatch, not configured, offline, ...). huggingface_hub itself honours
``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_TOKEN``; ``cache_dir=None`` and ``token=None`` leave those in charge.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit
from typing import Callable

from .manifest import FileSpec, ModelSpec

PROBE_TIMEOUT_S = 3.0  # how long a host may take to accept a connection before it counts as unreachable
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class Unavailable(Exception):
    """A model cannot be used; ``str(exc)`` is the reason shown in the status report."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set now or was set when huggingface_hub was imported."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").lower()
    return bool(constants.HF_HUB_OFFLINE) or env in ("1", "true", "yes", "on")


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    from huggingface_hub import constants

    return Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE)


OFFLINE = "offline (HF_HUB_OFFLINE=1)"


def resolve_files(spec: ModelSpec, *, cache_dir: str | Path | None = None, offline: str | None = None,
                  token: str | None = None, torch_dir: str | Path | None = None,
                  on_download: Callable[[str], None] | None = None) -> tuple[dict[str, Path], str]:
    """Return ({manifest file path: local path}, source description), downloading when allowed.

    Order: ``PGDVS_<NAME>_PATH`` > Hub repo (cache first, then download) > ``url`` (torch hub cache, then
    download). ``offline``: None to allow downloads, else why not (ends the "not downloaded" messages, e.g.
    :data:`OFFLINE`). ``on_download(message)`` is called before any network transfer.
    """
    if spec.local_path is not None:
        return _local_files(spec), f"local path ({spec.env_prefix}PATH)"
    if spec.repo_id:
        return _hub_files(spec, cache_dir, offline, token, on_download)
    if spec.url:
        return _url_file(spec, torch_dir, offline, on_download)
    raise Unavailable(f"no Hub repo configured: upload {spec.files[0].path} to your own model repo and set "
                      f"{spec.env_prefix}REPO, or set {spec.env_prefix}PATH to a local copy (docs/models.md)")


def _local_files(spec: ModelSpec) -> dict[str, Path]:
    root = spec.local_path
    if root.is_dir():
        return {f.path: root / f.path for f in spec.files}
    if root.is_file() and len(spec.files) == 1:
        return {spec.files[0].path: root}
    if root.is_file():
        raise Unavailable(f"{spec.env_prefix}PATH={root} must be a folder holding {[f.path for f in spec.files]}")
    raise Unavailable(f"missing file: {spec.env_prefix}PATH={root} does not exist")


def _hub_files(spec, cache_dir, offline, token, on_download) -> tuple[dict[str, Path], str]:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    paths, downloaded = {}, False
    for f in spec.files:
        kwargs = dict(repo_id=spec.repo_id, filename=f.path, revision=spec.revision, cache_dir=cache_dir, token=token)
        try:  # cache first: no network round trip at startup when the file is there
            paths[f.path] = Path(hf_hub_download(**kwargs, local_files_only=True))
            continue
        except LocalEntryNotFoundError:
            if offline:
                raise Unavailable(f"{_explain_not_cached(spec, f, cache_dir)}; {offline}") from None
        where = f"{spec.repo_id}@{spec.revision}"
        if not reachable(constants.ENDPOINT):
            raise Unavailable(f"the Hub is unreachable and {f.path} of {where} is not cached")
        if on_download:
            on_download(f"downloading {f.path} from {where}")
        try:
            paths[f.path] = Path(hf_hub_download(**kwargs))
            downloaded = True
        except LocalEntryNotFoundError:
            raise Unavailable(f"the Hub is unreachable and {f.path} of {where} is not cached") from None
        except GatedRepoError:
            raise Unavailable(f"{spec.repo_id} is gated: accept its terms on the Hub and set HF_TOKEN") from None
        except RepositoryNotFoundError:
            raise Unavailable(f"repo {spec.repo_id} not found on the Hub (private? set HF_TOKEN)") from None
        except RevisionNotFoundError:
            raise Unavailable(f"revision '{spec.revision}' not found in {spec.repo_id}") from None
        except EntryNotFoundError:
            raise Unavailable(f"{f.path} not found in {where}") from None
        except (HfHubHTTPError, OSError) as exc:
            raise Unavailable(f"download of {f.path} from {where} failed: {exc}") from None
    return paths, "downloaded from the Hub" if downloaded else "Hub cache"


def _explain_not_cached(spec: ModelSpec, f: FileSpec, cache_dir) -> str:
    """Say which level of the Hub cache is missing: the repo, the revision or one file."""
    cache = hub_cache_dir(cache_dir)
    repo_dir = cache / f"models--{spec.repo_id.replace('/', '--')}"
    if not repo_dir.is_dir():
        return f"not downloaded: {spec.repo_id} is not in the Hub cache {cache}"
    commit = spec.revision
    ref = repo_dir / "refs" / spec.revision
    if not _COMMIT_RE.match(commit):
        commit = ref.read_text().strip() if ref.is_file() else ""
    if not commit or not (repo_dir / "snapshots" / commit).is_dir():
        return f"not downloaded: revision '{spec.revision}' of {spec.repo_id} is not in the Hub cache"
    return f"missing file: {f.path} is not in the cached snapshot {commit[:8]} of {spec.repo_id}"


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the host of ``url`` accepts a connection within ``timeout`` seconds. Checked before a download:
    huggingface_hub retries a failing request five times with backoff (about 25 s and five log lines per model),
    which on a machine without network only fills the console while the app already runs."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def _url_file(spec, torch_dir, offline, on_download) -> tuple[dict[str, Path], str]:
    import torch

    f = spec.files[0]
    folder = Path(torch_dir) if torch_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / Path(f.path).name
    if target.is_file():
        return {f.path: target}, "torch hub cache"
    if offline:
        raise Unavailable(f"not downloaded: {target.name} is not in {folder} and no Hub mirror is set "
                          f"({spec.env_prefix}REPO); {offline}")
    if not reachable(spec.url):
        raise Unavailable(f"not downloaded: {urlsplit(spec.url).hostname} is unreachable and {target.name} is not "
                          f"in {folder}")
    if on_download:
        on_download(f"downloading {target.name} from {spec.url}")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(spec.url, str(target), progress=False)  # temp file + rename inside
    except Exception as exc:  # urllib raises many kinds; the reason is all the user needs
        raise Unavailable(f"download of {spec.url} failed: {exc}") from None
    return {f.path: target}, f"downloaded from {spec.url}"


def verify_files(spec: ModelSpec, paths: dict[str, Path], check_hash: bool = True) -> None:
    """Check presence, size and sha256 of every file; raise :class:`Unavailable` naming the first problem.

    Expected sha256: the manifest's (full or prefix), else the Hub cache's blob name (the LFS sha256) when the
    file is a link into ``blobs/``. ``check_hash=False`` checks presence and size only (quick status).
    """
    for f in spec.files:
        path = paths[f.path]
        if not path.is_file():
            raise Unavailable(f"missing file: {f.path} ({path})")
        size = path.stat().st_size
        if f.size is not None and size < f.size:
            raise Unavailable(f"truncated file: {f.path} has {size} of {f.size} bytes")
        if f.size is not None and size != f.size:
            raise Unavailable(f"size mismatch: {f.path} has {size} bytes, expected {f.size}")
        expected = f.sha256 or _hub_blob_sha256(path)
        if check_hash and expected:
            with open(path, "rb") as fh:
                got = hashlib.file_digest(fh, "sha256").hexdigest()
            if not got.startswith(expected):
                raise Unavailable(f"checksum mismatch: {f.path} has sha256 {got[:16]}…, expected {expected[:16]}…")


def _hub_blob_sha256(path: Path) -> str | None:
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and _SHA256_RE.match(real.name):
        return real.name
    return None
