"""Entry point of ``python -m occflow_train`` / ``accelerate launch -m occflow_train``.

The trainer is not written yet (issues 10 and 11). Until then this prints what is planned and
exits with status 0 without training anything.
"""

from __future__ import annotations

import argparse
import sys

PLANNED_PRESETS = {
    "synthetic": "default: the built-in synthetic world, a small model that trains on 2 CPU cores",
    "nuscenes": "nuScenes, 6 cameras, paper sizes (ConvNeXt-Base, TPV 100x100x10)",
    "kitti-odometry": "KITTI odometry / SemanticKITTI layout, front camera",
    "kitti-mot": "KITTI tracking layout, front camera, scene-flow evaluation",
}


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {k:16s} {v}" for k, v in PLANNED_PRESETS.items())
    parser = argparse.ArgumentParser(
        prog="python -m occflow_train",
        description="Two-stage self-supervised occupancy and flow training (Let Occ Flow).\n\n"
        "NOT IMPLEMENTED YET: the trainer lands with issues 10 and 11. This command only\n"
        "prints this message; it does not train.\n\nPlanned presets:\n" + presets,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("preset", nargs="?", default="synthetic", choices=sorted(PLANNED_PRESETS))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"occflow_train: the trainer is not implemented yet; nothing was trained "
          f"(preset '{args.preset}' is planned). See `python -m occflow_train --help`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
