"""LiDAR depth maps, rigid flow, disparity, box masks."""

from __future__ import annotations

import math

import pytest
import torch

import pseudolabels as pl

K = torch.tensor([[100.0, 0, 40.0], [0, 100.0, 30.0], [0, 0, 1]], dtype=torch.float64)
# camera looking along ego +x (x forward, y left, z up): camera x = -ego y, y = -ego z, z = ego x
CAM_TO_EGO = torch.tensor([[0, 0, 1, 1.0], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]], dtype=torch.float64)


def _ego_point(u, v, z):
    """Ego-frame point that projects to pixel (u, v) at camera depth z."""
    cam = torch.linalg.inv(K) @ torch.tensor([u, v, 1.0], dtype=torch.float64) * z
    return (CAM_TO_EGO[:3, :3] @ cam + CAM_TO_EGO[:3, 3]).float()


def test_lidar_depth_nearest_return_per_pixel():
    pts = torch.stack(
        [
            _ego_point(10, 5, 20.0),
            _ego_point(10.3, 4.8, 12.0),  # same pixel: nearest wins
            _ego_point(50, 40, 7.0),
            _ego_point(90, 40, 7.0),  # right of the image (W = 80)
            _ego_point(10, 5, 0.05),  # nearer than min_depth
        ]
    )
    behind = torch.tensor([[-5.0, 0.0, 1.5]])  # behind the camera
    depth = pl.lidar_depth_map(torch.cat([pts, behind]), K, CAM_TO_EGO, (60, 80))
    assert depth.shape == (60, 80) and depth.dtype == torch.float32
    assert depth[5, 10] == pytest.approx(12.0, rel=1e-5)
    assert depth[40, 50] == pytest.approx(7.0, rel=1e-5)
    assert (depth > 0).sum() == 2
    far = pl.lidar_depth_map(pts, K, CAM_TO_EGO, (60, 80), max_depth=10.0)
    assert far[5, 10] == 0 and far[40, 50] > 0
    with pytest.raises(ValueError, match=r"points: expected shape \[P, 3\]"):
        pl.lidar_depth_map(pts[:, :2], K, CAM_TO_EGO, (60, 80))
    with pytest.raises(ValueError, match="image_hw"):
        pl.lidar_depth_map(pts, K, CAM_TO_EGO, (60,))


def test_rigid_flow_sideways_translation_of_a_plane():
    depth = torch.full((60, 80), 10.0)
    m = torch.eye(4, dtype=torch.float64)
    m[0, 3] = -0.5  # the camera moves 0.5 m right: points move left in the camera
    flow, valid = pl.rigid_flow(depth, K, m)
    assert valid.all()
    assert torch.allclose(flow[0], torch.full((60, 80), -100.0 * 0.5 / 10.0), atol=1e-4)
    assert torch.allclose(flow[1], torch.zeros(60, 80), atol=1e-4)
    depth[0, 0] = 0
    flow, valid = pl.rigid_flow(depth, K, torch.eye(4, dtype=torch.float64))
    assert not valid[0, 0] and valid.sum() == 60 * 80 - 1 and flow.abs().max() < 1e-4


