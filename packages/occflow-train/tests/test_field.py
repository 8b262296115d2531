import doctest

import pytest
import torch

import occflow_train
from occflow_train import SceneField, _eval_utils, flow_to_velocity, occupancy_from_sdf, vertices_to_cells
from volrender import GridSpec

GRID = GridSpec((-4.0, -4.0, -1.0), (4.0, 4.0, 1.4), (20, 20, 6))


def test_all_names_resolve():
    for name in occflow_train.__all__:
        assert getattr(occflow_train, name) is not None, name


def test_docstring_examples():
    assert doctest.testmod(_eval_utils).failed == 0


def test_scene_field_validates_shapes():
    g = torch.Generator().manual_seed(0)
    sdf = torch.randn(2, 1, *GRID.vertex_shape, generator=g)
    flow = torch.randn(2, 2, *GRID.vertex_shape, generator=g)
    field = SceneField(sdf, flow, GRID)
    assert field.batch_size == 2
    with pytest.raises(ValueError, match="sdf must have shape"):
        SceneField(sdf[..., :-1], flow, GRID)
    with pytest.raises(ValueError, match="flow must have shape"):
        SceneField(sdf, flow[:, :1], GRID)
    with pytest.raises(ValueError, match="batch size"):
        SceneField(sdf, flow[:1], GRID)
    with pytest.raises(TypeError, match="grid"):
        SceneField(sdf, flow, (1, 2, 3))


def test_occupancy_from_sdf_plane_threshold_and_border():
    # A ground plane at z = 0.33 m: cells whose centre is at most 0.1 m above it are occupied.
    z = GRID.points("vertex")[..., 2]
    sdf = (z - 0.33).reshape(1, 1, *GRID.vertex_shape)
    occ = occupancy_from_sdf(sdf, GRID, border=0)
    centres_z = GRID.points("cell")[..., 2]
    assert torch.equal(occ[0], centres_z - 0.33 <= 0.1)
    assert occ.shape == (1, *GRID.cells)
    occ_b = occupancy_from_sdf(sdf, GRID, border=2)
    assert not occ_b[0, :2].any() and not occ_b[0, -2:].any()
    assert not occ_b[0, :, :2].any() and not occ_b[0, :, -2:].any()
    assert torch.equal(occ_b[0, 2:-2, 2:-2], occ[0, 2:-2, 2:-2])
    # a higher threshold occupies more
    assert occupancy_from_sdf(sdf, GRID, threshold=0.5, border=0).sum() > occ.sum()


def test_occupancy_bad_inputs():
    sdf = torch.zeros(1, 1, *GRID.vertex_shape)
    with pytest.raises(ValueError, match="sdf must have shape"):
        occupancy_from_sdf(sdf[..., 1:], GRID)
    with pytest.raises(ValueError, match="border"):
        occupancy_from_sdf(sdf, GRID, border=10)
    with pytest.raises(TypeError, match="grid"):
        occupancy_from_sdf(sdf, "grid")


def test_vertices_to_cells_is_trilinear_centre_value():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, generator=g)
    pts = GRID.points("vertex")
    lin = (pts @ a).reshape(1, 1, *GRID.vertex_shape)  # a linear field is reproduced exactly
    cells = vertices_to_cells(lin)
    assert torch.allclose(cells[0, 0], GRID.points("cell") @ a, atol=1e-5)


def test_flow_to_velocity():
    flow = torch.tensor([1.0, -0.25])
    assert torch.equal(flow_to_velocity(flow), torch.tensor([2.0, -0.5]))
    assert torch.equal(flow_to_velocity(flow, step_seconds=0.1), flow * 10)
    with pytest.raises(ValueError, match="step_seconds"):
        flow_to_velocity(flow, step_seconds=0.0)
    with pytest.raises(ValueError, match="floating"):
        flow_to_velocity(torch.ones(2, dtype=torch.long))
