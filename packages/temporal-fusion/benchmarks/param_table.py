"""Parameter count of each temporal fusion variant (Table 4 of the paper) at the paper's width.

Run: ``uv run python packages/temporal-fusion/benchmarks/param_table.py`` (CPU, about a second).
Prints one table: our count, the paper's count, their ratio, and the count split by part.
The counts do not depend on the grid size (all weights are shared over cells and Z slices).
"""

from __future__ import annotations

import argparse
import dataclasses

from temporal_fusion import PRESETS, VARIANTS, TemporalFusion

PAPER_M = {"concat_conv": 11.39, "bev_forward": 5.21, "bev_bfam": 6.62, "slices_bfam": 6.62}
LABELS = {
    "concat_conv": "Concatenation & 3D Conv.",
    "bev_forward": "BEV Pooling & Forward Attn.",
    "bev_bfam": "BEV Pooling & BFAM",
    "slices_bfam": "Ours (slices + global BEV + BFAM)",
}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="letoccflow_nuscenes", choices=sorted(PRESETS))
    parser.add_argument("--channels", type=int, default=None, help="override the preset's channels")
    parser.add_argument("--history", type=int, default=None, help="override the number of history frames")
    args = parser.parse_args()
    base = PRESETS[args.preset]
    if args.channels is not None:
        base = dataclasses.replace(base, channels=args.channels)
    if args.history is not None:
        base = dataclasses.replace(base, num_history=args.history)
    print(f"preset={args.preset} channels={base.channels} frames={base.num_history + 1} "
          f"heads={base.num_heads} points={base.num_points} levels=1")
    header = (f"| {'variant':<34} | {'ours (M)':>8} | {'paper (M)':>9} | {'ours/paper':>10} | "
              f"{'attention steps':>15} | {'per step':>9} | {'eq.6 merge':>10} | {'concat block':>12} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for variant in VARIANTS:
        model = TemporalFusion(dataclasses.replace(base, variant=variant))
        total = count(model)
        steps = [] if model.bfam is None else [*model.bfam.forward_steps, *model.bfam.backward_steps]
        per_step = count(steps[0]) if steps else 0
        print(f"| {LABELS[variant]:<34} | {total / 1e6:8.3f} | {PAPER_M[variant]:9.2f} | "
              f"{total / 1e6 / PAPER_M[variant]:10.3f} | {len(steps):15d} | {per_step:9,d} | "
              f"{count(model.merge):10,d} | {count(model.concat):12,d} |")


if __name__ == "__main__":
    main()
