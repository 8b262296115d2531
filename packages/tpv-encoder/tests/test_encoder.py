import dataclasses
import math

import pytest
import torch

from tpv_encoder import PRESETS, TPVEncoder, TPVEncoderConfig, project_to_cameras, tpv_to_volume

H, W = 32, 64


def _camera(yaw: float, position=(0.0, 0.0, 1.5)) -> torch.Tensor:
    """cam_to_ego of an OpenCV camera at ``position`` looking horizontally along ``yaw``."""
    z = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])  # optical axis
    x = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])  # image right
    y = torch.tensor([0.0, 0.0, -1.0])  # image down
    T = torch.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, torch.tensor(position)
    return T


def _rig(yaws, fov_deg=80.0):
    f = W / 2 / math.tan(math.radians(fov_deg) / 2)
    K = torch.tensor([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]])
    return K.expand(len(yaws), 3, 3).clone(), torch.stack([_camera(y) for y in yaws])


def _config(**kw):
    return dataclasses.replace(PRESETS["tiny"], cells=(20, 20, 4), image_size=(H, W), **kw)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return TPVEncoder(_config()).eval()


# ------------------------------------------------------------------ projection
def test_point_in_front_projects_to_the_right_pixel_and_behind_is_masked():
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 120.0, 40.0], [0.0, 0.0, 1.0]])[None, None]
    T = _camera(0.0, position=(1.0, 2.0, 1.5))[None, None]  # looks along +x
    pts = torch.tensor([[[11.0, 1.0, 1.0],  # 10 m ahead, 1 m right, 0.5 m down -> (60, 46)
                         [-9.0, 2.0, 1.5],  # 10 m behind the camera
                         [11.0, -8.0, 1.5],  # ahead but far right: u = 150, outside
                         [1.0, 2.0, 1.5],  # at the camera centre: depth 0
                         [11.0, 14.0, 1.5],  # ahead, far left: u = -70
                         [11.0, 2.0, -10.0],  # ahead, far below: v = 178
                         # 10 m ahead, v = -0.3 (inside the top pixel row) and v = -0.7 (outside)
                         [11.0, 2.0, 1.5 - (-0.3 - 40.0) * 10.0 / 120.0],
                         [11.0, 2.0, 1.5 - (-0.7 - 40.0) * 10.0 / 120.0]]])
    uv, depth, vis = project_to_cameras(pts, K, T, image_size=(80, 100))
    torch.testing.assert_close(uv[0, 0, 0], torch.tensor([60.0, 46.0]))
    torch.testing.assert_close(depth[0, 0, :2], torch.tensor([10.0, -10.0]))
    torch.testing.assert_close(uv[0, 0, 6], torch.tensor([50.0, -0.3]))
    assert vis[0, 0].tolist() == [True, False, False, False, False, False, True, False]


def test_projection_bad_shapes():
    K, T = _rig([0.0])
    with pytest.raises(ValueError, match="points"):
        project_to_cameras(torch.zeros(1, 5, 2), K[None], T[None], (H, W))
    with pytest.raises(ValueError, match="cam_to_ego"):
        project_to_cameras(torch.zeros(1, 5, 3), K[None], T[None, :, :3], (H, W))


# ------------------------------------------------------------------ encoder
def _images(gen, B, N):
    return torch.rand(B, N, 3, H, W, generator=gen)


def test_output_shape_and_finer_volume():
    torch.manual_seed(1)
    enc = TPVEncoder(_config(volume_cells=(40, 30, 8))).eval()
    gen = torch.Generator().manual_seed(1)
    K, T = _rig([0.0, math.pi])
    with torch.no_grad():
        vol = enc(_images(gen, 1, 2), K[None], T[None])
        planes = enc.encode_planes(_images(gen, 1, 2), K[None], T[None])
    assert vol.shape == (1, 32, 40, 30, 8)
    assert torch.isfinite(vol).all()
    assert planes.hw.shape == (1, 32, 20, 20) and planes.zh.shape == (1, 32, 4, 20)
    assert planes.wz.shape == (1, 32, 20, 4)


def test_region_seen_by_one_camera_ignores_the_other_camera(encoder):
    """Cam 0 looks along +x, cam 1 along -x: cells with x > 0 (HW and ZH planes) only see cam 0."""
    gen = torch.Generator().manual_seed(2)
    K, T = _rig([0.0, math.pi])
    imgs = _images(gen, 1, 2)
    other = imgs.clone()
    other[:, 1] = torch.rand(3, H, W, generator=gen)
    cam0_changed = imgs.clone()
    cam0_changed[:, 0] = torch.rand(3, H, W, generator=gen)
    with torch.no_grad():
        a = encoder.encode_planes(imgs, K[None], T[None])
        b = encoder.encode_planes(other, K[None], T[None])
        c = encoder.encode_planes(cam0_changed, K[None], T[None])
    front = slice(10, 20)  # x cell centres > 0 (20 cells over [-40, 40])
    torch.testing.assert_close(a.hw[:, :, front], b.hw[:, :, front], rtol=0, atol=1e-6)
    torch.testing.assert_close(a.zh[:, :, :, front], b.zh[:, :, :, front], rtol=0, atol=1e-6)
    # The test can fail: the other camera's image does change the rear, and cam 0's the front.
    assert (a.hw[:, :, :10] - b.hw[:, :, :10]).abs().max() > 1e-3
    assert (a.hw[:, :, front] - c.hw[:, :, front]).abs().max() > 1e-3


