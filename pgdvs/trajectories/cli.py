"""``python -m pgdvs presets``: list presets (exit 2 naming each invalid file), or turn one into a path file."""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "presets", help="list camera-path presets, or export one as camera_path.json / preview picture",
        description="Without NAME: list every preset with its description; exits 2 naming any invalid file. "
                    "With NAME and --scene: build that preset's path on the scene and write the requested files.")
    parser.add_argument("name", nargs="?", help="preset to build (needs --scene)")
    parser.add_argument("--folder", help="preset folder (default: the shipped presets/)")
    parser.add_argument("--scene", help="scene folder (from `python -m pgdvs reconstruct`)")
    parser.add_argument("--nerfstudio", metavar="JSON", help="write the path as nerfstudio camera_path.json")
    parser.add_argument("--plot", metavar="PNG", help="write the top/side preview picture")
    parser.add_argument("--schema", action="store_true", help="print every preset key with its allowed values")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from .presets import scan_presets
    from .schema import describe_schema

    if args.schema:
        print(describe_schema())
        return 0
    presets, errors = scan_presets(args.folder)
    if args.name is None:
        width = max((len(n) for n in presets), default=0)
        for name, preset in presets.items():
            print(f"{name:<{width}}  {preset.description}")
        if errors:
            raise InputError(f"{len(errors)} invalid preset file(s):\n" + "\n".join(f"  {e}" for e in errors))
        return 0
    if args.name not in presets:
        raise InputError(f"no preset named {args.name!r} (known: {', '.join(presets)})")
    if args.scene is None:
        raise InputError("building a path needs --scene DIR")
    _export(presets[args.name], args)
    return 0


def _export(preset, args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from ..atomic import atomic_file
    from ..scene import Scene
    from .nerfstudio import write_nerfstudio
    from .paths import make_path
    from .plot import plot_path

    scene = Scene.load(args.scene)
    path = make_path(preset, scene)
    print(f"{preset.name}: {len(path)} frames at {path.fps:g} fps, times {path.times.min():.2f}..{path.times.max():.2f}"
          f" of {scene.n_frames} input frames")
    if args.nerfstudio:
        print(f"wrote {write_nerfstudio(path, args.nerfstudio, scene.n_frames)}")
    if args.plot:
        with atomic_file(args.plot) as tmp:
            Image.fromarray(np.ascontiguousarray(plot_path(path, scene.c2w))).save(tmp, format="PNG")
        print(f"wrote {args.plot}")
    if not (args.nerfstudio or args.plot):
        print("(nothing written: pass --nerfstudio JSON and/or --plot PNG)", file=sys.stderr)
