"""sdf_gradient, eikonal_loss, hessian_loss: analytic fields and bad inputs."""

import pytest
import torch

from volrender import GridSpec, eikonal_loss, hessian_loss, sdf_gradient

GRID = GridSpec((-1.0, -2.0, 0.0), (1.0, 2.0, 0.8), (10, 8, 4))   # anisotropic voxels 0.2 x 0.5 x 0.2


def _field(fn, dtype=torch.float64):
    p = GRID.points("vertex", dtype=dtype)
    return fn(p[..., 0], p[..., 1], p[..., 2])[None, None].contiguous()


def test_gradient_of_linear_field_is_exact_everywhere():
    sdf = _field(lambda x, y, z: 0.6 * x - 0.8 * y + 0.0 * z + 3.0)
    g = sdf_gradient(sdf, GRID)
    assert g.shape == (1, 3, *GRID.vertex_shape)
    torch.testing.assert_close(g[0, 0], torch.full_like(g[0, 0], 0.6))
    torch.testing.assert_close(g[0, 1], torch.full_like(g[0, 1], -0.8))
    torch.testing.assert_close(g[0, 2], torch.zeros_like(g[0, 2]))
    assert eikonal_loss(sdf, GRID).item() < 1e-20
    assert hessian_loss(sdf, GRID).item() < 1e-12


def test_gradient_of_quadratic_is_central_inside_and_one_sided_on_faces():
    sdf = _field(lambda x, y, z: x * x)
    g = sdf_gradient(sdf, GRID)[0, 0, :, 0, 0]
    x = GRID.points("vertex", dtype=torch.float64)[:, 0, 0, 0]
    torch.testing.assert_close(g[1:-1], 2 * x[1:-1])                  # central differences are exact
    torch.testing.assert_close(g[0], x[0] + x[1])                     # one-sided
    # Hessian: f_xx = 2 at interior x vertices, 0 along y and z
    n_x = (GRID.vertex_shape[0] - 2) * GRID.vertex_shape[1] * GRID.vertex_shape[2]
    n_y = GRID.vertex_shape[0] * (GRID.vertex_shape[1] - 2) * GRID.vertex_shape[2]
    n_z = GRID.vertex_shape[0] * GRID.vertex_shape[1] * (GRID.vertex_shape[2] - 2)
    expected = 2.0 * n_x / (n_x + n_y + n_z)
    assert abs(hessian_loss(sdf, GRID).item() - expected) < 1e-9
    assert abs(hessian_loss(sdf, GRID, in_voxel_units=True).item() - expected * 0.2 ** 2) < 1e-9


def test_eikonal_at_points_and_grad():
    sdf = _field(lambda x, y, z: 2.0 * z).requires_grad_()            # |grad| = 2 -> penalty 1
    pts = torch.tensor([[[0.1, 0.2, 0.3], [0.5, -1.0, 0.7], [5.0, 0.0, 0.0]]], dtype=torch.float64)
    loss = eikonal_loss(sdf, GRID, pts, reduction="none")
    torch.testing.assert_close(loss, torch.ones(1, 3, dtype=torch.float64))
    eikonal_loss(sdf, GRID).backward()
    assert sdf.grad is not None and torch.isfinite(sdf.grad).all() and sdf.grad.abs().sum() > 0


def test_gradcheck():
    g = torch.Generator().manual_seed(0)
    grid = GridSpec((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (3, 2, 3))
    sdf = torch.randn((1, 1, *grid.vertex_shape), generator=g, dtype=torch.float64, requires_grad=True)
    pts = torch.rand((1, 5, 3), generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: eikonal_loss(s, grid, pts), (sdf,))
    assert torch.autograd.gradcheck(lambda s: hessian_loss(s, grid), (sdf,))


@pytest.mark.parametrize("call, err, match", [
    (lambda: sdf_gradient(torch.zeros(1, 1, 3, 3, 3), GRID), ValueError, "sdf must be a vertex grid"),
    (lambda: sdf_gradient(torch.zeros(1, 2, 11, 9, 5), GRID), ValueError, "sdf must have 1 channel"),
    (lambda: hessian_loss(torch.zeros(1, 1, 11, 9, 5, dtype=torch.int32), GRID), ValueError, "float32"),
    (lambda: eikonal_loss(torch.zeros(1, 1, 11, 9, 5), GRID, torch.zeros(2, 4, 3)), ValueError,
     "points must have shape"),
    (lambda: eikonal_loss(torch.zeros(1, 1, 11, 9, 5), GRID, torch.zeros(1, 4, 3, dtype=torch.float64)),
     ValueError, "points must have dtype"),
    (lambda: eikonal_loss(torch.zeros(1, 1, 11, 9, 5), GRID, reduction="sum"), ValueError, "reduction"),
    (lambda: eikonal_loss(torch.zeros(1, 1, 11, 9, 5), "grid"), TypeError, "GridSpec"),
])
def test_bad_inputs(call, err, match):
    with pytest.raises(err, match=match):
        call()
