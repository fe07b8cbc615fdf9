"""The model manifest (``models.yaml``): load, validate, apply per-model environment overrides.

Pure data: no torch, no network. :class:`ModelSpec` is what every other hub module works from.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import yaml

from ..errors import InputError

DEFAULT_MANIFEST = Path(__file__).with_name("models.yaml")
LOADER_NAMES = ("sam", "depth_anything", "raft", "gnt")
ENV_PREFIX = "PGDVS_"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SHA_RE = re.compile(r"^[0-9a-f]{8,64}$")
_MODEL_KEYS = {"name", "label", "stage", "enabled", "repo_id", "url", "revision", "files", "size_mb", "license",
               "loader", "loader_args"}
_FILE_KEYS = {"path", "sha256", "size"}


@dataclass(frozen=True)
class FileSpec:
    """One file of a model: path inside the repo, expected sha256 (full or >= 8-hex prefix) and size in bytes."""
    path: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str
    stage: str
    files: tuple[FileSpec, ...]
    license: str
    loader: str
    repo_id: str | None = None
    url: str | None = None  # direct download, used when no repo_id is set (torchvision's RAFT weights)
    revision: str = "main"
    size_mb: float | None = None
    enabled: bool = True
    loader_args: Mapping = field(default_factory=dict)
    local_path: Path | None = None  # set by PGDVS_<NAME>_PATH: use these files, skip the Hub

    @property
    def env_prefix(self) -> str:
        return f"{ENV_PREFIX}{self.name.upper()}_"


@dataclass(frozen=True)
class Manifest:
    models: dict[str, ModelSpec]          # in preference order within each stage
    classical: dict[str, str]             # stage -> label of its classical backend
    source: str = "<memory>"

    def for_stage(self, stage: str) -> list[ModelSpec]:
        return [m for m in self.models.values() if m.stage == stage]


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read and validate a manifest file (default: the project's ``models.yaml``). Raises InputError."""
    path = Path(path) if path is not None else DEFAULT_MANIFEST
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the model manifest ({exc})") from exc
    return parse_manifest(data, source=str(path))


def parse_manifest(data, source: str = "<memory>") -> Manifest:
    """Validate a manifest given as plain data (the YAML structure). Raises InputError naming the field."""
    if not (isinstance(data, dict) and isinstance(data.get("stages"), dict) and isinstance(data.get("models"), list)):
        raise InputError(f"{source}: a manifest needs a 'stages' mapping and a 'models' list")
    classical = {}
    for stage, entry in data["stages"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("classical"), str):
            raise InputError(f"{source}: stages.{stage}.classical must be a string (the classical backend's label)")
        classical[stage] = entry["classical"]
    models: dict[str, ModelSpec] = {}
    for index, entry in enumerate(data["models"]):
        spec = _parse_model(entry, f"{source}: models[{index}]", classical)
        if spec.name in models:
            raise InputError(f"{source}: models[{index}].name '{spec.name}' appears twice")
        models[spec.name] = spec
    return Manifest(models=models, classical=classical, source=source)


def _parse_model(entry, where: str, classical: dict[str, str]) -> ModelSpec:
    if not isinstance(entry, dict):
        raise InputError(f"{where} must be a mapping")
    unknown = set(entry) - _MODEL_KEYS
    if unknown:
        raise InputError(f"{where} has unknown field(s) {sorted(unknown)}; allowed: {sorted(_MODEL_KEYS)}")
    for key in ("name", "stage", "license", "loader", "files"):
        if entry.get(key) in (None, ""):
            raise InputError(f"{where}.{key} is required")
    name = entry["name"]
    where = f"{where} ({name})"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InputError(f"{where}.name must be snake_case ([a-z][a-z0-9_]*)")
    if entry["stage"] not in classical:
        raise InputError(f"{where}.stage '{entry['stage']}' is not one of the stages {sorted(classical)}")
    if entry["loader"] not in LOADER_NAMES:
        raise InputError(f"{where}.loader '{entry['loader']}' is not one of {list(LOADER_NAMES)}")
    repo_id = entry.get("repo_id")
    if repo_id is not None and not (isinstance(repo_id, str) and _REPO_RE.match(repo_id)):
        raise InputError(f"{where}.repo_id '{repo_id}' is not of the form ORG/NAME")
    if not isinstance(entry["files"], list):
        raise InputError(f"{where}.files must be a list of {{path, sha256, size}}")
    files = tuple(_parse_file(f, f"{where}.files[{i}]") for i, f in enumerate(entry["files"]))
    if entry.get("url") and len(files) != 1:
        raise InputError(f"{where}.url needs exactly one file")
    loader_args = entry.get("loader_args") or {}
    if not isinstance(loader_args, dict):
        raise InputError(f"{where}.loader_args must be a mapping")
    size_mb = entry.get("size_mb")
    if size_mb is not None and not (isinstance(size_mb, (int, float)) and size_mb > 0):
        raise InputError(f"{where}.size_mb must be a positive number")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InputError(f"{where}.enabled must be true or false")
    return ModelSpec(name=name, label=str(entry.get("label") or name), stage=entry["stage"], files=files,
                     license=str(entry["license"]), loader=entry["loader"], repo_id=repo_id, url=entry.get("url"),
                     revision=str(entry.get("revision") or "main"), size_mb=size_mb, enabled=enabled,
                     loader_args=dict(loader_args))


