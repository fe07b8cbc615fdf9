"""``python -m pgdvs reconstruct VIDEO_OR_FRAME_DIR --out SCENE_DIR``."""
from __future__ import annotations

import sys


def register(subparsers) -> None:
    from .pipeline import FLOW_BACKENDS, PRIOR_MODES, ReconstructConfig

    defaults = ReconstructConfig()
    p = subparsers.add_parser("reconstruct", help="video or frame folder -> scene folder (cameras, depth, masks)",
                              description="Reconstruct cameras, consistent depth and dynamic masks from a clip.")
    p.add_argument("source", metavar="VIDEO_OR_FRAME_DIR", help="video file (mp4/mov/webm/mkv/gif) or frame folder")
    p.add_argument("--out", required=True, metavar="SCENE_DIR", help="scene folder to write (replaced atomically)")
    p.add_argument("--max-frames", type=int, default=defaults.max_frames,
                   help=f"frame budget after subsampling (default {defaults.max_frames})")
    p.add_argument("--max-side", type=int, default=defaults.max_side,
                   help=f"longer image side in px (default {defaults.max_side}: ~1 min for 48 frames on 2 cores)")
    p.add_argument("--flow", choices=FLOW_BACKENDS, default=defaults.flow, help="optical flow backend")
    p.add_argument("--depth-prior", choices=PRIOR_MODES, default=defaults.depth_prior,
                   help="auto: use Depth Anything V2 when its checkpoint is present; none: classical only")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args) -> int:
    from .pipeline import ReconstructConfig, reconstruct

    config = ReconstructConfig(max_frames=args.max_frames, max_side=args.max_side, flow=args.flow,
                               depth_prior=args.depth_prior).check()
    hub = None
    if args.depth_prior == "auto" or args.flow == "raft":
        from ..hub import ModelHub

        hub = ModelHub.default().start(background=False, check_hash=False, local_only=True)  # never downloads

    def progress(stage: str, fraction: float, message: str) -> None:
        if not args.quiet and fraction in (0.0, 1.0):
            print(f"[{stage}] {message}", file=sys.stderr, flush=True)

    scene = reconstruct(args.source, config, progress=progress, out_dir=args.out, hub=hub)
    for notice in scene.meta.get("notices", []):
        print(f"notice: {notice}", file=sys.stderr)
    print(f"wrote {args.out}: {scene.n_frames} frames {scene.hw[1]}x{scene.hw[0]}, "
          f"cameras {scene.meta['cameras']['backend']}, motion {scene.meta['motion']['kind']}, "
          f"{scene.meta['seconds']['total']:.1f} s")
    return 0
