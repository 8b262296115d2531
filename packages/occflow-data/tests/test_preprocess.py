"""Resize/crop keeps the geometry: intrinsics, image content, flow vectors, masks, sparse depth."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from occflow_data import (
    IMAGE_KITTI,
    IMAGE_NUSCENES,
    ImageConfig,
    lidar_depth_maps,
    plan_resize_crop,
    project_points,
    resize_crop_intrinsics,
)


def _sample(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear sample ``image`` [C, H, W] at OpenCV pixel coordinates ``uv`` [P, 2] -> [P, C]."""
    h, w = image.shape[-2:]
    grid = torch.stack([(uv[:, 0] + 0.5) / w * 2 - 1, (uv[:, 1] + 0.5) / h * 2 - 1], dim=-1)
    out = F.grid_sample(image[None].double(), grid[None, None].double(), align_corners=False)
    return out[0, :, 0].T


def _coordinate_image(h: int, w: int) -> torch.Tensor:
    """[3, H, W] whose channels encode the pixel's own (u / W, v / H) and a constant."""
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                          indexing="ij")
    return torch.stack([u / w, v / h, torch.full_like(u, 0.5)])


@pytest.mark.parametrize(("scale", "size", "anchor"), [
    (0.88, (256, 704), (1.0, 0.5)),
    (0.44, (128, 352), (1.0, 0.5)),
    (0.37, (50, 150), (0.3, 0.8)),
    (1.3, None, (0.5, 0.5)),
])
def test_resize_crop_keeps_3d_points_on_the_same_content(scale, size, anchor):
    gen = torch.Generator().manual_seed(1)
    src_hw = (450, 800)
    k = torch.tensor([[630.0, 0.0, 405.0], [0.0, 628.0, 227.0], [0.0, 0.0, 1.0]])
    image = _coordinate_image(*src_hw)
    plan = plan_resize_crop(src_hw, scale, size, anchor)
    out = plan.images(image)
    k2 = plan.intrinsics(k)
    assert out.shape == (3, *plan.size)
    # Random 3D points in the camera frame, kept where they land well inside both images.
    pts = torch.stack([torch.rand(400, generator=gen) * 16 - 8, torch.rand(400, generator=gen) * 8 - 4,
                       torch.rand(400, generator=gen) * 30 + 5], dim=-1)
    eye = torch.eye(4)[None]
    uv1, _ = project_points(pts, k[None], eye)
    uv2, _ = project_points(pts, k2[None], eye)
    uv1, uv2 = uv1[0], uv2[0]
    margin = 4.0 / min(scale, 1.0)
    inside = ((uv2[:, 0] > 3) & (uv2[:, 0] < plan.size[1] - 4)
              & (uv2[:, 1] > 3) & (uv2[:, 1] < plan.size[0] - 4)
              & (uv1[:, 0] > margin) & (uv1[:, 0] < src_hw[1] - margin)
              & (uv1[:, 1] > margin) & (uv1[:, 1] < src_hw[0] - margin))
    assert inside.sum() > 50
    scale_px = torch.tensor(src_hw[::-1], dtype=torch.float64)
    before = _sample(image, uv1[inside])[:, :2] * scale_px
    after = _sample(out, uv2[inside])[:, :2] * scale_px
    # Content = the original pixel coordinate. Torch's antialiasing filter alone shifts content
    # locally by up to ~0.07 px (zero on average); ignoring the half-pixel rule would shift it
    # by 0.5 (1 - scale) px, e.g. 0.28 px at x0.44.
    torch.testing.assert_close(after, before, atol=0.1, rtol=0)
    assert (after - before).mean(0).abs().max() < 0.01


def test_wrong_intrinsics_update_is_detected():
    """The test above can fail: ignoring the half-pixel shift moves content by ~0.3 px."""
    src_hw = (900, 1600)
    k = torch.tensor([[1000.0, 0.0, 800.0], [0.0, 1000.0, 450.0], [0.0, 0.0, 1.0]])
    plan = plan_resize_crop(src_hw, 0.44, (256, 704))
    naive = k.clone()
    naive[:2] *= 0.44
    naive[1, 2] -= plan.top
    good = plan.intrinsics(k)
    assert (good[:2, 2] - naive[:2, 2]).abs().max() > 0.2


