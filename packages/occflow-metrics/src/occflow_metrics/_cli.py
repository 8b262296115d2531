"""``python -m occflow_metrics``: score a folder of predictions against Occ3D-layout ground truth."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ._evaluate import evaluate_occ3d, format_table
from ._rays import NUSCENES_LIDAR_OFFSET


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m occflow_metrics",
        description="RayIoU (SparseOcc), mAVE, OccScore and voxel mIoU of a folder of predictions "
                    "<pred>/<sample_token>.npz (semantics uint8 [200,200,16], optional flow float32 "
                    "[200,200,16,2] m/s) against Occ3D-layout ground truth (<gt>/annotations.json, "
                    "<gt>/gts/<scene>/<token>/labels.npz).")
    p.add_argument("--gt", required=True, type=Path, help="Occ3D-layout ground-truth folder")
    p.add_argument("--pred", required=True, type=Path, help="folder of <sample_token>.npz predictions")
    p.add_argument("--variant", choices=("semantic", "geo"), default="semantic",
                   help="RayIoU variant: semantic (SparseOcc) or geo (class-agnostic); default semantic")
    p.add_argument("--origins", choices=("scene", "window"), default="scene",
                   help="ray origins: scene (SparseOcc, <= 8 keyframes) or window "
                        "(Let Occ Flow, ref-3..ref+2)")
    p.add_argument("--split", choices=("all", "train", "val"), default="all",
                   help="scenes to score (annotations.json's train_split/val_split); default all")
    p.add_argument("--no-camera-mask", action="store_true",
                   help="voxel mIoU on every voxel instead of the camera-visible ones")
    p.add_argument("--sensor-offset", nargs=3, type=float, default=NUSCENES_LIDAR_OFFSET,
                   metavar=("X", "Y", "Z"), help="ray origin in each ego frame, metres (nuScenes LIDAR_TOP)")
    p.add_argument("--device", default="cpu", help="torch device for ray casting (cpu, cuda)")
    p.add_argument("--backend", choices=("warp", "torch"), default="warp", help="ray-casting backend")
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input: the message names the file)."""
    args = _parser().parse_args(argv)
    for name in ("gt", "pred"):
        if not getattr(args, name).is_dir():
            print(f"error: --{name} {getattr(args, name)} is not a folder", file=sys.stderr)
            return 2
    try:
        result = evaluate_occ3d(
            args.gt, args.pred, variant=args.variant, origins=args.origins, split=args.split,
            camera_mask=not args.no_camera_mask, sensor_offset=tuple(args.sensor_offset),
            device=args.device, backend=args.backend, progress=not args.no_progress)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_clean(result), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
