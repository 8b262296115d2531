"""Ground truth from the world: per-pixel optical flow, occupancy grids with classes and flow,
and camera / LiDAR visibility masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from volrender import GridSpec

from . import _classes as C
from ._geometry import invert_pose
from ._render import CameraFrame, init_warp
from ._rigs import Camera, Lidar
from ._world import World

MOVABLE_KINDS = ("car", "truck", "bus", "cyclist", "motorcycle", "pedestrian")
MOVING_SPEED = 0.05  # m/s: faster than this counts as moving


def camera_flow(world: World, a: CameraFrame, b: CameraFrame, cameras) -> tuple[np.ndarray, np.ndarray]:
    """Optical flow from frame ``a`` to frame ``b`` of the same cameras, from the scene motion.

    Each pixel's 3D point in ``a`` is moved with its object (static scenery stays), projected into
    ``b``'s camera; the flow is valid where the point is in front of the camera, inside the image
    and not hidden in ``b`` (its depth agrees with ``b``'s rendered depth at the landing pixel).

    Returns:
        flow: [N, H, W, 2] float32 pixels (du, dv), pixel (x, y) of ``a`` lands at (x + du, y + dv).
        valid: [N, H, W] bool.
    """
    if not isinstance(a, CameraFrame) or not isinstance(b, CameraFrame):
        raise TypeError("a and b must be CameraFrame objects (Renderer.render_cameras)")
    if a.depth.shape != b.depth.shape or len(cameras) != a.depth.shape[0]:
        raise ValueError(
            f"a, b and cameras must match: a {a.depth.shape}, b {b.depth.shape}, {len(cameras)} cameras"
        )
    n, h, w = a.depth.shape
    pts = a.points.reshape(n, -1, 3).astype(np.float64)
    agent = a.agent.reshape(n, -1)
    if world.agents:
        move = world.agent_poses(b.time) @ invert_pose(world.agent_poses(a.time))  # [K, 4, 4]
        dyn = agent >= 0
        m = move[agent[dyn]]
        pts[dyn] = np.einsum("pij,pj->pi", m[:, :3, :3], pts[dyn]) + m[:, :3, 3]
    flow = np.zeros((n, h * w, 2), np.float32)
    valid = np.zeros((n, h * w), bool)
    ys, xs = np.divmod(np.arange(h * w), w)
    for c, cam in enumerate(cameras):
        map_to_cam = invert_pose(b.cam_to_map[c])
        pc = pts[c] @ map_to_cam[:3, :3].T + map_to_cam[:3, 3]
        z = pc[:, 2]
        zs = np.where(z > 1e-3, z, 1.0)
        u = cam.intrinsics[0, 0] * pc[:, 0] / zs + cam.intrinsics[0, 2]
        v = cam.intrinsics[1, 1] * pc[:, 1] / zs + cam.intrinsics[1, 2]
        flow[c, :, 0] = u - xs
        flow[c, :, 1] = v - ys
        ui, vi = np.round(u).astype(np.int64), np.round(v).astype(np.int64)
        ok = (agent[c] != -2) & (z > 0.1) & (ui >= 0) & (vi >= 0) & (ui < w) & (vi < h)
        db = b.depth[c][np.clip(vi, 0, h - 1), np.clip(ui, 0, w - 1)]
        ok &= (db > 0) & (np.abs(db - z) < 0.05 + 0.02 * z)
        valid[c] = ok
    return flow.reshape(n, h, w, 2), valid.reshape(n, h, w)


def pixel_masks(world: World, frame: CameraFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel masks [N, H, W]: ``movable`` (vehicles, cyclists, pedestrians), ``dynamic`` (moving)."""
    if not world.agents:
        z = np.zeros(frame.agent.shape, bool)
        return z, z.copy()
    kinds = np.array([a.kind in MOVABLE_KINDS for a in world.agents] + [False, False])
    speed = np.linalg.norm(world.agent_states(frame.time)[2], axis=1)
    moving = np.concatenate([(speed > MOVING_SPEED) & kinds[:-2], [False, False]])
    idx = np.where(frame.agent >= 0, frame.agent, len(world.agents))
    return kinds[idx], moving[idx]


@dataclass
class Occupancy:
    """A voxel grid of the world at one instant, in a sensor/ego frame.

    Attributes:
        code: [X, Y, Z] int16 voxel content: -1 free, 0..19 static fine class, 100 + k agent k.
        grid: the voxel grid (in the frame given by ``frame_to_map``).
    """

    code: np.ndarray
    grid: GridSpec

    def occ3d(self, world: World) -> np.ndarray:
        """Occ3D labels [X, Y, Z] uint8 (17 = free)."""
        lut = np.full(100 + max(len(world.agents), 1) + 1, C.FREE, np.uint8)
        lut[: C.NUM_FINE] = C.FINE_TO_OCC3D
        for k, a in enumerate(world.agents):
            lut[100 + k] = C.FINE_TO_OCC3D[a.fine]
        return lut[self.code]  # code -1 -> last entry (free)

    def semantic_kitti(self, world: World, t: float) -> np.ndarray:
        """SemanticKITTI raw label ids [X, Y, Z] uint16 (0 = empty / unlabeled), moving agents as 25x."""
        lut = np.zeros(100 + max(len(world.agents), 1) + 1, np.uint16)
        lut[: C.NUM_FINE] = C.FINE_TO_SEMKITTI
        speed = np.linalg.norm(world.agent_states(t)[2], axis=1) if world.agents else np.zeros(0)
        for k, a in enumerate(world.agents):
            table = C.FINE_TO_SEMKITTI_MOVING if speed[k] > MOVING_SPEED else C.FINE_TO_SEMKITTI
            lut[100 + k] = table[a.fine]
        return lut[self.code]

    def flow(self, world: World, t: float, frame_to_map: np.ndarray) -> np.ndarray:
        """Per-voxel horizontal velocity [X, Y, Z, 2] float32, m/s, in the grid's frame (agents only)."""
        out = np.zeros(self.code.shape + (2,), np.float32)
        if not world.agents:
            return out
        vel = world.agent_states(t)[2] @ frame_to_map[:3, :3]  # map -> frame rotation (R^T v)
        table = np.zeros((100 + len(world.agents) + 1, 2), np.float32)
        table[100 : 100 + len(world.agents)] = vel[:, :2]
        return table[self.code]


def voxelize(world: World, t: float, frame_to_map: np.ndarray, grid: GridSpec, sub: int = 2) -> Occupancy:
    """Voxelise the world at time ``t`` into ``grid`` placed at ``frame_to_map`` (a pose with yaw only).

    Each voxel is split into ``sub``^3 sample points; a point is solid if it lies under the ground
    surface or inside a box (exact tests, static boxes and agents moved to time ``t``). A voxel
    takes the most frequent solid content of its points; a voxel none of whose points is solid but
    which overlaps a box (exact separating-axis test: thin poles, signs, wheels) takes that box's
    content. Ground is resolved by the sample points only.
    """
    if not isinstance(grid, GridSpec):
        raise TypeError(f"grid must be a volrender.GridSpec, got {type(grid).__name__}")
    nx, ny, nz = grid.cells
    vs = np.array(grid.voxel_size)
    lower = np.array(grid.lower)
    step = vs / sub
    ax = [lower[i] + (np.arange(grid.cells[i] * sub) + 0.5) * step[i] for i in range(3)]
    # Ground: per column a height and class.
    gx, gy = np.meshgrid(ax[0], ax[1], indexing="ij")
    rot, trans = frame_to_map[:3, :3], frame_to_map[:3, 3]
    mx = rot[0, 0] * gx + rot[0, 1] * gy + trans[0]
    my = rot[1, 0] * gx + rot[1, 1] * gy + trans[1]
    fine, height = world.ground.lookup(mx, my)
    zmap = ax[2] + trans[2]  # yaw-only frames: map z = frame z + offset
    n_under = np.searchsorted(zmap, height, side="left")  # sample points below the surface (z ascending)
    below = np.arange(len(zmap))[None, None, :] < n_under[:, :, None]
    code = np.where(below, fine[:, :, None].astype(np.int16), np.int16(-1))
    # Boxes: static, then agents (later writes win).
    yaw_f = np.arctan2(rot[1, 0], rot[0, 0])
    inv = invert_pose(frame_to_map)
    groups = [(world.static.center, world.static.half, world.static.yaw, world.static.fine.astype(np.int16))]
    if world.agents:
        pos, yaw, _ = world.agent_states(t)
        for k, a in enumerate(world.agents):
            p = a.parts
            c, s = np.cos(yaw[k]), np.sin(yaw[k])
            cen = np.stack(
                [
                    c * p.center[:, 0] - s * p.center[:, 1] + pos[k, 0],
                    s * p.center[:, 0] + c * p.center[:, 1] + pos[k, 1],
                    p.center[:, 2] + pos[k, 2],
                ],
                1,
            )
            groups.append((cen, p.half, p.yaw + yaw[k], np.full(len(p), 100 + k, np.int16)))
    reach = np.linalg.norm(np.array(grid.upper) - lower) + 1.0
    centre_f = (lower + np.array(grid.upper)) / 2
    touch = np.full((nx, ny, nz), -1, np.int16)  # exact box-voxel overlap, for parts thinner than a sample
    vc = [lower[i] + (np.arange(grid.cells[i]) + 0.5) * vs[i] for i in range(3)]
    hv = vs / 2 - 1e-6
    cells = np.array(grid.cells)
    for cen_m, half, yaw_m, codes in groups:
        cen = cen_m @ inv[:3, :3].T + inv[:3, 3]
        near = np.linalg.norm(cen[:, :2] - centre_f[:2], axis=1) < reach / 2 + np.linalg.norm(
            half[:, :2], axis=1
        )
        for b in np.flatnonzero(near):
            yb = yaw_m[b] - yaw_f
            c, s = np.cos(yb), np.sin(yb)
            hx, hy, hz = half[b]
            ext = np.array([abs(c) * hx + abs(s) * hy, abs(s) * hx + abs(c) * hy, hz])
            lo = np.floor((cen[b] - ext - lower) / step - 0.5).astype(int) + 1
            hi = np.floor((cen[b] + ext - lower) / step - 0.5).astype(int) + 1
            lo = np.maximum(lo, 0)
            hi = np.minimum(hi, np.array(code.shape))
            if np.any(hi <= lo):
                continue
            px = ax[0][lo[0] : hi[0]] - cen[b, 0]
            py = ax[1][lo[1] : hi[1]] - cen[b, 1]
            pz = ax[2][lo[2] : hi[2]] - cen[b, 2]
            lx = c * px[:, None] + s * py[None, :]
            ly = -s * px[:, None] + c * py[None, :]
            inside2 = (np.abs(lx) <= hx) & (np.abs(ly) <= hy)
            inside = inside2[:, :, None] & (np.abs(pz) <= hz)[None, None, :]
            view = code[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            view[inside] = codes[b]
            # Voxels the box overlaps (separating axes: x, y, the box's two axes, and z).
            vlo = np.maximum(np.floor((cen[b] - ext - lower) / vs).astype(int), 0)
            vhi = np.minimum(np.floor((cen[b] + ext - lower) / vs).astype(int) + 1, cells)
            if np.any(vhi <= vlo):
                continue
            qx = vc[0][vlo[0] : vhi[0]] - cen[b, 0]
            qy = vc[1][vlo[1] : vhi[1]] - cen[b, 1]
            qz = vc[2][vlo[2] : vhi[2]] - cen[b, 2]
            u = c * qx[:, None] + s * qy[None, :]
            v = -s * qx[:, None] + c * qy[None, :]
            reach_uv = hv[0] * abs(c) + hv[1] * abs(s), hv[0] * abs(s) + hv[1] * abs(c)
            over2 = (
                (np.abs(qx) < ext[0] + hv[0])[:, None]
                & (np.abs(qy) < ext[1] + hv[1])[None, :]
                & (np.abs(u) < hx + reach_uv[0])
                & (np.abs(v) < hy + reach_uv[1])
            )
            over = over2[:, :, None] & (np.abs(qz) < hz + hv[2])[None, None, :]
            tview = touch[vlo[0] : vhi[0], vlo[1] : vhi[1], vlo[2] : vhi[2]]
            tview[over] = codes[b]
    # Vote per voxel: the most frequent solid content of its sub-samples.
    views = [code[i::sub, j::sub, k::sub] for i in range(sub) for j in range(sub) for k in range(sub)]
    mx_, mn_ = np.maximum.reduce(views), np.minimum.reduce(views)
    out = mx_.reshape(-1).copy()
    mixed = np.flatnonzero(mx_.reshape(-1) != mn_.reshape(-1))
    if len(mixed):
        rows = np.stack([v.reshape(-1)[mixed] for v in views], 1)
        counts = np.stack([(rows == rows[:, j : j + 1]).sum(1) for j in range(len(views))], 1)
        counts[rows < 0] = -1
        out[mixed] = rows[np.arange(len(mixed)), counts.argmax(1)]
    out = out.reshape(nx, ny, nz)
    out = np.where(out >= 0, out, touch)
    return Occupancy(out, grid)


def _centres(grid: GridSpec) -> np.ndarray:
    return np.stack(
        np.meshgrid(
            *[grid.lower[i] + (np.arange(grid.cells[i]) + 0.5) * grid.voxel_size[i] for i in range(3)],
            indexing="ij",
        ),
        -1,
    )


def camera_visibility(
    frame: CameraFrame,
    cameras,
    grid: GridSpec,
    ego_to_map: np.ndarray | None = None,
    tolerance: float | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Voxels [X, Y, Z] bool (grid in the ego frame) seen by any camera of ``frame``.

    A voxel is seen if its centre projects into an image and is not behind the rendered surface at
    that pixel by more than ``tolerance`` (default: half a voxel diagonal); sky pixels see everything.
    ``ego_to_map`` is unused (kept for symmetry with the other ground-truth functions).
    """
    wp = init_warp()
    tol = 0.5 * float(np.linalg.norm(grid.voxel_size)) if tolerance is None else float(tolerance)
    n, h, w = frame.depth.shape
    e2c = np.stack([invert_pose(c.cam_to_ego) for c in cameras]).astype(np.float32)
    intr = np.array(
        [[c.intrinsics[0, 0], c.intrinsics[1, 1], c.intrinsics[0, 2], c.intrinsics[1, 2]] for c in cameras],
        np.float32,
    )
    centres = _centres(grid).reshape(-1, 3).astype(np.float32)
    out = wp.zeros(len(centres), dtype=wp.uint8, device=device)
    wp.launch(
        _kgt().camera_visibility,
        dim=len(centres),
        device=device,
        inputs=[
            wp.array(centres, dtype=wp.vec3, device=device),
            wp.array(e2c, dtype=wp.mat44, device=device),
            wp.array(intr, dtype=wp.vec4, device=device),
            wp.array(frame.depth.reshape(-1).astype(np.float32), dtype=float, device=device),
            len(cameras),
            w,
            h,
            tol,
        ],
        outputs=[out],
    )
    return out.numpy().astype(bool).reshape(grid.cells)


def lidar_visibility(
    sweeps,
    lidar: Lidar,
    grid: GridSpec,
    frame_to_sensors,
    device: str = "cpu",
) -> np.ndarray:
    """Voxels [X, Y, Z] bool observed by the LiDAR ``sweeps`` (Occ3D's LiDAR mask).

    Every ray is traversed through the grid from the sensor up to and including the voxel that
    holds its hit (rays without a hit: up to the maximum range); every voxel it crosses is observed.

    Args:
        sweeps: LidarSweep objects (their ``range_image``).
        lidar: the sensor that made them.
        grid: the voxel grid.
        frame_to_sensors: for each sweep, the [4, 4] transform from the grid's frame to its sensor.
    """
    wp = init_warp()
    out = wp.zeros(int(np.prod(grid.cells)), dtype=wp.uint8, device=device)
    dirs_s = lidar.directions().reshape(-1, 3)
    for sweep, f2s in zip(sweeps, frame_to_sensors, strict=True):
        s2f = invert_pose(np.asarray(f2s, np.float64))
        dirs = (dirs_s @ s2f[:3, :3].T).astype(np.float32)
        wp.launch(_kgt().lidar_traverse, dim=len(dirs), device=device, inputs=[
            wp.vec3(*s2f[:3, 3].astype(np.float32)), wp.array(dirs, dtype=wp.vec3, device=device),
            wp.array(sweep.range_image.reshape(-1).astype(np.float32), dtype=float, device=device),
            wp.vec3(*grid.lower), wp.vec3(*grid.voxel_size), *grid.cells, float(lidar.max_range)],
            outputs=[out])  # fmt: skip
    return out.numpy().astype(bool).reshape(grid.cells)


def _kgt():
    from . import _kernels_gt

    return _kernels_gt


def annotation_boxes(world: World, t: float) -> list[dict]:
    """Annotation boxes of all agents at time ``t`` in the map frame.

    Each dict: ``instance``, ``kind``, ``center`` [3] (geometric centre), ``size`` (length, width,
    height), ``yaw``, ``velocity`` [3] m/s, ``moving`` bool.
    """
    if not world.agents:
        return []
    pos, yaw, vel = world.agent_states(t)
    out = []
    for k, a in enumerate(world.agents):
        cen = pos[k].copy()
        cen[2] += a.size[2] / 2
        out.append(
            dict(
                instance=a.instance,
                kind=a.kind,
                center=cen,
                size=a.size,
                yaw=float(yaw[k]),
                velocity=vel[k],
                moving=bool(np.linalg.norm(vel[k]) > MOVING_SPEED),
                agent=k,
            )
        )
    return out


def camera_of(cameras, name: str) -> Camera:
    for c in cameras:
        if c.name == name:
            return c
    raise KeyError(name)
