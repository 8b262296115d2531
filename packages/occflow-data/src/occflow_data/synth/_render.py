"""Rendering the world with Warp meshes: camera images with depth, semantics and instance ids, and
LiDAR sweeps. One static mesh per world (ground + static boxes, built once and kept alive) and one
merged mesh of all agents per time step (MEASURED.md: cheapest of the options tried)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import _classes as C
from ._geometry import invert_pose
from ._mesh import agent_local_mesh, static_mesh
from ._rigs import Camera, Lidar
from ._world import World


@functools.cache
def init_warp():
    """Import and initialise Warp once (log level WARNING; the kernel cache stays Warp's default)."""
    import warp as wp

    wp.config.log_level = wp.LOG_WARNING
    wp.init()
    return wp


def check_device(device: str) -> str:
    """Validate a device string (``cpu``, ``cuda`` or ``cuda:N``)."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, got {type(device).__name__}")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    return device


@dataclass
class CameraFrame:
    """What the cameras saw at one instant.

    Attributes:
        rgb: [N, H, W, 3] uint8 images.
        depth: [N, H, W] float32 z-depth along the optical axis, metres (0 = sky).
        semantic: [N, H, W] uint8 Occ3D class (17 = sky / nothing).
        instance: [N, H, W] int32 instance id (0 = static scenery or sky).
        agent: [N, H, W] int32 index into ``world.agents`` (-1 static, -2 sky).
        points: [N, H, W, 3] float32 hit points in the map frame.
        time: seconds.
        cam_to_map: [N, 4, 4] float64 camera poses at ``time``.
    """

    rgb: np.ndarray
    depth: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    agent: np.ndarray
    points: np.ndarray
    time: float
    cam_to_map: np.ndarray


@dataclass
class LidarSweep:
    """One LiDAR revolution, cast from the pose at ``time`` (ego motion during the sweep is ignored).

    Attributes:
        points: [P, 3] float32 hit points in the sensor frame, metres (rays without a hit dropped).
        intensity: [P] float32 in [0, 255].
        ring: [P] int32 beam index.
        semantic: [P] uint8 Occ3D class; instance: [P] int32; agent: [P] int32; fine: [P] uint8.
        range_image: [B, A] float32 range per beam and azimuth bin, metres (0 = no hit).
        time: seconds; sensor_to_map: [4, 4] float64.
        normal: [P, 3] float32 unit surface normals at the hits (sensor frame, facing the sensor).
    """

    points: np.ndarray
    intensity: np.ndarray
    ring: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    agent: np.ndarray
    fine: np.ndarray
    range_image: np.ndarray
    time: float
    sensor_to_map: np.ndarray
    normal: np.ndarray


class Renderer:
    """Renders a ``World`` with Warp on ``device`` (``"cpu"`` or ``"cuda"``); same code on both.

    Args:
        world: the world to render.
        device: Warp device string.
        max_distance: camera rays stop here, metres.
        threads: CPU launches run in parallel (default: the number of CPU cores, at most 8).
    """

    def __init__(
        self, world: World, device: str = "cpu", max_distance: float = 250.0, threads: int | None = None
    ) -> None:
        if not isinstance(world, World):
            raise TypeError(f"world must be a World, got {type(world).__name__}")
        self.wp = wp = init_warp()
        self.world = world
        self.device = check_device(device)
        self.max_distance = float(max_distance)
        import os

        self.threads = int(threads) if threads is not None else max(1, min(os.cpu_count() or 1, 8))
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        verts, tris, fine = static_mesh(world)
        self._static_points = wp.array(verts.astype(np.float32), dtype=wp.vec3, device=device)
        self._static_idx = wp.array(tris.reshape(-1).astype(np.int32), dtype=wp.int32, device=device)
        self.static_mesh = wp.Mesh(points=self._static_points, indices=self._static_idx)
        self._static_fine = wp.array(fine.astype(np.int32), dtype=wp.int32, device=device)
        lv, lt, lf, la, lva = agent_local_mesh(world)
        self._local = (lv, lt, lf, la, lva)
        self._dyn_fine = wp.array(np.append(lf, 0).astype(np.int32), dtype=wp.int32, device=device)
        self._dyn_agent = wp.array(np.append(la, 0).astype(np.int32), dtype=wp.int32, device=device)
        occ = [C.FINE_TO_OCC3D[a.fine] for a in world.agents] or [0]
        self._agent_occ = wp.array(np.array(occ, np.int32), dtype=wp.int32, device=device)
        inst = [a.instance for a in world.agents] or [0]
        self._agent_inst = wp.array(np.array(inst, np.int32), dtype=wp.int32, device=device)
        self._fine_occ = wp.array(C.FINE_TO_OCC3D.astype(np.int32), dtype=wp.int32, device=device)
        self._albedo = wp.array(C.FINE_ALBEDO, dtype=wp.vec3, device=device)
        cross = (
            world.cross_streets[:8].astype(np.float32)
            if len(world.cross_streets)
            else np.zeros(1, np.float32)
        )
        self._cross = wp.array(cross, dtype=float, device=device)
        self._n_cross = min(len(world.cross_streets), 8)
        self._sun = wp.vec3(*world.sun.astype(np.float32))
        self._dyn_time: float | None = None
        self._dyn = None

    # ------------------------------------------------------------------ moving objects
    def _dynamic(self, t: float):
        """The merged agent mesh at time ``t`` (cached for the last time asked)."""
        wp = self.wp
        if self._dyn_time == t and self._dyn is not None:
            return self._dyn
        lv, lt, _, _, lva = self._local
        poses = self.world.agent_poses(t) if self.world.agents else np.zeros((0, 4, 4))
        if len(lt):
            rot, trans = poses[lva, :3, :3], poses[lva, :3, 3]
            verts = np.einsum("vij,vj->vi", rot, lv) + trans
            pts = wp.array(verts.astype(np.float32), dtype=wp.vec3, device=self.device)
            idx = wp.array(lt.reshape(-1).astype(np.int32), dtype=wp.int32, device=self.device)
            mesh = wp.Mesh(points=pts, indices=idx)
            inv = invert_pose(poses).astype(np.float32)
        else:
            pts = idx = mesh = None
            inv = np.eye(4, dtype=np.float32)[None]
        m2a = wp.array(inv, dtype=wp.mat44, device=self.device)
        self._dyn = (mesh, pts, idx, m2a)
        self._dyn_time = t
        return self._dyn

    # ------------------------------------------------------------------ cameras
    def render_cameras(
        self, t: float, cameras: tuple[Camera, ...] | list[Camera], ego_to_map: np.ndarray | None = None
    ) -> CameraFrame:
        """Render ``cameras`` (all the same size) mounted on the ego at time ``t`` (seconds)."""
        wp = self.wp
        if not cameras:
            raise ValueError("cameras must not be empty")
        w, h = cameras[0].width, cameras[0].height
        if any(c.width != w or c.height != h for c in cameras):
            raise ValueError("cameras must all have the same image size")
        ego = self.world.ego_pose(t) if ego_to_map is None else ego_to_map
        poses = np.stack([ego @ c.cam_to_ego for c in cameras])
        kinv = np.stack([np.linalg.inv(c.intrinsics) for c in cameras]).astype(np.float32)
        mesh, _, _, m2a = self._dynamic(t)
        n = len(cameras) * w * h
        dev = self.device
        out = dict(
            rgb=wp.empty(n, dtype=wp.vec3, device=dev),
            depth=wp.empty(n, dtype=float, device=dev),
            sem=wp.empty(n, dtype=wp.int32, device=dev),
            inst=wp.empty(n, dtype=wp.int32, device=dev),
            agent=wp.empty(n, dtype=wp.int32, device=dev),
            point=wp.empty(n, dtype=wp.vec3, device=dev),
        )
        inputs = [
            self.static_mesh.id, mesh.id if mesh is not None else wp.uint64(0), int(mesh is not None),
            self._static_fine, self._dyn_fine, self._dyn_agent, self._agent_occ, self._agent_inst, m2a,
            self._fine_occ, self._albedo,
            wp.array(kinv, dtype=wp.mat33, device=dev),
            wp.array(poses[:, :3, :3].astype(np.float32), dtype=wp.mat33, device=dev),
            wp.array(poses[:, :3, 3].astype(np.float32), dtype=wp.vec3, device=dev),
            wp.array(np.array([1 / c.intrinsics[0, 0] for c in cameras], np.float32), dtype=float,
                     device=dev),
            w, h, self.max_distance, self._cross, self._n_cross, self._sun, self.world.texture_seed,
        ]  # fmt: skip
        outputs = [out["rgb"], out["depth"], out["sem"], out["inst"], out["agent"], out["point"]]
        self._launch_split(_kernels().render_cameras, n, inputs, outputs)
        shape = (len(cameras), h, w)
        rgb = np.clip(out["rgb"].numpy().reshape(shape + (3,)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return CameraFrame(
            rgb,
            out["depth"].numpy().reshape(shape),
            out["sem"].numpy().reshape(shape).astype(np.uint8),
            out["inst"].numpy().reshape(shape),
            out["agent"].numpy().reshape(shape),
            out["point"].numpy().reshape(shape + (3,)),
            float(t),
            poses,
        )

    def _launch_split(self, kernel, n: int, inputs: list, outputs: list) -> None:
        """Launch ``kernel`` over ``n`` items; on the CPU split into ``threads`` launches run from Python
        threads (Warp's CPU kernels are single-threaded and release the GIL; every item is written by
        exactly one launch, so the result does not depend on the split)."""
        wp = self.wp
        parts = self.threads if self.device == "cpu" else 1
        bounds = np.linspace(0, n, parts + 1).astype(int)
        if parts == 1:
            wp.launch(kernel, dim=n, device=self.device, inputs=[*inputs, 0], outputs=outputs)
            return
        from concurrent.futures import ThreadPoolExecutor

        def run(i: int) -> None:
            wp.launch(
                kernel,
                dim=int(bounds[i + 1] - bounds[i]),
                device=self.device,
                inputs=[*inputs, int(bounds[i])],
                outputs=outputs,
            )

        with ThreadPoolExecutor(parts) as pool:
            list(pool.map(run, range(parts)))

    # ------------------------------------------------------------------ lidar
    def render_lidar(self, t: float, lidar: Lidar, ego_to_map: np.ndarray | None = None) -> LidarSweep:
        """Cast one revolution of ``lidar`` at time ``t``; every ray uses the pose at ``t``."""
        wp = self.wp
        ego = self.world.ego_pose(t) if ego_to_map is None else ego_to_map
        pose = ego @ lidar.sensor_to_ego
        dirs_s = lidar.directions()
        b, a = dirs_s.shape[:2]
        dirs = (dirs_s.reshape(-1, 3) @ pose[:3, :3].T).astype(np.float32)
        mesh, _, _, _ = self._dynamic(t)
        dev = self.device
        n = b * a
        outs = [wp.empty(n, dtype=float, device=dev)] + [
            wp.empty(n, dtype=wp.int32, device=dev) for _ in range(4)
        ]
        outs.append(wp.empty(n, dtype=float, device=dev))
        outs.append(wp.empty(n, dtype=wp.vec3, device=dev))
        wp.launch(
            _kernels().render_lidar,
            dim=n,
            device=dev,
            inputs=[
                self.static_mesh.id,
                mesh.id if mesh is not None else wp.uint64(0),
                int(mesh is not None),
                self._static_fine,
                self._dyn_fine,
                self._dyn_agent,
                self._agent_occ,
                self._agent_inst,
                self._fine_occ,
                self._albedo,
                wp.vec3(*pose[:3, 3].astype(np.float32)),
                wp.array(dirs, dtype=wp.vec3, device=dev),
                float(lidar.max_range),
            ],
            outputs=outs,
        )
        rng_, sem, inst, agent, fine, inten, normal = (o.numpy() for o in outs)
        hit = rng_ > 0
        ring = np.repeat(np.arange(b, dtype=np.int32), a)
        pts = (dirs_s.reshape(-1, 3)[hit] * rng_[hit, None]).astype(np.float32)
        normal = (normal[hit] @ pose[:3, :3]).astype(np.float32)  # map -> sensor frame
        return LidarSweep(
            pts,
            inten[hit].astype(np.float32),
            ring[hit],
            sem[hit].astype(np.uint8),
            inst[hit],
            agent[hit],
            fine[hit].astype(np.uint8),
            rng_.reshape(b, a).astype(np.float32),
            float(t),
            pose,
            normal,
        )


def _kernels():
    from . import _kernels as k

    return k
