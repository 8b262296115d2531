"""Time the synthetic world's stages for one nuScenes-like keyframe and print a table.

Reports wall-clock and process CPU seconds (median of ``--repeat`` runs): on a shared machine the
CPU time is the steadier number. ``--threads`` sets the renderer's CPU launch split.

    uv run python packages/occflow-data/scripts/synth_speed.py --height 225 --width 400
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from occflow_data.synth import (
    Renderer,
    camera_flow,
    camera_visibility,
    lidar_visibility,
    make_world,
    nuscenes_rig,
    voxelize,
)
from occflow_data.synth._geometry import invert_pose
from volrender import OCC3D_NUSCENES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=225)
    p.add_argument("--width", type=int, default=400)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    world = make_world(5, 6.0)
    rig = nuscenes_rig(args.height, args.width)
    t0 = time.perf_counter()
    renderer = Renderer(world, args.device, threads=args.threads)
    renderer.render_cameras(0.0, rig.cameras)  # compile / load kernels
    renderer.render_lidar(0.0, rig.lidar)
    print(f"renderer setup + kernel load: {time.perf_counter() - t0:.2f} s (static mesh "
          f"{renderer.static_mesh.points.shape[0]} vertices)")
    state = {}
    s2e_inv = invert_pose(rig.lidar.sensor_to_ego)

    def cams(i):
        state["a"] = renderer.render_cameras(1.0 + i, rig.cameras)
        state["b"] = renderer.render_cameras(1.5 + i, rig.cameras)

    stages = [  # fmt: skip
        ("6 cameras (x2: frame and next keyframe)", cams),
        ("LiDAR sweep", lambda i: state.__setitem__("l", renderer.render_lidar(1.0 + i, rig.lidar))),
        ("optical flow + validity (6 cameras)",
         lambda i: camera_flow(world, state["a"], state["b"], rig.cameras)),
        ("Occ3D voxelisation 200x200x16",
         lambda i: voxelize(world, 1.0 + i, world.ego_pose(1.0 + i), OCC3D_NUSCENES)),
        ("camera mask",
         lambda i: camera_visibility(state["a"], rig.cameras, OCC3D_NUSCENES, device=args.device)),
        ("LiDAR mask (voxel traversal)",
         lambda i: lidar_visibility([state["l"]], rig.lidar, OCC3D_NUSCENES, [s2e_inv], device=args.device)),
    ]
    print(f"| stage ({args.height} x {args.width}) | wall s | CPU s |")
    print("|---|---|---|")
    for name, fn in stages:
        walls, cpus = [], []
        for i in range(args.repeat):
            w, c = time.perf_counter(), time.process_time()
            fn(0.1 * i)
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
        print(f"| {name} | {np.median(walls):.3f} | {np.median(cpus):.3f} |")


if __name__ == "__main__":
    main()
