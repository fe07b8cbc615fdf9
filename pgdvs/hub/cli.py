"""``python -m pgdvs hub status|download|verify``: the model manifest from the command line."""
from __future__ import annotations

import dataclasses
import json


def register(subparsers) -> None:
    hub = subparsers.add_parser(
        "hub", help="learned models: status, download, verify",
        description="Learned models from the Hugging Face Hub (manifest: pgdvs/hub/models.yaml). Honours HF_HOME, "
                    "HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE and the PGDVS_<NAME>_{REPO,REVISION,PATH,SHA256,ENABLED} "
                    "overrides. Details: docs/models.md.")
    sub = hub.add_subparsers(dest="hub_command", required=True, metavar="ACTION")
    actions = {
        "status": ("what is in the local cache (no network, sizes only: quick)", _status),
        "download": ("download missing models now (unless HF_HUB_OFFLINE=1), then verify them", _download),
        "verify": ("check every cached file's sha256 (no network)", _verify),
    }
    for name, (help_text, func) in actions.items():
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        p.add_argument("names", nargs="*", metavar="NAME",
                       help="models to act on (default: every enabled model); naming a disabled one enables it")
        p.add_argument("--manifest", help="another manifest YAML (default: pgdvs/hub/models.yaml)")
        p.add_argument("--cache-dir", help="Hub cache folder (default: HF_HUB_CACHE / HF_HOME)")
        p.add_argument("--json", action="store_true", help="print a JSON report instead of a table")
        p.set_defaults(func=func)


def _status(args) -> int:
    hub = _hub(args)
    hub.start(background=False, check_hash=False, local_only=True)
    _report(hub, args)
    return 0


def _download(args) -> int:
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("pgdvs.hub")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        hub = _hub(args)
        hub.start(background=False)
    finally:
        logger.removeHandler(handler)
    return _report(hub, args)


def _verify(args) -> int:
    hub = _hub(args)
    hub.start(background=False, local_only=True)
    return _report(hub, args)


def _hub(args):
    from ..errors import InputError
    from .manifest import load_manifest
    from .registry import ModelHub

    manifest = load_manifest(args.manifest)
    unknown = sorted(set(args.names) - set(manifest.models))
    if unknown:
        raise InputError(f"unknown model(s) {unknown}; the manifest has {sorted(manifest.models)}")
    if args.names:
        models = {n: dataclasses.replace(m, enabled=True) for n, m in manifest.models.items() if n in args.names}
        manifest = dataclasses.replace(manifest, models=models)
    return ModelHub(manifest, cache_dir=args.cache_dir)


def _report(hub, args) -> int:
    """Print the table (or JSON); 1 when a requested model's files are missing or bad, else 0."""
    from .store import hub_cache_dir, hub_offline

    status = hub.status()
    failed = [n for n, s in status.items() if hub.specs[n].enabled and not s.verified]
    if args.json:
        print(json.dumps({"cache": str(hub_cache_dir(hub.cache_dir)), "offline": hub_offline(),
                          "models": {n: dataclasses.asdict(s) for n, s in status.items()},
                          "backends": hub.backends()}, indent=2))
    else:
        print(f"Hub cache: {hub_cache_dir(hub.cache_dir)}{'  (offline)' if hub_offline() else ''}")
        rows = [("MODEL", "STAGE", "STATE", "SIZE", "LICENCE", "DETAIL")]
        for name, s in status.items():
            spec = hub.specs[name]
            size = f"{spec.size_mb:g} MB" if spec.size_mb else "?"
            rows.append((name, s.stage, s.state, size, spec.license, s.reason))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[5])
        print("Backends: " + "; ".join(f"{stage}: {b}" for stage, b in hub.backends().items()))
    return 1 if failed else 0

