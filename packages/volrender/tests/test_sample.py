"""volrender.sample_vertex_field: trilinear reads of vertex fields at points."""

import pytest
import torch

from volrender import GridSpec, sample_vertex_field

GRID = GridSpec((-2.0, -1.0, 0.0), (2.0, 3.0, 1.5), (4, 8, 3))


def _f(q: torch.Tensor) -> torch.Tensor:
    """Two linear channels of points ``[..., 3]`` -> ``[..., 2]`` (trilinear reads them exactly)."""
    return torch.stack([0.5 * q[..., 0] - q[..., 1] + 2.0 * q[..., 2], q[..., 2] - 1.0], -1)


def _linear_field(dtype=torch.float64):
    p = GRID.points("vertex", dtype=dtype)                        # [NX+1, NY+1, NZ+1, 3]
    return _f(p).permute(3, 0, 1, 2)[None], _f


def test_linear_fields_are_reproduced_and_outside_points_clamped():
    field, f = _linear_field()
    g = torch.Generator().manual_seed(0)
    lo, hi = torch.tensor(GRID.lower, dtype=torch.float64), torch.tensor(GRID.upper, dtype=torch.float64)
    inside = lo + (hi - lo) * torch.rand(1, 5, 7, 3, generator=g, dtype=torch.float64)
    out = sample_vertex_field(field, GRID, inside)
    assert out.shape == (1, 5, 7, 2)
    torch.testing.assert_close(out, f(inside))
    outside = torch.tensor([[[10.0, -9.0, 0.7]]], dtype=torch.float64)
    torch.testing.assert_close(sample_vertex_field(field, GRID, outside),
                               f(torch.tensor([[[2.0, -1.0, 0.7]]], dtype=torch.float64)))


def test_points_cast_to_the_field_dtype_and_gradients():
    field, f = _linear_field(torch.float32)
    pts = torch.tensor([[[0.1, 0.2, 0.3]]], dtype=torch.float64)
    assert sample_vertex_field(field, GRID, pts).dtype == torch.float32
    vals = torch.rand(2, 1, *GRID.vertex_shape, dtype=torch.float64, requires_grad=True)
    q = torch.rand(2, 4, 3, dtype=torch.float64) * 1.5
    assert torch.autograd.gradcheck(lambda v: sample_vertex_field(v, GRID, q), (vals,))


@pytest.mark.parametrize("values, points, match", [
    (torch.zeros(1, 1, 3, 3, 3), torch.zeros(1, 2, 3), "vertex grid"),
    (torch.zeros(1, 1, 5, 9, 4), torch.zeros(2, 2, 3), r"points must have shape \[B=1"),
    (torch.zeros(1, 1, 5, 9, 4), torch.zeros(1, 2, 2), r"points must have shape"),
    (torch.full((1, 1, 5, 9, 4), float("nan")), torch.zeros(1, 2, 3), "finite"),
    (torch.zeros(1, 1, 5, 9, 4), torch.zeros(1, 2, 3, dtype=torch.long), "float32 or float64"),
])
def test_bad_inputs(values, points, match):
    with pytest.raises(ValueError, match=match):
        sample_vertex_field(values, GRID, points)
