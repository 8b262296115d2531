"""Ground truth of the synthetic world agrees with its own renderings (and fails when perturbed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from occflow_data.synth import (
    Renderer,
    camera_flow,
    lidar_visibility,
    make_world,
    nuscenes_rig,
    pixel_masks,
    voxelize,
)
from occflow_data.synth._geometry import invert_pose
from volrender import OCC3D_NUSCENES, raycast_voxels


@pytest.fixture(scope="module")
def scene():
    world = make_world(11, 3.0)
    rig = nuscenes_rig(72, 128, azimuth_bins=540)
    return world, rig, Renderer(world)


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    x0 = np.clip(np.floor(x).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2)
    fx, fy = np.clip(x - x0, 0, 1)[..., None], np.clip(y - y0, 0, 1)[..., None]
    return (
        (1 - fx) * (1 - fy) * img[y0, x0]
        + fx * (1 - fy) * img[y0, x0 + 1]
        + (1 - fx) * fy * img[y0 + 1, x0]
        + fx * fy * img[y0 + 1, x0 + 1]
    )


def _warp_error(a, b, flow, sel) -> float:
    n, h, w = a.depth.shape
    ys, xs = np.mgrid[0:h, 0:w]
    errs = []
    for c in range(n):
        warped = _bilinear(b.rgb[c].astype(np.float32) / 255, xs + flow[c, ..., 0], ys + flow[c, ..., 1])
        diff = np.abs(warped - a.rgb[c].astype(np.float32) / 255).mean(-1)
        errs.append(diff[sel[c]])
    return float(np.concatenate(errs).mean())


def test_flow_warps_next_frame_onto_current(scene):
    world, rig, renderer = scene
    a = renderer.render_cameras(1.0, rig.cameras)
    b = renderer.render_cameras(1.0 + 1 / 12, rig.cameras)
    flow, valid = camera_flow(world, a, b, rig.cameras)
    _, dynamic = pixel_masks(world, a)
    sel = valid & ~dynamic & (a.depth > 0)
    assert sel.mean() > 0.4
    good = _warp_error(a, b, flow, sel)
    shifted = flow.copy()
    shifted[..., 0] += 2.0
    assert good < 0.03
    assert _warp_error(a, b, shifted, sel) > 2.0 * good
    assert _warp_error(a, b, np.zeros_like(flow), sel) > 2.0 * good


def test_flow_invalid_where_occluded_or_outside(scene):
    world, rig, renderer = scene
    a = renderer.render_cameras(0.5, rig.cameras)
    b = renderer.render_cameras(1.0, rig.cameras)
    flow, valid = camera_flow(world, a, b, rig.cameras)
    n, h, w = valid.shape
    ys, xs = np.mgrid[0:h, 0:w]
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    inside = (tx > -0.5) & (ty > -0.5) & (tx < w - 0.5) & (ty < h - 0.5)
    assert not np.any(valid & ~inside)
    assert not np.any(valid & (a.depth <= 0))
    assert (inside & ~valid & (a.depth > 0)).any()  # some points are hidden in frame b


def test_lidar_ranges_agree_with_rendered_depth(scene):
    world, rig, renderer = scene
    t = 0.5
    frame = renderer.render_cameras(t, rig.cameras)
    sweep = renderer.render_lidar(t, rig.lidar)
    ego_pts = sweep.points @ rig.lidar.sensor_to_ego[:3, :3].T + rig.lidar.sensor_to_ego[:3, 3]

    def agreement(lidar_to_ego) -> float:
        pts = sweep.points @ lidar_to_ego[:3, :3].T + lidar_to_ego[:3, 3]
        ok_all, total = 0, 0
        for c, cam in enumerate(rig.cameras):
            e2c = invert_pose(cam.cam_to_ego)
            pc = pts @ e2c[:3, :3].T + e2c[:3, 3]
            z = pc[:, 2]
            front = z > 1.0
            u = np.round(cam.intrinsics[0, 0] * pc[front, 0] / z[front] + cam.intrinsics[0, 2]).astype(int)
            v = np.round(cam.intrinsics[1, 1] * pc[front, 1] / z[front] + cam.intrinsics[1, 2]).astype(int)
            inside = (u >= 0) & (v >= 0) & (u < cam.width) & (v < cam.height)
            d = frame.depth[c][v[inside], u[inside]]
            zz = z[front][inside]
            ok_all += int(np.sum(np.abs(d - zz) < 0.05 * zz + 0.1))
            total += int(inside.sum())
        return ok_all / max(total, 1)

    assert len(ego_pts) > 1000
    assert agreement(rig.lidar.sensor_to_ego) > 0.8
    wrong = rig.lidar.sensor_to_ego.copy()
    wrong[:3, :3] = np.eye(3)  # forget the sensor's -90 degree yaw
    assert agreement(wrong) < 0.5


def test_occupancy_raycast_agrees_with_lidar(scene):
    world, rig, renderer = scene
    t = 1.0
    ego = world.ego_pose(t)
    sweep = renderer.render_lidar(t, rig.lidar)
    occ = voxelize(world, t, ego, OCC3D_NUSCENES)
    sem = occ.occ3d(world)
    s2e = rig.lidar.sensor_to_ego
    pts = sweep.points @ s2e[:3, :3].T + s2e[:3, 3]
    origin = s2e[:3, 3]
    rng = np.linalg.norm(pts - origin, axis=1)
    dirs = (pts - origin) / rng[:, None]
    lo, hi = np.array(OCC3D_NUSCENES.lower), np.array(OCC3D_NUSCENES.upper)
    keep = np.all((pts > lo + 0.5) & (pts < hi - 0.5), axis=1)
    occupied = torch.from_numpy(sem != 17)[None]
    o = torch.from_numpy(np.repeat(origin[None], keep.sum(), 0))[None]
    d = torch.from_numpy(dirs[keep])[None]
    hits = raycast_voxels(occupied, OCC3D_NUSCENES, o, d, 100.0)
    r = rng[keep]
    # The first occupied voxel may start before the surface, but by at most one voxel diagonal
    # measured along the surface normal (it holds solid within a diagonal of where the ray enters).
    normal = sweep.normal[keep] @ s2e[:3, :3].T
    cos = np.abs(np.sum(normal * dirs[keep], axis=1))
    slack = float(np.linalg.norm(OCC3D_NUSCENES.voxel_size)) / np.maximum(cos, 0.05)

    def errors(h) -> tuple[float, float]:
        e, hit = h.entry[0].numpy(), h.hit[0].numpy()
        late = ~hit | (e > r + 0.05)  # the ray passes its LiDAR hit without meeting an occupied voxel
        early = hit & (r - e > slack + 0.05)  # it meets occupancy well before the surface
        return float(late.mean()), float(early.mean())

    assert keep.sum() > 1000
    late, early = errors(hits)
    assert late < 0.01
    assert early < 0.1  # rays grazing a neighbouring voxel (under car bodies, past crowns and poles)
    # The voxel holding each LiDAR hit is occupied.
    idx = np.floor((pts[keep] - lo) / np.array(OCC3D_NUSCENES.voxel_size)).astype(int)
    assert (sem[idx[:, 0], idx[:, 1], idx[:, 2]] != 17).mean() > 0.98
    # A grid lifted or lowered by two voxels (0.8 m) no longer explains the ranges.
    assert errors(raycast_voxels(torch.roll(occupied, 2, dims=3), OCC3D_NUSCENES, o, d, 100.0))[1] > 0.3
    assert errors(raycast_voxels(torch.roll(occupied, -2, dims=3), OCC3D_NUSCENES, o, d, 100.0))[0] > 0.3


def test_voxel_flow_is_object_velocity(scene):
    world, _, _ = scene
    t = 1.0
    ego = world.ego_pose(t)
    occ = voxelize(world, t, ego, OCC3D_NUSCENES)
    flow = occ.flow(world, t, ego)
    static = occ.code < 100
    assert np.all(flow[static] == 0)
    dt = 1e-3
    pos_a, _, _ = world.agent_states(t - dt)
    pos_b, _, _ = world.agent_states(t + dt)
    vel_fd = (pos_b - pos_a) / (2 * dt)  # finite difference of the world's positions, map frame
    rot = ego[:3, :3].T
    moving_checked = 0
    for k in np.unique(occ.code[occ.code >= 100]) - 100:
        cells = occ.code == 100 + k
        expect = (rot @ vel_fd[k])[:2]
        np.testing.assert_allclose(flow[cells], np.broadcast_to(expect, flow[cells].shape), atol=1e-3)
        moving_checked += int(np.linalg.norm(expect) > 0.5)
    assert moving_checked >= 1


def test_visibility_masks(scene):
    world, rig, renderer = scene
    t = 1.0
    sweep = renderer.render_lidar(t, rig.lidar)
    occ = voxelize(world, t, world.ego_pose(t), OCC3D_NUSCENES)
    seen = lidar_visibility([sweep], rig.lidar, OCC3D_NUSCENES, [invert_pose(rig.lidar.sensor_to_ego)])
    occupied = occ.code >= 0
    # Voxels holding LiDAR hits are seen; most voxels deep under the ground are not.
    s2e = rig.lidar.sensor_to_ego
    pts = sweep.points @ s2e[:3, :3].T + s2e[:3, 3]
    idx = np.floor((pts - np.array(OCC3D_NUSCENES.lower)) / np.array(OCC3D_NUSCENES.voxel_size)).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(OCC3D_NUSCENES.cells)), axis=1)
    i = idx[inside]
    assert seen[i[:, 0], i[:, 1], i[:, 2]].mean() > 0.98
    assert seen[:, :, 0].mean() < 0.05  # z in [-1, -0.6] m: under the road
    assert occupied[:, :, 0].mean() > 0.9


def test_render_independent_of_cpu_thread_split(scene):
    world, rig, _ = scene
    one = Renderer(world, threads=1).render_cameras(0.7, rig.cameras)
    three = Renderer(world, threads=3).render_cameras(0.7, rig.cameras)
    for name in ("rgb", "depth", "semantic", "instance", "agent", "points"):
        assert np.array_equal(getattr(one, name), getattr(three, name)), name
    assert one.instance.max() > 0 and (one.depth == 0).any()  # agents and sky are in view
