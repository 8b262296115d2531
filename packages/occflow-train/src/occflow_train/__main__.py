"""``python -m occflow_train [PRESET] [--field.sub VALUE ...]`` and ``accelerate launch -m occflow_train``.

PRESET is one of ``synthetic`` (default), ``nuscenes``, ``kitti-odometry``, ``kitti-mot``; every
field of :class:`occflow_train.TrainConfig` can be overridden, e.g.::

    python -m occflow_train nuscenes --data.root /data/nuscenes --data.occ-root /data/occ3d
    python -m occflow_train --stage 1 --stage1.steps 50 --output-dir runs/quick
    python -m occflow_train --resume            # continue the run in --output-dir
"""

from __future__ import annotations

import sys

from ._train import PRESETS, TrainConfig, train


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The :class:`TrainConfig` named by ``argv`` (a preset name first, then field overrides)."""
    import tyro

    argv = list(sys.argv[1:] if argv is None else argv)
    preset = "synthetic"
    if argv and not argv[0].startswith("-"):
        preset = argv.pop(0)
    if preset not in PRESETS:
        raise SystemExit(f"occflow_train: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    description = (f"Two-stage self-supervised occupancy and flow training (Let Occ Flow), preset "
                   f"'{preset}'. Presets: {', '.join(PRESETS)} (give one as the first argument).")
    return tyro.cli(TrainConfig, default=PRESETS[preset], args=argv, prog=f"python -m occflow_train {preset}",
                    description=description)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
