"""The RayIoU ray pattern and origins."""

import math

import pytest
import torch

from occflow_metrics import NUSCENES_LIDAR_OFFSET, lidar_ray_directions, ray_origins


def test_ray_pattern_is_39_pitches_by_360_azimuths():
    d = lidar_ray_directions()
    assert d.shape == (14040, 3) and d.dtype == torch.float32
    torch.testing.assert_close(d.norm(dim=1), torch.ones(14040), atol=1e-6, rtol=0)
    pitch = torch.asin(d[::360, 2].double())
    assert pitch.shape == (39,)
    expected_first = [-(math.pi / 2 - math.atan(k + 1)) for k in range(10)]
    torch.testing.assert_close(pitch[:10], torch.tensor(expected_first, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    assert pitch[-1] >= 0.21 > pitch[-2]
    step = pitch[10:] - pitch[9:-1]
    torch.testing.assert_close(step, step[:1].expand_as(step), atol=1e-6, rtol=0)
    azimuth = torch.atan2(d[:360, 1].double(), d[:360, 0].double())
    torch.testing.assert_close(torch.rad2deg(azimuth[:180]), torch.arange(180, dtype=torch.float64),
                               atol=1e-4, rtol=0)


def _poses_along_x(n, spacing, yaw=0.0):
    poses = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c, s = math.cos(yaw), math.sin(yaw)
    poses[:, :2, :2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    poses[:, 0, 3] = torch.arange(n, dtype=torch.float64) * spacing * c
    poses[:, 1, 3] = torch.arange(n, dtype=torch.float64) * spacing * s
    poses[:, 2, 3] = 7.0
    return poses


def test_scene_origins_filter_and_subsample_like_sparseocc():
    poses = _poses_along_x(40, 3.0, yaw=0.7)
    o = ray_origins(poses, 5)
    # Keyframes 0..17 lie within |x| < 39 m of keyframe 5 (x = 3 (i - 5) + 0.986): 18 kept, 8 chosen by
    # round(linspace(0, 17, 8)) = [0, 2, 5, 7, 10, 12, 15, 17].
    chosen = torch.tensor([0, 2, 5, 7, 10, 12, 15, 17], dtype=torch.float64)
    torch.testing.assert_close(o[:, 0], 3 * (chosen - 5) + NUSCENES_LIDAR_OFFSET[0])
    torch.testing.assert_close(o[:, 1:], torch.tensor(NUSCENES_LIDAR_OFFSET[1:], dtype=torch.float64)
                               .expand(8, 2), atol=1e-9, rtol=0)


def test_window_origins_and_reference_origin():
    poses = _poses_along_x(10, 2.0)
    o = ray_origins(poses, 1, mode="window")
    assert o.shape == (4, 3)                         # keyframes 0..3 (ref - 3 clipped at 0)
    torch.testing.assert_close(o[:, 0], torch.tensor([-2.0, 0.0, 2.0, 4.0], dtype=torch.float64) + 0.985793)
    o = ray_origins(poses, 5, mode="window", sensor_offset=(0.0, 0.0, 1.0))
    assert o.shape == (6, 3)
    torch.testing.assert_close(o[:, 0], torch.arange(-3.0, 3.0, dtype=torch.float64) * 2)
    assert ray_origins(poses, 5, max_origins=3).shape == (3, 3)


def test_origin_bad_inputs():
    with pytest.raises(ValueError, match="ego_to_global must have shape"):
        ray_origins(torch.eye(4), 0)
    with pytest.raises(ValueError, match="ref_index must be"):
        ray_origins(torch.eye(4)[None], 3)
    with pytest.raises(ValueError, match="mode must be"):
        ray_origins(torch.eye(4)[None], 0, mode="all")
