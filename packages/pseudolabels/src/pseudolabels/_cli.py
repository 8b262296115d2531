"""``python -m pseudolabels {flow,track,mask,depth,disparity,verify} --dataset ... --root ... --out ...``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from ._pipeline import CUES, DATASETS, CueConfig, DatasetConfig, make_cues, verify_cache

__all__ = ["main"]

_EPILOG = """\
examples:
  python -m pseudolabels depth --dataset nuscenes --root data/nuscenes --version v1.0-mini --out cache
  python -m pseudolabels track --dataset nuscenes --root data/nuscenes --out cache --workers 2
  python -m pseudolabels mask  --dataset nuscenes --root data/nuscenes --out cache   # reads cache/track
  python -m pseudolabels flow  --dataset kitti-tracking --root data/kitti_tracking --out cache \\
      --estimator raft --raft-weights weights/raft_small.pth
  python -m pseudolabels verify --out cache --delete      # then rerun the cue commands to remake files
A run skips files that are already complete and valid, so rerunning a killed run resumes it.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pseudolabels",
        description="Make and check the 2-D cue cache.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    def data_args(sp: argparse.ArgumentParser, required: bool) -> None:
        sp.add_argument("--dataset", choices=DATASETS, required=required)
        sp.add_argument("--root", required=required, help="dataset root folder")
        sp.add_argument(
            "--split",
            action="append",
            default=[],
            help="split or scene/sequence name (repeatable); default: every scene",
        )
        sp.add_argument("--version", default="v1.0-trainval", help="nuScenes version (default v1.0-trainval)")
        sp.add_argument(
            "--camera", action="append", default=[], help="camera name (repeatable; default: all)"
        )
        sp.add_argument("--out", required=True, help="cache folder")

    for cue in CUES:
        sp = sub.add_parser(cue, help=f"make the {cue!r} cue")
        data_args(sp, True)
        sp.add_argument("--workers", type=int, default=1, help="processes (default 1)")
        sp.add_argument("--limit", type=int, default=None, help="only the first K samples")
        sp.add_argument("--no-progress", action="store_true")
        sp.add_argument(
            "--threads",
            type=int,
            default=1,
            help="torch threads per process (default 1: parallelise with --workers)",
        )
        sp.add_argument("--estimator", choices=("dis", "raft"), default="dis")
        sp.add_argument(
            "--preset", choices=("ultrafast", "fast", "medium"), default="medium", help="DIS preset"
        )
        sp.add_argument("--raft-weights", default=None, help="local RAFT state dict (nothing is downloaded)")
        sp.add_argument("--raft-arch", choices=("raft_small", "raft_large"), default="raft_small")
        sp.add_argument("--no-fb-check", action="store_true", help="no forward-backward validity test")
        sp.add_argument(
            "--flow-scale",
            type=float,
            default=1.0,
            help="estimate flow on images resized by this factor (0.5: ~4x faster); cue stays full size",
        )
        sp.add_argument("--device", default="cpu")
        sp.add_argument("--min-depth", type=float, default=1.0, help="drop LiDAR points nearer than this (m)")
        if cue == "mask":
            sp.add_argument(
                "--method",
                choices=("geometric", "boxes"),
                default="geometric",
                help="geometric: flow vs rigid flow (no labels); boxes: annotation boxes (USES LABELS)",
            )
            sp.add_argument(
                "--flow-cue",
                choices=("track", "flow"),
                default=None,
                help="flow used by the geometric mask (default: track on nuScenes, flow on KITTI)",
            )
            sp.add_argument("--threshold-px", type=float, default=None)
            sp.add_argument("--relative", type=float, default=0.1)
            sp.add_argument(
                "--fill-distance",
                type=float,
                default=30.0,
                help="geometric: nearest-return depth fill reach, px (2: fewer false positives)",
            )
            sp.add_argument(
                "--moving-speed",
                type=float,
                default=0.5,
                help="boxes: minimum speed, m/s (0 = every movable object)",
            )
        if cue == "disparity":
            sp.add_argument(
                "--baseline",
                type=float,
                default=None,
                help="stereo baseline in metres (default 0.5327, the released code's value)",
            )

    sp = sub.add_parser("verify", help="check every cache file; --delete removes bad ones")
    data_args(sp, False)
    sp.add_argument("--cue", action="append", default=[], choices=CUES)
    sp.add_argument("--delete", action="store_true", help="delete bad and temporary files")
    sp.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (1 when errors or bad files were found)."""
    args = _parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    dataset = None
    if args.dataset is not None:
        if args.root is None:
            raise SystemExit("--root is needed with --dataset")
        dataset = DatasetConfig(args.dataset, args.root, tuple(args.split), args.version, tuple(args.camera))
    if args.command == "verify":
        report = verify_cache(
            args.out, cues=tuple(args.cue), delete=args.delete, dataset=dataset, progress=not args.no_progress
        )
        print(report)
        return 1 if report.bad or report.missing else 0
    extra = {}
    if args.command == "mask":
        flow_cue = args.flow_cue or ("track" if args.dataset == "nuscenes" else "flow")
        extra = {
            "mask_method": args.method,
            "mask_flow": flow_cue,
            "mask_relative": args.relative,
            "mask_fill_distance": args.fill_distance,
            "moving_speed": args.moving_speed,
        }
        if args.threshold_px is not None:
            extra["mask_threshold_px"] = args.threshold_px
    if args.command == "disparity":
        extra["baseline"] = args.baseline
    config = CueConfig(
        args.command,
        estimator=args.estimator,
        preset=args.preset,
        raft_weights=args.raft_weights,
        raft_arch=args.raft_arch,
        fb_check=not args.no_fb_check,
        flow_scale=args.flow_scale,
        device=args.device,
        min_depth=args.min_depth,
        **extra,
    )
    if config.estimator == "raft":
        config.build_estimator()  # fail now, with the path, when the weights are missing
    t0 = time.perf_counter()
    report = make_cues(
        dataset, config, args.out, workers=args.workers, limit=args.limit, progress=not args.no_progress
    )
    print(f"{report} in {time.perf_counter() - t0:.1f} s")
    for err in report.errors[:20]:
        print(f"  ERROR {err}", file=sys.stderr)
    return 1 if report.errors else 0
