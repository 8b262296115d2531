"""A small constructed scene with exact optical flow, depth and dynamic mask.

A pinhole camera 1.5 m above a ground plane looks at a wall 30 m away; a box-shaped object
(a fronto-parallel plate at 9 m) moves sideways while the camera drives forward and turns a
little. The depth, the rigid flow and the object's extra motion give the exact flow f of every
pixel of image t; image t is made from a random smooth texture (image t+1) by sampling it at
x + f(x), so f is the true flow from image t to image t+1 by construction.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pseudolabels import pixel_grid, rigid_flow, sample_bilinear


def smooth_texture(h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """A random RGB texture [3, H, W] in [0, 1] with detail at several scales (blobs of ~3-30 px)."""
    lum = torch.zeros(1, 1, h, w)
    for size, amp in ((32, 0.3), (12, 0.4), (5, 0.3)):
        noise = torch.rand(1, 1, h // size + 2, w // size + 2, generator=generator)
        lum += amp * F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)
    tint = 0.7 + 0.3 * F.interpolate(
        torch.rand(1, 3, 4, 4, generator=generator), size=(h, w), mode="bilinear"
    )
    img = (lum * tint)[0]
    img -= img.amin()
    return (img / img.amax()).clamp(0, 1)


def yaw_motion(forward_m: float, yaw_deg: float) -> torch.Tensor:
    """Camera t -> camera t+1 transform of a camera moving forward and turning (OpenCV axes)."""
    a = math.radians(yaw_deg)
    r = torch.tensor(
        [[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]], dtype=torch.float64
    )
    # camera t+1 sits at (0, 0, forward) in camera t, rotated by r: p1 = r^T (p - c)
    c = torch.tensor([0.0, 0.0, forward_m], dtype=torch.float64)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = r.T
    m[:3, 3] = -(r.T @ c)
    return m


def make_toy_scene(
    seed: int = 0,
    h: int = 120,
    w: int = 200,
    forward_m: float = 1.0,
    yaw_deg: float = 1.0,
    object_shift_m: float = 0.6,
) -> dict[str, torch.Tensor]:
    """Images, exact flow, depth, intrinsics, camera motion and dynamic mask of the toy scene."""
    g = torch.Generator().manual_seed(seed)
    f = 0.75 * w
    k = torch.tensor([[f, 0, w / 2 - 0.5], [0, f, h / 2 - 0.5], [0, 0, 1]], dtype=torch.float64)
    grid = pixel_grid(h, w)
    v = grid[1]
    below = v - k[1, 2].float()
    depth = torch.where(below > 0.5, (f * 1.5 / below.clamp_min(0.5)), torch.full_like(v, 30.0)).clamp(
        max=30.0
    )
    # the object: a plate at 9 m over a box of pixels, offset from the centre by the seed
    ox = int(w * (0.25 + 0.3 * torch.rand(1, generator=g).item()))
    oy = int(h * 0.35)
    obj = torch.zeros(h, w, dtype=torch.bool)
    obj[oy : oy + h // 4, ox : ox + w // 5] = True
    depth = torch.where(obj, torch.full_like(depth, 9.0), depth)
    m = yaw_motion(forward_m, yaw_deg)
    flow, _ = rigid_flow(depth, k, m)
    # the object's own motion: a sideways shift in camera t coordinates before the camera motion
    moved = m.clone()
    moved[:3, 3] += m[:3, :3] @ torch.tensor([object_shift_m, 0.0, 0.0], dtype=torch.float64)
    obj_flow, _ = rigid_flow(depth, k, moved)
    flow = torch.where(obj[None], obj_flow, flow)
    # image t+1: background texture, with the object's own texture where the object is at t+1
    margin = 64
    bg = smooth_texture(h + 2 * margin, w + 2 * margin, g)
    fg = smooth_texture(h + 2 * margin, w + 2 * margin, g)
    ys, xs = torch.nonzero(obj, as_tuple=True)
    corners = torch.stack([grid[:, ys, xs] + flow[:, ys, xs]], 0)[0].T.numpy()
    obj_t1 = np.zeros((h + 2 * margin, w + 2 * margin), np.uint8)
    cv2.fillConvexPoly(obj_t1, cv2.convexHull(np.round(corners + margin).astype(np.int32)), 1)
    obj_t1 = torch.from_numpy(obj_t1.astype(bool))
    canvas = torch.where(obj_t1[None], fg, bg)
    image_t1 = canvas[:, margin : margin + h, margin : margin + w].contiguous()
    target = grid + flow
    image_t = torch.where(
        obj[None], sample_bilinear(fg, target + margin), sample_bilinear(bg, target + margin)
    )
    image_t = image_t.clamp(0, 1)
    inside = (target[0] >= 0) & (target[0] <= w - 1) & (target[1] >= 0) & (target[1] <= h - 1)
    hidden = sample_bilinear(obj_t1[None].float(), target + margin)[0] > 0
    visible = inside & (obj | ~hidden)  # background hidden behind the object at t+1 is occluded
    lidar = torch.zeros(h, w)
    lidar[::3, ::2] = depth[::3, ::2]
    return {
        "image_t": image_t,
        "image_t1": image_t1,
        "flow": flow,
        "inside": inside,
        "visible": visible,
        "depth": depth,
        "lidar_depth": lidar,
        "intrinsics": k,
        "cam_t_to_t1": m,
        "dynamic": obj,
    }


@pytest.fixture(scope="session")
def toy_scene() -> dict[str, torch.Tensor]:
    return make_toy_scene(0)


@pytest.fixture(scope="session")
def toy_scene_factory():
    return make_toy_scene


def write_kitti_odometry_toy(root, frames: int = 4, h: int = 96, w: int = 160, seed: int = 0):
    """A tiny KITTI-odometry layout (sequence "00", image_2 only): a textured wall 10 m ahead,
    a camera driving 0.3 m forward per frame, LiDAR points on the wall. Returns the root."""
    from pathlib import Path

    root = Path(root)
    seq = root / "sequences" / "00"
    (seq / "image_2").mkdir(parents=True, exist_ok=True)
    (seq / "velodyne").mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    f = 0.8 * w
    k = torch.tensor([[f, 0, w / 2 - 0.5], [0, f, h / 2 - 0.5], [0, 0, 1]], dtype=torch.float64)
    margin = 48
    canvas = smooth_texture(h + 2 * margin, w + 2 * margin, g)
    depth0 = torch.full((h, w), 10.0)
    grid = pixel_grid(h, w)
    for i in range(frames):
        m = yaw_motion(0.3 * i, 0.0)  # camera 0 -> camera i
        # frame i shows the wall texture as seen after driving 0.3 i m: sample the canvas (frame-0 view)
        back = torch.linalg.inv(m)
        flow_i_to_0, _ = rigid_flow(torch.full((h, w), 10.0 - 0.3 * i), k, back)
        img = sample_bilinear(canvas, grid + flow_i_to_0 + margin).clamp(0, 1)
        rgb = (img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        cv2.imwrite(str(seq / "image_2" / f"{i:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        ys, zs = torch.meshgrid(torch.linspace(-5, 5, 80), torch.linspace(-2, 1.5, 16), indexing="ij")
        pts = torch.stack([torch.full_like(ys, 10.0 - 0.3 * i), ys, zs, torch.zeros_like(ys)], -1)
        pts.reshape(-1, 4).numpy().astype(np.float32).tofile(seq / "velodyne" / f"{i:06d}.bin")
    del depth0
    p = torch.cat([k, torch.zeros(3, 1, dtype=torch.float64)], 1).flatten().tolist()
    tr = [0, -1, 0, 0, 0, 0, -1, 0, 1, 0, 0, 0]
    lines = [f"P{j}: " + " ".join(f"{v:.6e}" for v in p) for j in range(4)] + [
        "Tr: " + " ".join(map(str, tr))
    ]
    (seq / "calib.txt").write_text("\n".join(lines) + "\n")
    (seq / "times.txt").write_text("".join(f"{0.1 * i:.6e}\n" for i in range(frames)))
    poses = [f"1 0 0 0 0 1 0 0 0 0 1 {0.3 * i:.6f}" for i in range(frames)]
    (seq / "poses.txt").write_text("\n".join(poses) + "\n")
    return root


@pytest.fixture(scope="session")
def kitti_toy(tmp_path_factory):
    return write_kitti_odometry_toy(tmp_path_factory.mktemp("kitti_toy"))


@pytest.fixture(scope="session")
def kitti_toy_factory():
    return write_kitti_odometry_toy


@pytest.fixture(scope="session")
def camera_motion_fn():
    return yaw_motion