def test_presets_cover_the_same_region():
    k = torch.tensor([[1260.0, 0.0, 810.0], [0.0, 1255.0, 455.0], [0.0, 0.0, 1.0]])
    a = IMAGE_NUSCENES.input_plan(900, 1600)
    b = IMAGE_NUSCENES.loss_plan(900, 1600)
    assert a.resized == (792, 1408) and a.size == (512, 1408) and (a.top, a.left) == (280, 0)
    assert b.resized == (396, 704) and b.size == (256, 704) and (b.top, b.left) == (140, 0)
    ka, kb = a.intrinsics(k), b.intrinsics(k)
    # Same field of view: the loss image is the input image at half resolution.
    torch.testing.assert_close(kb[:2, :2], ka[:2, :2] / 2)
    torch.testing.assert_close(kb[:2, 2], (ka[:2, 2] + 0.5) / 2 - 0.5)
    kitti = IMAGE_KITTI.input_plan(375, 1242)
    assert kitti.size == (352, 1216) and kitti.top == 23 and kitti.left == 13


def test_flow_vectors_follow_the_resize():
    gen = torch.Generator().manual_seed(2)
    src_hw = (90, 160)
    # An affine flow field f(p) = A p + b in source pixels.
    a = torch.randn(2, 2, generator=gen) * 0.05
    b = torch.randn(2, generator=gen) * 5
    v, u = torch.meshgrid(torch.arange(90.0), torch.arange(160.0), indexing="ij")
    p = torch.stack([u, v], dim=-1)
    flow = (p @ a.T + b).permute(2, 0, 1)
    valid = torch.ones(src_hw, dtype=torch.bool)
    valid[:, :20] = False
    flow[:, ~valid] = 1e7  # invalid entries carry junk, as cached trackers do
    plan = plan_resize_crop(src_hw, 0.44, (32, 60), (0.5, 0.5))
    out, out_valid = plan.flow(flow[None], valid[None])
    assert out.shape == (1, 2, 32, 60) and out_valid.shape == (1, 32, 60)
    sy, sx = plan.scale
    # Expected: f'(p') = S f(T^-1 p') where T maps source to output pixels.
    v2, u2 = torch.meshgrid(torch.arange(32.0), torch.arange(60.0), indexing="ij")
    us = (u2 + plan.left + 0.5) / sx - 0.5
    vs = (v2 + plan.top + 0.5) / sy - 0.5
    src = torch.stack([us, vs], dim=-1)
    expected = (src @ a.T + b) * torch.tensor([sx, sy])
    interior = out_valid[0] & (us > 24)  # away from the invalid band's filter footprint
    torch.testing.assert_close(out[0].permute(1, 2, 0)[interior], expected[interior], atol=5e-3, rtol=1e-4)
    assert not out_valid[0][us < 18].any()
    assert out.abs().max() < 1e3


def test_sparse_flow_survives_downscaling():
    flow = torch.zeros(1, 2, 100, 200)
    valid = torch.zeros(1, 100, 200, dtype=torch.bool)
    valid[0, ::10, ::10] = True  # a stride-10 grid of tracks
    flow[0, 0][valid[0]] = 20.0
    plan = plan_resize_crop((100, 200), 0.44)
    out, out_valid = plan.flow(flow, valid)
    assert out_valid.sum() >= valid.sum()
    expected = torch.full((int(out_valid.sum()),), 20.0 * plan.scale[1])
    torch.testing.assert_close(out[0, 0][out_valid[0]], expected)


def test_sparse_depth_keeps_points_where_they_belong():
    gen = torch.Generator().manual_seed(3)
    depth = torch.zeros(2, 90, 160)
    u = torch.randint(0, 160, (40,), generator=gen)
    v = torch.randint(0, 90, (40,), generator=gen)
    d = torch.rand(40, generator=gen) * 50 + 1
    depth[0, v, u] = d
    plan = plan_resize_crop((90, 160), 0.5, (40, 70), (1.0, 0.5))
    out = plan.sparse_depth(depth)
    assert out.shape == (2, 40, 70) and not out[1].any()
    sy, sx = plan.scale
    uu = torch.floor((u + 0.5) * sx - plan.left).long()
    vv = torch.floor((v + 0.5) * sy - plan.top).long()
    keep = (uu >= 0) & (uu < 70) & (vv >= 0) & (vv < 40)
    for i in torch.nonzero(keep)[:, 0]:
        same = keep & (uu == uu[i]) & (vv == vv[i])
        assert out[0, vv[i], uu[i]] == depth[0, v[same], u[same]].min()
    assert int((out > 0).sum()) == len({(int(a), int(b)) for a, b in zip(uu[keep], vv[keep], strict=True)})


