"""Render one keyframe of the synthetic world to a PNG: the 6 cameras, depth, optical flow to the next
keyframe (colour wheel: hue = direction, saturation = magnitude; black = invalid) and a bird's-eye view
of the Occ3D occupancy grid coloured by class (the highest occupied voxel of each column).

    uv run python packages/occflow-data/scripts/show_frame.py --out packages/occflow-data/docs/synth_frame.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from occflow_data.synth import Renderer, camera_flow, make_world, nuscenes_rig, voxelize
from occflow_data.synth._classes import OCC3D_CLASSES, OCC3D_COLOURS
from volrender import OCC3D_NUSCENES

LAYOUT = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")


def flow_to_colour(flow: np.ndarray, valid: np.ndarray, scale: float) -> np.ndarray:
    """[H, W, 2] pixels -> [H, W, 3] float RGB (hue = direction, saturation = |flow| / scale)."""
    ang = (np.arctan2(flow[..., 1], flow[..., 0]) + np.pi) / (2 * np.pi)
    mag = np.clip(np.linalg.norm(flow, axis=-1) / scale, 0, 1)
    hsv = np.stack([ang, mag, np.ones_like(mag)], -1)
    rgb = matplotlib.colors.hsv_to_rgb(hsv)
    rgb[~valid] = 0
    return rgb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--time", type=float, default=3.0, help="seconds into the drive")
    p.add_argument("--height", type=int, default=225)
    p.add_argument("--width", type=int, default=400)
    args = p.parse_args()

    t0 = time.perf_counter()
    world = make_world(args.seed, args.time + 1.0)
    rig = nuscenes_rig(args.height, args.width)
    renderer = Renderer(world)
    frame = renderer.render_cameras(args.time, rig.cameras)
    nxt = renderer.render_cameras(args.time + 0.5, rig.cameras)
    flow, valid = camera_flow(world, frame, nxt, rig.cameras)
    ego = world.ego_pose(args.time)
    sem = voxelize(world, args.time, ego, OCC3D_NUSCENES).occ3d(world)
    print(f"rendered and voxelised in {time.perf_counter() - t0:.2f} s")

    order = [next(i for i, c in enumerate(rig.cameras) if c.name == n) for n in LAYOUT]
    fig = plt.figure(figsize=(16, 9.6), dpi=90)
    gs = fig.add_gridspec(4, 5, width_ratios=[1, 1, 1, 0.08, 1.55], wspace=0.03, hspace=0.08)
    scale = max(float(np.percentile(np.linalg.norm(flow[valid], axis=-1), 95)), 1.0)
    for j, i in enumerate(order):
        ax = fig.add_subplot(gs[j // 3, j % 3])
        ax.imshow(frame.rgb[i])
        ax.set_title(rig.cameras[i].name, fontsize=9, pad=2)
        ax.axis("off")
    for j, i in enumerate(order[:3]):
        ax = fig.add_subplot(gs[2, j])
        d = np.where(frame.depth[i] > 0, frame.depth[i], np.nan)
        ax.imshow(1.0 / d, cmap="magma", vmin=0, vmax=0.5)
        ax.set_title(f"{rig.cameras[i].name}: inverse depth", fontsize=9, pad=2)
        ax.axis("off")
        ax = fig.add_subplot(gs[3, j])
        ax.imshow(flow_to_colour(flow[i], valid[i], scale))
        ax.set_title(f"flow to t+0.5 s (sat. = {scale:.0f} px)", fontsize=9, pad=2)
        ax.axis("off")
    # Bird's-eye view: class of the highest occupied voxel per column; x forward = up.
    occupied = sem != 17
    top = np.where(occupied.any(-1), occupied.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], -1), -1)
    cls = np.where(top >= 0, np.take_along_axis(sem, np.maximum(top, 0)[..., None], -1)[..., 0], 17)
    bev = OCC3D_COLOURS[cls].astype(np.float32) / 255
    bev[cls == 17] = 0.1
    ax = fig.add_subplot(gs[:, 4])
    # Rows: x from +40 (top) to -40; columns: y from +40 (left) to -40.
    ax.imshow(bev[::-1, ::-1], extent=(40, -40, -40, 40))
    ax.set_title("Occ3D occupancy (BEV, 0.4 m, ego at centre)", fontsize=10)
    ax.set_xlabel("y (m, left is left)")
    ax.set_ylabel("x (m, forward is up)")
    ax.plot([0], [0], marker="^", color="white", markersize=8)
    present = [c for c in range(17) if (cls == c).any()]
    ax.legend(handles=[Patch(color=OCC3D_COLOURS[c] / 255, label=OCC3D_CLASSES[c]) for c in present],
              loc="lower left", fontsize=7, ncol=2, framealpha=0.8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, bbox_inches="tight")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
