"""Ego-motion alignment: exact shifts, rotations, validity, border handling, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from temporal_fusion import align_history, cell_centres, relative_poses

LOWER = (-3.0, -3.0, -1.0)
UPPER = (3.0, 3.0, 1.0)  # 6x6x4 cells of 1 m x 1 m x 0.5 m
SHAPE = (6, 6, 4)


def _volumes(b: int, t: int, c: int = 3, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, c, *SHAPE, generator=g, dtype=torch.float64).to(dtype)


def _translation(dx: float, dy: float, dz: float) -> torch.Tensor:
    m = torch.eye(4, dtype=torch.float64)
    m[:3, 3] = torch.tensor([dx, dy, dz], dtype=torch.float64)
    return m


def _rot_z(angle: float) -> torch.Tensor:
    m = torch.eye(4, dtype=torch.float64)
    c, s = math.cos(angle), math.sin(angle)
    m[:2, :2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return m


def test_cell_centres_are_voxel_centres():
    c = cell_centres(LOWER, UPPER, SHAPE)
    assert c.shape == (6, 6, 4, 3)
    assert torch.allclose(c[0, 0, 0], torch.tensor([-2.5, -2.5, -0.75], dtype=torch.float64))
    assert torch.allclose(c[5, 2, 3], torch.tensor([2.5, -0.5, 0.75], dtype=torch.float64))


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_identity_pose_is_identity(dtype, atol):
    vol = _volumes(2, 2, dtype=dtype)
    eye = torch.eye(4, dtype=torch.float64).expand(2, 2, 4, 4)
    aligned, valid = align_history(vol, eye, LOWER, UPPER)
    assert aligned.dtype == dtype
    torch.testing.assert_close(aligned, vol, atol=atol, rtol=0)
    assert valid.shape == (2, 2, 1, *SHAPE) and valid.dtype == torch.bool and bool(valid.all())


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("shift", [(2, 0, 0), (0, -1, 0), (0, 0, 1), (2, -1, 1)])
def test_whole_voxel_translation_shifts_exactly(shift, dtype, atol):
    nx, ny, nz = shift
    # The ego moved forward by (nx, ny, nz) voxels: a past point p is p - d in the current frame.
    d = (nx * 1.0, ny * 1.0, nz * 0.5)
    pose = _translation(-d[0], -d[1], -d[2]).expand(1, 1, 4, 4)
    vol = _volumes(1, 1, dtype=dtype)
    aligned, valid = align_history(vol, pose, LOWER, UPPER)
    X, Y, Z = SHAPE
    for i in range(X):
        for j in range(Y):
            for k in range(Z):
                si, sj, sk = i + nx, j + ny, k + nz
                inside = 0 <= si < X and 0 <= sj < Y and 0 <= sk < Z
                assert bool(valid[0, 0, 0, i, j, k]) == inside
                # Border padding: outside points read the nearest outer cell.
                ci, cj, ck = min(max(si, 0), X - 1), min(max(sj, 0), Y - 1), min(max(sk, 0), Z - 1)
                torch.testing.assert_close(aligned[0, 0, :, i, j, k], vol[0, 0, :, ci, cj, ck],
                                           atol=atol, rtol=0)


def test_rotation_90_degrees_about_z_permutes_axes():
    vol = _volumes(1, 1)
    # current_from_past = Rz(+90): the current ego is the past ego turned 90 degrees right.
    pose = _rot_z(math.pi / 2).expand(1, 1, 4, 4)
    aligned, valid = align_history(vol, pose, LOWER, UPPER)
    assert bool(valid.all())
    X = SHAPE[0]
    # Current cell centre (x, y) comes from the past point Rz(-90)(x, y) = (y, -x), i.e.
    # aligned[i, j] = past[j, X - 1 - i] on this grid, symmetric about the origin.
    for i in range(X):
        for j in range(X):
            torch.testing.assert_close(aligned[0, 0, :, i, j], vol[0, 0, :, j, X - 1 - i], atol=1e-12, rtol=0)
    torch.testing.assert_close(aligned[0, 0], torch.rot90(vol[0, 0], k=1, dims=(1, 2)), atol=1e-12, rtol=0)


def test_half_voxel_translation_interpolates_linearly():
    vol = _volumes(1, 1)
    pose = _translation(-0.5, 0.0, 0.0).expand(1, 1, 4, 4)  # half a voxel forward
    aligned, valid = align_history(vol, pose, LOWER, UPPER)
    expected = 0.5 * (vol[0, 0, :, :-1] + vol[0, 0, :, 1:])
    torch.testing.assert_close(aligned[0, 0, :, :-1], expected, atol=1e-12, rtol=0)
    # The last row samples half a voxel beyond the last centre: still inside the box (valid),
    # border padding keeps the outer cell's value.
    assert bool(valid.all())
    torch.testing.assert_close(aligned[0, 0, :, -1], vol[0, 0, :, -1], atol=1e-12, rtol=0)


def test_outside_points_are_invalid_and_zero_padding_reads_zero():
    vol = _volumes(1, 2)
    poses = torch.stack([_translation(-2.0, 0.0, 0.0), _translation(0.0, 0.0, 0.0)])[None]
    aligned_b, valid = align_history(vol, poses, LOWER, UPPER, padding_mode="border")
    aligned_z, valid_z = align_history(vol, poses, LOWER, UPPER, padding_mode="zeros")
    assert torch.equal(valid, valid_z)
    assert not bool(valid[0, 0, 0, 4:].any()) and bool(valid[0, 0, 0, :4].all())
    assert bool(valid[0, 1].all())
    assert torch.count_nonzero(aligned_z[0, 0, :, 4:]) == 0
    torch.testing.assert_close(aligned_z[0, 0, :, :4], aligned_b[0, 0, :, :4], atol=1e-12, rtol=0)
    # Points far outside (a 10 m jump) are all invalid.
    far = _translation(10.0, 0.0, 0.0).expand(1, 2, 4, 4)
    _, valid_far = align_history(vol, far, LOWER, UPPER)
    assert not bool(valid_far.any())


def test_list_input_matches_tensor_and_batches_are_independent():
    vol = _volumes(2, 2)
    poses = torch.stack([torch.stack([_translation(-1.0, 0.5, 0.0), _rot_z(0.3)]),
                         torch.stack([_rot_z(-0.7), _translation(0.2, -0.3, 0.25)])])
    a, v = align_history(vol, poses, LOWER, UPPER)
    a_list, v_list = align_history([vol[:, 0], vol[:, 1]], poses, LOWER, UPPER)
    torch.testing.assert_close(a, a_list, atol=0, rtol=0)
    assert torch.equal(v, v_list)
    for b in range(2):
        a_b, v_b = align_history(vol[b:b + 1], poses[b:b + 1], LOWER, UPPER)
        torch.testing.assert_close(a[b:b + 1], a_b, atol=1e-12, rtol=0)
        assert torch.equal(v[b:b + 1], v_b)


def test_relative_poses_maps_past_points_to_current():
    g = torch.Generator().manual_seed(3)
    poses = []
    for _ in range(3):
        m = _rot_z(float(torch.rand(1, generator=g)) * 6.0)
        m[:3, 3] = torch.randn(3, generator=g, dtype=torch.float64) * 10
        poses.append(m)
    ego_to_global = torch.stack(poses)[None]  # [1, 3, 4, 4]
    rel = relative_poses(ego_to_global)
    assert rel.shape == (1, 2, 4, 4)
    point = torch.tensor([1.0, -2.0, 0.5, 1.0], dtype=torch.float64)
    for t in range(2):
        world = ego_to_global[0, t] @ point
        now = torch.linalg.inv(ego_to_global[0, 2]) @ world
        torch.testing.assert_close(rel[0, t] @ point, now, atol=1e-12, rtol=0)


def test_alignment_gradients_match_finite_differences():
    vol = _volumes(1, 1, c=1)[..., :3, :3, :2].clone().requires_grad_(True)
    pose = (_translation(-0.3, 0.2, 0.1) @ _rot_z(0.2)).expand(1, 1, 4, 4)

    def fn(v):
        return align_history(v, pose, (-1.5, -1.5, -0.5), (1.5, 1.5, 0.5))[0]

    assert torch.autograd.gradcheck(fn, (vol,))


def test_bad_inputs_raise_clear_errors():
    vol = _volumes(1, 2)
    eye = torch.eye(4, dtype=torch.float64).expand(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"volumes must be \[B, T, C, X, Y, Z\]"):
        align_history(vol[:, 0], eye, LOWER, UPPER)
    with pytest.raises(ValueError, match=r"current_from_past must have shape \[1, 2, 4, 4\]"):
        align_history(vol, eye[:, :1], LOWER, UPPER)
    bad = eye.clone()
    bad[0, 0, 3, 0] = 1.0
    with pytest.raises(ValueError, match="last row 0 0 0 1"):
        align_history(vol, bad, LOWER, UPPER)
    nan = eye.clone()
    nan[0, 1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="current_from_past must be finite"):
        align_history(vol, nan, LOWER, UPPER)
    with pytest.raises(ValueError, match="upper must exceed lower"):
        align_history(vol, eye, UPPER, LOWER)
    with pytest.raises(ValueError, match="padding_mode"):
        align_history(vol, eye, LOWER, UPPER, padding_mode="reflection")
    with pytest.raises(TypeError, match="current_from_past must be a torch.Tensor"):
        align_history(vol, eye.numpy(), LOWER, UPPER)
    with pytest.raises(ValueError, match="floating-point"):
        align_history(vol.long(), eye, LOWER, UPPER)
    with pytest.raises(ValueError, match="ego_to_global must be"):
        relative_poses(eye[0])


def test_half_precision_volumes_sample_in_float32():
    # bfloat16 coordinates would land up to 0.4 cells off on a 100-cell axis.
    g = torch.Generator().manual_seed(1)
    vol = torch.randn(1, 1, 2, 100, 4, 2, generator=g).to(torch.bfloat16)
    lower, upper = (-40.0, -1.6, -1.0), (40.0, 1.6, 0.6)
    pose = _translation(-0.8 * 37, 0.0, 0.0).expand(1, 1, 4, 4)  # 37 cells of 0.8 m
    aligned, valid = align_history(vol, pose, lower, upper)
    assert aligned.dtype == torch.bfloat16
    torch.testing.assert_close(aligned[0, 0, :, :63], vol[0, 0, :, 37:], atol=1e-2, rtol=1e-2)
    assert not bool(valid[0, 0, 0, 63:].any()) and bool(valid[0, 0, 0, :63].all())