def _parse_file(entry, where: str) -> FileSpec:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
        raise InputError(f"{where} must be a mapping with a non-empty 'path'")
    unknown = set(entry) - _FILE_KEYS
    if unknown:
        raise InputError(f"{where} has unknown field(s) {sorted(unknown)}; allowed: {sorted(_FILE_KEYS)}")
    sha = entry.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA_RE.match(sha)):
        raise InputError(f"{where}.sha256 must be null or 8 to 64 lower-case hex digits")
    size = entry.get("size")
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise InputError(f"{where}.size must be null or a positive number of bytes")
    return FileSpec(path=entry["path"], sha256=sha, size=size)


def apply_env_overrides(spec: ModelSpec, environ: Mapping[str, str] | None = None) -> ModelSpec:
    """Return ``spec`` with ``PGDVS_<NAME>_{REPO,REVISION,PATH,SHA256,ENABLED}`` applied. Raises InputError."""
    env = os.environ if environ is None else environ
    p = spec.env_prefix
    changes: dict = {}
    if env.get(p + "REPO"):
        repo = env[p + "REPO"].strip()
        if not _REPO_RE.match(repo):
            raise InputError(f"{p}REPO='{repo}' is not a Hub repo id of the form ORG/NAME")
        changes["repo_id"] = repo
    if env.get(p + "REVISION"):
        changes["revision"] = env[p + "REVISION"].strip()
    if env.get(p + "PATH"):
        changes["local_path"] = Path(env[p + "PATH"]).expanduser()
    if env.get(p + "SHA256"):
        sha = env[p + "SHA256"].strip().lower()
        if len(spec.files) != 1:
            raise InputError(f"{p}SHA256 only applies to single-file models; {spec.name} has {len(spec.files)} files")
        if sha != "none" and not _SHA_RE.match(sha):
            raise InputError(f"{p}SHA256='{sha}' must be 8 to 64 hex digits or 'none'")
        # Another digest means another file: the manifest's size no longer applies either.
        changes["files"] = (dataclasses.replace(spec.files[0], sha256=None if sha == "none" else sha, size=None),)
    if env.get(p + "ENABLED"):
        value = env[p + "ENABLED"].strip().lower()
        if value not in ("1", "0", "true", "false", "yes", "no"):
            raise InputError(f"{p}ENABLED='{value}' must be 1 or 0")
        changes["enabled"] = value in ("1", "true", "yes")
    return dataclasses.replace(spec, **changes) if changes else spec


def preload_from_hub_entries(manifest: Manifest | None = None) -> list[str]:
    """The README front matter's ``preload_from_hub`` lines: ``"<repo_id> <file1>,<file2> [<revision>]"``.

    Enabled models with a Hub repo in the manifest itself (environment overrides are a deployment's business).
    """
    manifest = manifest or load_manifest()
    lines = []
    for spec in manifest.models.values():
        if not spec.enabled or not spec.repo_id:
            continue
        line = f"{spec.repo_id} {','.join(f.path for f in spec.files)}"
        if spec.revision != "main":
            line += f" {spec.revision}"
        lines.append(line)
    return lines