def test_mask_resize_keeps_area():
    mask = torch.zeros(90, 160, dtype=torch.bool)
    mask[20:60, 40:120] = True
    out = plan_resize_crop((90, 160), 0.5).mask(mask)
    assert out.dtype == torch.bool and out.shape == (45, 80)
    assert abs(out.float().mean().item() - mask.float().mean().item()) < 0.02


def test_lidar_depth_maps_match_projection():
    k = torch.tensor([[[50.0, 0.0, 40.0], [0.0, 50.0, 30.0], [0.0, 0.0, 1.0]]])
    # Camera looking along ego +x: camera z = ego x, camera x = -ego y, camera y = -ego z.
    cam_to_ego = torch.eye(4)[None].clone()
    cam_to_ego[0, :3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    pts = torch.tensor([[10.0, 0.0, 0.0], [20.0, 2.0, 1.0], [-5.0, 0.0, 0.0], [10.0, 0.0, 0.001]])
    depth = lidar_depth_maps(pts, k, cam_to_ego, (60, 80))
    assert depth[0, 30, 40] == 10.0  # nearest of the two points on the optical axis pixel
    assert depth[0, 30 - 2, 40 - 5] == 20.0  # v = 30 - 50 * 1/20 = 27.5 -> 28; u = 40 - 5 = 35
    assert int((depth > 0).sum()) == 2  # the point behind the camera is dropped


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"crop size \(512, 1408\) is larger than the resized image"):
        plan_resize_crop((450, 800), 0.88, (512, 1408))
    with pytest.raises(ValueError, match="ImageConfig.input_scale must be a positive"):
        ImageConfig(input_scale=0.0)
    with pytest.raises(ValueError, match="ImageConfig.loss_size must be None or"):
        ImageConfig(loss_size=(256,))
    plan = plan_resize_crop((90, 160), 0.5)
    with pytest.raises(ValueError, match=r"images must have shape \[..., C, H, W\] with \(H, W\) = \(90"):
        plan.images(torch.zeros(3, 80, 160))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        plan.mask(torch.zeros(90, 160))
    with pytest.raises(ValueError, match=r"k must be a floating-point \[..., 3, 3\]"):
        resize_crop_intrinsics(torch.zeros(3, 4), (1.0, 1.0), (0, 0))


@pytest.mark.parametrize(("scale", "size"), [(0.88, (256, 704)), (0.44, (128, 352)), (1.3, None)])
def test_reader_image_path_keeps_geometry(scale, size):
    """The readers resample with OpenCV (INTER_AREA / INTER_LINEAR): same half-pixel rule."""
    from occflow_data._readers._base import resample_image

    src_hw = (450, 800)
    image = _coordinate_image(*src_hw).permute(1, 2, 0).contiguous().numpy()  # [H, W, 3] float32
    plan = plan_resize_crop(src_hw, scale, size)
    out = resample_image(plan, image)
    assert out.shape == (3, *plan.size) and out.dtype == torch.float32
    v, u = torch.meshgrid(torch.arange(plan.size[0], dtype=torch.float64),
                          torch.arange(plan.size[1], dtype=torch.float64), indexing="ij")
    sy, sx = plan.scale
    expected_u = (u + plan.left + 0.5) / sx - 0.5
    expected_v = (v + plan.top + 0.5) / sy - 0.5
    inner = (slice(2, -2), slice(2, -2))
    du = out[0].double()[inner] * src_hw[1] - expected_u[inner]
    dv = out[1].double()[inner] * src_hw[0] - expected_v[inner]
    # INTER_AREA at non-integer factors jitters content locally by up to ~0.05 px, zero on average.
    assert du.abs().max() < 0.1 and dv.abs().max() < 0.1
    assert abs(du.mean()) < 0.005 and abs(dv.mean()) < 0.005


def test_flow_numpy_and_torch_paths_agree():
    gen = torch.Generator().manual_seed(5)
    flow = torch.randn(3, 2, 40, 70, generator=gen) * 5
    valid = torch.rand(3, 40, 70, generator=gen) > 0.3
    flow[0, 0, 3, 4] = float("inf")
    plan = plan_resize_crop((40, 70), 0.6, (20, 36), (0.5, 0.5))
    a, va = plan._flow_numpy(flow, valid)
    b, vb = plan._flow_torch(flow, valid)
    assert torch.equal(va, vb)
    torch.testing.assert_close(a, b)
    assert torch.isfinite(a).all()
