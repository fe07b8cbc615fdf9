"""One CLI for the project: ``python -m pgdvs reconstruct|render|presets|hub ...``.

Each stage owns a ``cli`` module with ``register(subparsers)``; the sub-parser sets ``func(args) -> int``.
Heavy imports stay inside those functions so that ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import PGDVSError

COMMAND_MODULES = (
    "pgdvs.reconstruct.cli",
    "pgdvs.render.cli",
    "pgdvs.trajectories.cli",
    "pgdvs.hub.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pgdvs", description="Dynamic view synthesis from a casual video.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PGDVSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
