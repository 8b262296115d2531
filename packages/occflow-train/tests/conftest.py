"""An analytic driving scene for the loss tests: a walled yard with a textured ground, walls and a
box that moves sideways, seen by two cameras on an ego car that drives forward.

Images, depths and optical-flow cues are ray traced analytically (no renderer under test), and the
exact SDF is available on any grid, so the losses can be checked against ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from occflow_data import Frame, Sample
from volrender import GridSpec

OPENCV_TO_EGO = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _pose(x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw: float = 0.0, pitch: float = 0.0
          ) -> torch.Tensor:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    rz = torch.tensor([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = torch.tensor([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])   # +pitch looks down
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = (rz @ ry).double()
    m[:3, 3] = torch.tensor([x, y, z], dtype=torch.float64)
    return m


def _texture(p: torch.Tensor, freqs: tuple[float, float, float], phase: float) -> torch.Tensor:
    """Smooth RGB texture of 3-D positions ``[..., 3]`` -> ``[..., 3]`` in [0.1, 0.9]."""
    chans = []
    for c in range(3):
        a = 2 * math.pi * (p[..., 0] / freqs[c] + p[..., 1] / freqs[(c + 1) % 3]
                           + p[..., 2] / freqs[(c + 2) % 3])
        b = 2 * math.pi * (p[..., 0] / freqs[(c + 2) % 3] - p[..., 1] / freqs[c])
        chans.append(0.5 + 0.22 * torch.sin(a + phase + c) + 0.18 * torch.sin(b + 2 * phase))
    return torch.stack(chans, dim=-1)


@dataclass
class AnalyticScene:
    """Ground z = 0, walls at |x|, |y| = ``wall``, a box moving by ``box_step`` per frame."""

    wall: float = 7.0
    box_centre: tuple[float, float, float] = (4.0, -1.5, 0.6)
    box_half: tuple[float, float, float] = (0.9, 0.7, 0.6)
    box_step: tuple[float, float] = (0.0, 0.8)        # metres per frame (world = ego frame of t=0)
    ego_step: float = 0.6                              # ego moves +x by this per frame
    size: tuple[int, int] = (48, 64)                   # (H, W)
    focal: float = 36.0
    pitch: float = 0.25                                # camera pitch, radians (+ looks down)

    # ------------------------------------------------------------- geometry
    def centre(self, k: float) -> torch.Tensor:
        c = torch.tensor(self.box_centre, dtype=torch.float64)
        return c + k * torch.tensor([*self.box_step, 0.0], dtype=torch.float64)

    def sdf(self, points: torch.Tensor, k: float = 0.0) -> torch.Tensor:
        """Exact-enough signed distance at world points ``[..., 3]`` at time ``k``."""
        p = points.double()
        room = torch.stack([p[..., 2], self.wall - p[..., 0], self.wall + p[..., 0], self.wall - p[..., 1],
                            self.wall + p[..., 1]], dim=-1).min(dim=-1).values
        q = (p - self.centre(k)).abs() - torch.tensor(self.box_half, dtype=torch.float64)
        box = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)
        return torch.minimum(room, box).to(points.dtype)

    def trace(self, origins: torch.Tensor, dirs: torch.Tensor, k: float = 0.0):
        """Ray trace ``[..., 3]`` world rays at time ``k``: distance, colour, on-box mask."""
        o, d = origins.double(), dirs.double()
        inf = torch.full(o.shape[:-1], float("inf"), dtype=torch.float64)
        t_ground = torch.where(d[..., 2] < -1e-9, -o[..., 2] / d[..., 2], inf)
        t_wall = inf.clone()
        for axis in (0, 1):
            for sign in (1.0, -1.0):
                t = (sign * self.wall - o[..., axis]) / d[..., axis]
                t_wall = torch.where((t > 0) & torch.isfinite(t), torch.minimum(t_wall, t), t_wall)
        c = self.centre(k)
        half = torch.tensor(self.box_half, dtype=torch.float64)
        with torch.no_grad():
            inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
            t1 = (c - half - o) * inv
            t2 = (c + half - o) * inv
            t_near = torch.minimum(t1, t2).max(dim=-1).values
            t_far = torch.maximum(t1, t2).min(dim=-1).values
        t_box = torch.where((t_far >= t_near) & (t_near > 0), t_near, inf)
        t_static = torch.minimum(t_ground, t_wall)
        on_box = t_box < t_static
        dist = torch.where(on_box, t_box, t_static)
        p = o + dist[..., None] * d
        colour = torch.where(on_box[..., None], _texture(p - c, (1.3, 1.9, 1.1), 1.0),
                             _texture(p, (2.9, 3.7, 1.7), 0.0))
        return dist, colour, on_box

    # ------------------------------------------------------------- cameras and frames
    def cameras(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Intrinsics ``[2, 3, 3]`` and cam_to_ego ``[2, 4, 4]`` (front, front-right)."""
        H, W = self.size
        K = torch.tensor([[self.focal, 0.0, (W - 1) / 2], [0.0, self.focal, (H - 1) / 2], [0.0, 0.0, 1.0]])
        c2e = []
        for yaw in (0.0, -0.9):
            m = _pose(0.5, 0.0, 1.5, yaw=yaw, pitch=self.pitch)
            m[:3, :3] = m[:3, :3] @ OPENCV_TO_EGO.double()
            c2e.append(m.float())
        return K.expand(2, 3, 3).clone(), torch.stack(c2e)

    def ego_pose(self, k: float) -> torch.Tensor:
        return _pose(self.ego_step * k)

    def pixel_rays_world(self, k: float, pixels: torch.Tensor):
        """World rays ``[2, ..., 3]`` of frame ``k`` through ``pixels [2, ..., 2]`` (u, v)."""
        K, c2e = self.cameras()
        c2w = self.ego_pose(k).float() @ c2e
        uv = pixels.float()
        cam = torch.stack([(uv[..., 0] - K[0, 0, 2]) / K[0, 0, 0], (uv[..., 1] - K[0, 1, 2]) / K[0, 1, 1],
                           torch.ones_like(uv[..., 0])], dim=-1)
        shape = cam.shape
        cam = cam.reshape(2, -1, 3)
        d = cam @ c2w[:, :3, :3].transpose(-1, -2)
        d = d / d.norm(dim=-1, keepdim=True)
        o = c2w[:, None, :3, 3].expand_as(d)
        return o.reshape(shape), d.reshape(shape)

    def all_pixels(self) -> torch.Tensor:
        H, W = self.size
        v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        return torch.stack([u, v], dim=-1).expand(2, H, W, 2)

    def project(self, k: float, points_world: torch.Tensor) -> torch.Tensor:
        """Pixels ``[2, ..., 2]`` of world points ``[2, ..., 3]`` in the cameras of frame ``k``."""
        K, c2e = self.cameras()
        w2c = torch.linalg.inv(self.ego_pose(k).float() @ c2e)
        shape = points_world.shape
        p = points_world.float().reshape(2, -1, 3)
        cam = p @ w2c[:, :3, :3].transpose(-1, -2) + w2c[:, None, :3, 3]
        uv = cam[..., :2] / cam[..., 2:3] * K[0, 0, 0] + K[0, :2, 2]
        return uv.reshape(*shape[:-1], 2)

    def frame(self, k: float, *, cues_to: tuple[float, ...] = (), lidar: bool = True) -> Frame:
        """Frame ``k`` with images traced at time ``k``; optional flow cues to frames ``cues_to``."""
        K, c2e = self.cameras()
        o, d = self.pixel_rays_world(k, self.all_pixels())
        dist, colour, on_box = self.trace(o, d, k)
        images = colour.float().permute(0, 3, 1, 2).contiguous().clamp(0, 1)
        cues = {}
        hit = (o.double() + dist[..., None] * d.double())
        for name, k2 in zip(("flow", "flow_aux"), cues_to, strict=False):
            moved = torch.where(on_box[..., None], hit + (self.centre(k2) - self.centre(k)), hit)
            flow = self.project(k2, moved) - self.all_pixels().float()
            cues[name] = flow.permute(0, 3, 1, 2).contiguous()
        if cues:
            cues["flow_valid"] = torch.ones(2, *self.size, dtype=torch.bool)
            cues["movable"] = on_box.clone()
        lidar_pts = None
        if lidar:
            lidar_pts = self.lidar(k)
        return Frame(images=images, intrinsics=K, cam_to_ego=c2e, ego_to_global=self.ego_pose(k),
                     timestamp=0.5 * k, lidar=lidar_pts, loss_images=images.clone(),
                     loss_intrinsics=K.clone(), cues=cues)

    def lidar(self, k: float, origin=(0.0, 0.0, 1.8), beams: int = 8, azimuths: int = 90) -> torch.Tensor:
        """Ego-frame LiDAR points of frame ``k`` from a spinning sensor at ``origin``."""
        pitch = torch.linspace(-0.45, 0.05, beams)
        yaw = torch.linspace(-math.pi, math.pi, azimuths + 1)[:-1]
        pp, yy = torch.meshgrid(pitch, yaw, indexing="ij")
        d = torch.stack([pp.cos() * yy.cos(), pp.cos() * yy.sin(), pp.sin()], dim=-1).reshape(-1, 3).double()
        o_ego = torch.tensor(origin, dtype=torch.float64)
        pose = self.ego_pose(k)
        o_world = pose[:3, :3] @ o_ego + pose[:3, 3]
        d_world = d @ pose[:3, :3].T
        dist, _, _ = self.trace(o_world.expand_as(d_world), d_world, k)
        pts = o_ego + dist[:, None] * d
        return pts.float()

    def sample(self, *, history: int = 0) -> Sample:
        cur = self.frame(0, cues_to=(1, -1))
        return Sample(current=cur, history=[self.frame(-(i + 1), lidar=False) for i in range(history)][::-1],
                      next=self.frame(1, lidar=False), aux_prev=self.frame(-1, lidar=False),
                      meta={"dataset": "analytic", "scene": "yard", "token": "t0", "index": 0})

    def flow_grid(self, grid: GridSpec, spread: float = 0.6) -> torch.Tensor:
        """``[1, 2, *vertex_shape]`` flow: the box's step within ``spread`` metres of the box."""
        pts = grid.points("vertex").double()
        q = (pts - self.centre(0)).abs() - torch.tensor(self.box_half, dtype=torch.float64)
        box_sdf = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)
        near = (box_sdf < spread).float()
        return torch.stack([near * self.box_step[0], near * self.box_step[1]])[None].float()

    def sdf_grid(self, grid: GridSpec, k: float = 0.0) -> torch.Tensor:
        """``[1, 1, *vertex_shape]`` exact SDF on a grid in the ego frame of frame 0 (= world)."""
        return self.sdf(grid.points("vertex"), k)[None, None].float()


#: The grid of the analytic scene (ego frame of frame 0): 0.5 m voxels over the yard.
SCENE_GRID = GridSpec((-8.0, -8.0, -1.0), (8.0, 8.0, 3.0), (32, 32, 8))


@pytest.fixture(scope="session")
def scene_cls() -> type[AnalyticScene]:
    return AnalyticScene


@pytest.fixture(scope="session")
def scene() -> AnalyticScene:
    return AnalyticScene()


@pytest.fixture(scope="session")
def scene_grid() -> GridSpec:
    return SCENE_GRID


@pytest.fixture(scope="session")
def scene_sample(scene) -> Sample:
    return scene.sample()


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """Run each test of this package on one intra-op thread (restored afterwards).

    The tests use small tensors, where thread start-up dominates; on a busy 2-core machine two
    threads made the loss tests up to 10x slower (measured).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
