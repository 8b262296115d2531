import math

import pytest
import torch

from occflow_train import (
    RenderConfig,
    gather_pixels,
    pixel_lattice,
    pixel_rays,
    project_points,
    sample_camera_rays,
    sample_lidar_rays,
    sample_mask_pixels,
)


def _yaw(angle: float, t=(0.0, 0.0, 0.0)) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    m = torch.eye(4)
    m[:3, :3] = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    m[:3, 3] = torch.tensor(t)
    return m


def _cameras(b=2, n=3):
    """Forward-looking OpenCV cameras at yaws 0, 120, 240 degrees, 1.5 m up."""
    opencv_to_ego = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    cams = []
    for i in range(n):
        m = _yaw(2 * math.pi * i / n, (0.5, 0.0, 1.5))
        m[:3, :3] = m[:3, :3] @ opencv_to_ego
        cams.append(m)
    c2e = torch.stack(cams)[None].expand(b, n, 4, 4).clone()
    K = torch.tensor([[50.0, 0.0, 39.5], [0.0, 50.0, 29.5], [0.0, 0.0, 1.0]]).expand(b, n, 3, 3).clone()
    return K, c2e


def test_lattice_regular_inside_and_random():
    g = torch.Generator().manual_seed(0)
    pix = pixel_lattice(4, 3, (60, 80), (6, 8), generator=g)
    assert pix.shape == (4, 3, 6, 8, 2) and pix.dtype == torch.long
    assert (pix[..., 0] >= 0).all() and (pix[..., 0] < 80).all()
    assert (pix[..., 1] >= 0).all() and (pix[..., 1] < 60).all()
    dx = pix[:, :, :, 1:, 0] - pix[:, :, :, :-1, 0]
    dy = pix[:, :, 1:, :, 1] - pix[:, :, :-1, :, 1]
    stride = dx[:, :, 0, 0]
    assert (dx == stride[:, :, None, None]).all() and (dy == stride[:, :, None, None]).all()
    assert len(set(stride.flatten().tolist())) > 1  # strides are drawn
    assert len(set(pix[:, :, 0, 0, 0].flatten().tolist())) > 1  # offsets too
    again = pixel_lattice(4, 3, (60, 80), (6, 8), generator=torch.Generator().manual_seed(0))
    assert torch.equal(pix, again)
    fixed = pixel_lattice(1, 1, (60, 80), (6, 8), random=False)
    assert fixed[0, 0, 0, 1, 0] - fixed[0, 0, 0, 0, 0] == min(79 // 7, 59 // 5)
    with pytest.raises(ValueError, match="ray_shape"):
        pixel_lattice(1, 1, (60, 80), (1, 8))


def test_pixel_rays_round_trip_through_projection():
    K, c2e = _cameras()
    rays = sample_camera_rays(K, c2e, (60, 80), (5, 7), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(rays.directions.norm(dim=-1), torch.ones(()), atol=1e-6)
    pts = rays.origins + 7.0 * rays.directions
    uv, front = project_points(pts, K, torch.linalg.inv(c2e))
    assert front.all()
    assert torch.allclose(uv, rays.pixels.float(), atol=1e-3)
    # the principal point looks along the camera's optical axis (its z column)
    o, d = pixel_rays(torch.tensor([39.5, 29.5]).expand(2, 3, 2), K, c2e)
    assert torch.allclose(d, c2e[..., :3, 2], atol=1e-6) and torch.allclose(o, c2e[..., :3, 3])
    flat_o, flat_d = rays.flat()
    assert flat_o.shape == (2, 3 * 5 * 7, 3) and torch.equal(flat_d[:, :7], rays.directions[:, 0, 0])


def test_project_points_behind_camera_flagged():
    K, c2e = _cameras(1, 1)
    behind = c2e[..., :3, 3] - 2.0 * c2e[..., :3, 2]
    _, front = project_points(behind[:, :, None], K, torch.linalg.inv(c2e))
    assert not front.any()


def test_gather_pixels():
    g = torch.Generator().manual_seed(2)
    img = torch.rand(2, 3, 4, 10, 12, generator=g)
    pix = pixel_lattice(2, 3, (10, 12), (3, 4), generator=g)
    out = gather_pixels(img, pix)
    assert out.shape == (2, 3, 3, 4, 4)
    b, n, i, j = 1, 2, 2, 3
    col, row = pix[b, n, i, j].tolist()
    assert torch.equal(out[b, n, i, j], img[b, n, :, row, col])
    assert torch.equal(gather_pixels(img[:, :, 0], pix), out[..., 0])
    with pytest.raises(ValueError, match="pixels"):
        gather_pixels(img, pix.float())


def test_lidar_rays_reach_their_points():
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(2, 50, 3, generator=g) * 10
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[1] = False
    origin = torch.tensor([[0.0, 0.0, 1.8], [0.0, 0.0, 1.8]])
    rays = sample_lidar_rays(pts, 64, mask=mask, origin=origin, generator=g)
    assert rays.valid[0].all() and not rays.valid[1].any()
    hit = rays.origins + rays.ranges[..., None] * rays.directions
    d = (hit[0][:, None] - pts[0][None]).norm(dim=-1)
    assert d.min(dim=1).values.max() < 1e-4
    assert torch.allclose(rays.directions.norm(dim=-1), torch.ones(()), atol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        sample_lidar_rays(pts, 4, mask=mask.float())


def test_lidar_range_power_weights_draws_by_range():
    # One point at 2 m, one at 20 m (and one masked-out point at 50 m that is never drawn).
    pts = torch.tensor([[[2.0, 0.0, 0.0], [20.0, 0.0, 0.0], [50.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    far_share = {}
    for power in (0.0, 1.0, 2.0):
        rays = sample_lidar_rays(pts, 20000, mask=mask, range_power=power,
                                 generator=torch.Generator().manual_seed(0))
        assert rays.valid.all() and rays.ranges.max() == 20.0
        far_share[power] = float((rays.ranges == 20.0).float().mean())
    assert far_share[0.0] == pytest.approx(0.5, abs=0.02)              # uniform
    assert far_share[1.0] == pytest.approx(20 / 22, abs=0.02)          # proportional to the range
    assert far_share[2.0] == pytest.approx(400 / 404, abs=0.01)
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ValueError, match="range_power"):
            sample_lidar_rays(pts, 4, range_power=bad)
    with pytest.raises(ValueError, match="lidar_range_power"):
        RenderConfig(lidar_range_power=-0.5)


def test_mask_pixels_fall_inside_the_mask_and_cover_it():
    mask = torch.zeros(2, 3, 10, 12, dtype=torch.bool)
    mask[0, 0, 2:4, 5:9] = True          # 8 pixels
    mask[1, 2, 9, 0] = True              # one corner pixel
    pixels, valid = sample_mask_pixels(mask, 400, generator=torch.Generator().manual_seed(0))
    assert pixels.shape == (2, 3, 1, 400, 2) and valid.shape == (2, 3, 1, 400)
    assert valid[0, 0].all() and valid[1, 2].all()
    assert not valid[0, 1].any() and not valid[1, 0].any()
    hit = gather_pixels(mask, pixels)
    assert hit[valid].all()
    drawn = {tuple(p) for p in pixels[0, 0, 0].tolist()}
    assert drawn == {(u, v) for v in (2, 3) for u in range(5, 9)}          # all 8, nothing else
    assert (pixels[1, 2, 0] == torch.tensor([0, 9])).all()
    with pytest.raises(ValueError, match="mask"):
        sample_mask_pixels(mask.float(), 4)
    with pytest.raises(ValueError, match="count"):
        sample_mask_pixels(mask, 0)