def test_camera_motion_composes_poses():
    a = math.radians(10)
    ego_t = torch.eye(4, dtype=torch.float64)
    ego_t1 = torch.eye(4, dtype=torch.float64)
    ego_t1[:3, :3] = torch.tensor(
        [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=torch.float64
    )
    ego_t1[:3, 3] = torch.tensor([2.0, 0.3, 0.0], dtype=torch.float64)
    m = pl.camera_motion(CAM_TO_EGO, ego_t, CAM_TO_EGO, ego_t1)
    p_cam_t = torch.tensor([1.0, -0.5, 8.0, 1.0], dtype=torch.float64)
    world = ego_t @ CAM_TO_EGO @ p_cam_t
    expected = torch.linalg.inv(ego_t1 @ CAM_TO_EGO) @ world
    assert torch.allclose(m @ p_cam_t, expected)
    assert torch.allclose(
        pl.camera_motion(CAM_TO_EGO, ego_t, CAM_TO_EGO, ego_t), torch.eye(4, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="ego_to_global_t1"):
        pl.camera_motion(CAM_TO_EGO, ego_t, CAM_TO_EGO, ego_t1[:3])


def test_densify_depth_nearest_and_reach():
    d = torch.zeros(20, 30)
    d[5, 5] = 3.0
    d[5, 25] = 9.0
    out = pl.densify_depth(d, max_distance=6.0)
    assert out[5, 8] == 3.0 and out[5, 22] == 9.0 and out[9, 5] == 3.0
    assert out[5, 15] == 0  # 10 px from both
    assert out[d > 0].tolist() == [3.0, 9.0]
    assert pl.densify_depth(torch.zeros(4, 4)).abs().sum() == 0


def test_depth_to_disparity():
    depth = torch.tensor([[0.0, 10.0], [20.0, 5.0]])
    disp = pl.depth_to_disparity(depth, fx=720.0)
    assert disp[0, 0] == 0
    assert disp[0, 1] == pytest.approx(720.0 * 0.5327 / 10.0)
    assert disp[1, 1] == pytest.approx(2 * disp[0, 1].item())
    assert pl.depth_to_disparity(depth, fx=720.0, baseline=0.54)[1, 0] == pytest.approx(720 * 0.54 / 20)
    with pytest.raises(ValueError, match="fx"):
        pl.depth_to_disparity(depth, fx=0.0)
    with pytest.raises(ValueError, match="depth"):
        pl.depth_to_disparity(-depth, fx=1.0)


def test_project_boxes_mask():
    # a 2 m wide, 1.6 m tall, 4 m deep box 10 m ahead, centre 1.5 m up in the ego frame (camera height)
    corners = pl.box_corners(
        torch.tensor([[12.0, 0.0, 1.5]]), torch.tensor([[4.0, 2.0, 1.6]]), torch.eye(3)[None]
    )
    mask = pl.project_boxes_mask(corners, K, CAM_TO_EGO, (60, 80))
    ys, xs = torch.nonzero(mask, as_tuple=True)
    # nearest face at 10 m (ego x 10, camera z 9): half-width 1 m -> 100 * 1 / 9 = 11.1 px around cx = 40
    assert xs.min().item() == pytest.approx(40 - 11.1, abs=1.01) and xs.max().item() == pytest.approx(
        40 + 11.1, abs=1.01
    )
    assert ys.min().item() == pytest.approx(30 - 8.9, abs=1.01) and ys.max().item() == pytest.approx(
        30 + 8.9, abs=1.01
    )
    behind = pl.box_corners(
        torch.tensor([[-10.0, 0.0, 1.5]]), torch.tensor([[4.0, 2.0, 1.6]]), torch.eye(3)[None]
    )
    assert not pl.project_boxes_mask(behind, K, CAM_TO_EGO, (60, 80)).any()
    # a box straddling the camera's near plane: clipped, covers the image centre
    around = pl.box_corners(
        torch.tensor([[1.0, 0.0, 1.5]]), torch.tensor([[4.0, 2.0, 1.6]]), torch.eye(3)[None]
    )
    m = pl.project_boxes_mask(around, K, CAM_TO_EGO, (60, 80))
    assert m[30, 40] and m.float().mean() > 0.9
    assert not pl.project_boxes_mask(torch.zeros(0, 8, 3), K, CAM_TO_EGO, (60, 80)).any()


def test_densify_columns_is_exact_on_a_plane():
    """Ground-plane depth sampled on LiDAR-like rows: inverse-depth interpolation along columns
    reproduces it; a jump to another surface is not bridged."""
    h, w = 60, 40
    v = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    plane = 100.0 * 1.5 / (v + 40.0)  # a ground plane whose horizon lies 40 rows above the image
    sparse = torch.zeros(h, w)
    sparse[::7] = plane[::7]
    cols = pl.densify_depth(sparse, 30.0, mode="columns")
    near = pl.densify_depth(sparse, 30.0, mode="nearest")
    inside = slice(0, 57)  # rows between the first and the last sampled row
    assert torch.allclose(cols[inside], plane[inside], rtol=1e-4)
    assert (near[inside] - plane[inside]).abs().max() > 0.1
    wall = sparse.clone()
    wall[28:] = torch.where(wall[28:] > 0, torch.full_like(wall[28:], 50.0), wall[28:])
    out = pl.densify_depth(wall, 30.0, mode="columns")
    assert out[30, 5] in (wall[28, 5], wall[35, 5])  # rows 28..35 straddle the jump: nearest, no blend
    with pytest.raises(ValueError, match="mode"):
        pl.densify_depth(sparse, mode="linear")
