"""``python -m occflow_data.synth``: write a synthetic dataset in a real layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__

LAYOUTS = ("nuscenes", "kitti-odometry", "kitti-tracking")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m occflow_data.synth",
        description="Generate procedural driving worlds and write them as a nuScenes, KITTI odometry + "
        "SemanticKITTI or KITTI tracking dataset (atomically: a killed run leaves no "
        "complete-looking folder).",
    )
    p.add_argument("--layout", choices=LAYOUTS, required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder (must be empty unless --overwrite)")
    p.add_argument("--scenes", type=int, default=2, help="scenes / sequences (nuScenes: at most 10)")
    p.add_argument(
        "--frames",
        type=int,
        default=10,
        help="keyframes per scene (nuScenes, 2 Hz) or frames per sequence (KITTI, 10 Hz)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="Warp device: cpu or cuda[:N]")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--height", type=int, default=None, help="image height (default: 225 nuScenes, 188 KITTI)")
    p.add_argument("--width", type=int, default=None, help="image width (default: 400 nuScenes, 620 KITTI)")
    p.add_argument(
        "--camera-sweeps", type=int, default=5, help="nuScenes: camera frames between keyframes (5 = 12 Hz)"
    )
    p.add_argument(
        "--lidar-sweeps", type=int, default=9, help="nuScenes: LiDAR sweeps between keyframes (9 = 20 Hz)"
    )
    p.add_argument(
        "--voxel-stride",
        type=int,
        default=5,
        help="kitti-odometry: write SemanticKITTI voxels every N-th frame (KITTI: 5)",
    )
    p.add_argument("--no-gt-cues", action="store_true", help="nuScenes: skip the oracle cues in gt_cues/")
    p.add_argument("--version", action="version", version=f"occflow-data {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from ._io import atomic_dir, check_out_dir
    from ._render import check_device

    try:
        check_out_dir(args.out, args.overwrite)
        check_device(args.device)
        if args.scenes < 1 or args.frames < 2:
            raise ValueError("--scenes must be >= 1 and --frames >= 2")
        if args.layout == "nuscenes":
            from ._nuscenes import NuScenesConfig, write_nuscenes

            cfg = NuScenesConfig(
                scenes=args.scenes,
                keyframes=args.frames,
                seed=args.seed,
                height=args.height or 225,
                width=args.width or 400,
                camera_sweeps=args.camera_sweeps,
                lidar_sweeps=args.lidar_sweeps,
                gt_cues=not args.no_gt_cues,
            )
            total = cfg.scenes * cfg.keyframes

            def write(root, progress):
                return write_nuscenes(root, cfg, args.device, progress)
        else:
            from ._kitti import KittiConfig, write_kitti_odometry, write_kitti_tracking

            cfg = KittiConfig(
                sequences=args.scenes,
                frames=args.frames,
                seed=args.seed,
                height=args.height or 188,
                width=args.width or 620,
                voxel_stride=args.voxel_stride,
            )
            total = cfg.sequences * cfg.frames
            writer = write_kitti_odometry if args.layout == "kitti-odometry" else write_kitti_tracking

            def write(root, progress):
                return writer(root, cfg, args.device, progress)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    marker = {
        "generator": "occflow_data.synth",
        "version": __version__,
        "layout": args.layout,
        "config": repr(cfg),
    }
    with (
        tqdm(total=total, unit="frame", desc=f"synth {args.layout}") as bar,
        atomic_dir(args.out, args.overwrite, marker) as tmp,
    ):
        summary = write(tmp, bar.update)
    print(f"wrote {args.out}: {summary}")
    return 0