def test_gradients_reach_the_backbone():
    torch.manual_seed(3)
    enc = TPVEncoder(_config()).train()
    gen = torch.Generator().manual_seed(3)
    K, T = _rig([0.0, math.pi / 2, math.pi])
    vol = enc(_images(gen, 1, 3), K[None], T[None])
    (vol * torch.randn(vol.shape, generator=gen)).sum().backward()
    stem = next(p for n, p in enc.backbone.body.named_parameters() if n.startswith("stem"))
    for name, param in (("stem", stem), ("fpn", enc.backbone.fpn.lateral[0].weight),
                        ("image value proj", enc.layers[0].image_attn[0].value_proj.weight),
                        ("hw queries", enc.queries[0])):
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_batch_equals_one_by_one(encoder):
    gen = torch.Generator().manual_seed(4)
    K0, T0 = _rig([0.0, 2.0, 4.0])
    K1, T1 = _rig([0.5, 2.5, 3.5], fov_deg=70.0)
    imgs = _images(gen, 2, 3)
    K, T = torch.stack([K0, K1]), torch.stack([T0, T1])
    with torch.no_grad():
        both = encoder(imgs, K, T)
        single = torch.cat([encoder(imgs[i:i + 1], K[i:i + 1], T[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, single, rtol=1e-4, atol=1e-5)
    assert (both[0] - both[1]).abs().max() > 1e-3


@pytest.mark.parametrize("case", ["intrinsics_shape", "cam_to_ego_shape", "cameras_mismatch",
                                  "batch_mismatch", "non_finite", "images_dims", "not_tensor"])
def test_bad_inputs_raise_clear_errors(encoder, case):
    gen = torch.Generator().manual_seed(5)
    K, T = _rig([0.0, math.pi])
    K, T, imgs = K[None], T[None], _images(gen, 1, 2)
    err, match = ValueError, None
    if case == "intrinsics_shape":
        K, match = torch.eye(4).expand(1, 2, 4, 4), "intrinsics must be"
    elif case == "cam_to_ego_shape":
        T, match = T[..., :3, :], "cam_to_ego must be"
    elif case == "cameras_mismatch":
        K, T, match = K[:, :1], T[:, :1], r"\[B, N\]"
    elif case == "batch_mismatch":
        K, T, match = K.expand(2, -1, -1, -1), T.expand(2, -1, -1, -1), r"\[B, N\]"
    elif case == "non_finite":
        T = T.clone()
        T[0, 0, 0, 3], match = float("nan"), "non-finite"
    elif case == "images_dims":
        imgs, match = imgs[0], "images must be"
    elif case == "not_tensor":
        K, err, match = K.tolist(), TypeError, "intrinsics"
    with pytest.raises(err, match=match):
        encoder(imgs, K, T)


# ------------------------------------------------------------------ volume and config
def test_tpv_to_volume_is_the_broadcast_sum_and_upsampling_is_trilinear():
    gen = torch.Generator().manual_seed(6)
    hw = torch.randn(2, 3, 5, 4, generator=gen)
    zh = torch.randn(2, 3, 2, 5, generator=gen)
    wz = torch.randn(2, 3, 4, 2, generator=gen)
    vol = tpv_to_volume(hw, zh, wz)
    i, j, k = 3, 1, 1
    torch.testing.assert_close(vol[:, :, i, j, k], hw[:, :, i, j] + zh[:, :, k, i] + wz[:, :, j, k])
    fine = tpv_to_volume(hw, zh, wz, (10, 7, 5))
    ref = torch.nn.functional.interpolate(vol, size=(10, 7, 5), mode="trilinear", align_corners=False)
    torch.testing.assert_close(fine, ref)
    with pytest.raises(ValueError, match="planes do not fit"):
        tpv_to_volume(hw, zh[:, :, :, :4], wz)


def test_presets_and_bad_config():
    assert set(PRESETS) >= {"nuscenes", "kitti", "tiny"}
    assert PRESETS["nuscenes"].cells == (100, 100, 10) and PRESETS["nuscenes"].embed_dim == 192
    assert PRESETS["kitti"].lower == (0.0, -25.6, -2.0) and PRESETS["kitti"].cells == (128, 128, 16)
    with pytest.raises(ValueError, match="image_points"):
        TPVEncoderConfig(pillar_points=(3, 48, 48))
    with pytest.raises(ValueError, match="upper"):
        TPVEncoderConfig(upper=(40.0, 40.0, -2.0))
    with pytest.raises(ValueError, match="divisible"):
        TPVEncoderConfig(num_heads=5)
    with pytest.raises(TypeError):
        TPVEncoder(dict(PRESETS["tiny"].__dict__))
    with pytest.raises(ValueError, match="backbone_out_indices must hold ints >= 0"):
        TPVEncoderConfig(backbone_out_indices=(-1, 0, 1))


def test_without_learned_queries_the_planes_come_from_positions_and_images():
    torch.manual_seed(5)
    learned, zero = TPVEncoder(_config()), TPVEncoder(_config(learned_queries=False))
    per_cell = sum(p.numel() for p in learned.queries)
    assert per_cell == (20 * 20 + 4 * 20 + 20 * 4) * 32
    count = lambda m: sum(p.numel() for p in m.parameters())       # noqa: E731
    assert count(learned) - count(zero) == per_cell
    assert not any("queries" in k for k in zero.state_dict())
    gen = torch.Generator().manual_seed(5)
    K, T = _rig([0.0, math.pi])
    imgs = _images(gen, 1, 2)
    vol = zero.train()(imgs, K[None], T[None])
    (vol * torch.randn(vol.shape, generator=gen)).sum().backward()
    stem = next(p for n, p in zero.backbone.body.named_parameters() if n.startswith("stem"))
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    with torch.no_grad():
        other = zero.eval()(torch.rand(imgs.shape, generator=gen), K[None], T[None])
        again = zero(imgs, K[None], T[None])
    assert (again - other).abs().max() > 1e-3
    with pytest.raises(ValueError, match="learned_queries"):
        _config(learned_queries=1)


def test_first_backbone_stage_can_be_used():
    # timm index 0 is ConvNeXt's first stage (stride 4): the finest level for small images
    enc = TPVEncoder(dataclasses.replace(PRESETS["tiny"], backbone_out_indices=(0, 1, 2)))
    assert enc.backbone.strides[0] == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nuscenes", "kitti"])
def test_paper_presets_build(name):
    enc = TPVEncoder(PRESETS[name])
    n = sum(p.numel() for p in enc.parameters())
    assert 90e6 < n < 130e6  # ConvNeXt-Base (~88 M) + FPN + 4 layers


def test_grad_checkpoint_gives_the_same_gradients():
    gen = torch.Generator().manual_seed(7)
    K, T = _rig([0.0, math.pi])
    imgs = _images(gen, 1, 2)
    weight = torch.randn(1, 32, 20, 20, 4, generator=gen)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(8)
        enc = TPVEncoder(_config(grad_checkpoint=ckpt)).train()
        (enc(imgs, K[None], T[None]) * weight).sum().backward()
        grads.append([p.grad for p in (enc.queries[1], enc.backbone.fpn.smooth[0].weight,
                                       next(enc.backbone.body.parameters()))])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_image_reference_points_land_on_the_projected_pixel(encoder):
    """HW query (i, j) of a camera looking along +x: its z anchors project by the pinhole formula."""
    f = 40.0
    K = torch.tensor([[f, 0.0, 30.0], [0.0, f, 15.0], [0.0, 0.0, 1.0]])[None, None]
    T = _camera(0.0, position=(0.0, 0.0, 1.5))[None, None]
    rows, ref, mask, valid, count = encoder._routes(K, T, (H, W))[0]  # HW plane
    i, j = 15, 9  # x = -40 + 15.5 * 4 = 22 m ahead, y = -40 + 9.5 * 4 = -2 m (right)
    x, y = -40.0 + (i + 0.5) * 4.0, -40.0 + (j + 0.5) * 4.0
    q = i * 20 + j
    slot = (rows[0] == q).nonzero()
    assert slot.numel() == 1 and valid[0, slot[0, 0]]
    A = ref.shape[2]
    for a in range(A):
        z = -1.0 + (a + 0.5) / A * 6.4
        u, v = 30.0 + f * (-y) / x, 15.0 + f * (1.5 - z) / x
        expected = torch.tensor([(u + 0.5) / W, (v + 0.5) / H])
        torch.testing.assert_close(ref[0, slot[0, 0], a], expected)
        assert bool(mask[0, slot[0, 0], a])
    assert count[0, q] == 1
    # A query behind the camera (x < 0) is not routed to it.
    assert not (rows[0][valid[0]] == 4 * 20 + j).any()


def test_fourier_encode_values_and_errors():
    from tpv_encoder import fourier_encode

    coords = torch.tensor([[0.25, 0.5]])
    enc = fourier_encode(coords, 3, (8, 2))
    assert enc.shape == (1, 12)
    # Axis 0: frequencies 0.5, 1, 2, ..., up to the Nyquist 4 cycles: geometric 0.5 -> 4 over 3 steps.
    freqs = torch.tensor([0.5, 0.5 * 8 ** 0.5, 4.0])
    torch.testing.assert_close(enc[0, :3], torch.sin(2 * math.pi * 0.25 * freqs))
    torch.testing.assert_close(enc[0, 3:6], torch.cos(2 * math.pi * 0.25 * freqs))
    with pytest.raises(ValueError, match="coords"):
        fourier_encode(coords, 3, (8, 2, 2))
