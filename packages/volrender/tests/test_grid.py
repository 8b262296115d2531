import pytest
import torch

from volrender import OCC3D_NUSCENES, GridSpec


def test_occ3d_sizes():
    assert OCC3D_NUSCENES.voxel_size == (0.4, 0.4, 0.4)
    assert OCC3D_NUSCENES.vertex_shape == (201, 201, 17)
    assert OCC3D_NUSCENES.cell_shape == (200, 200, 16)


def test_cell_and_vertex_indices():
    g = GridSpec((0.0, 0.0, 0.0), (2.0, 4.0, 1.0), (2, 4, 2))
    p = torch.tensor([[0.5, 0.5, 0.25], [2.0, 4.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(g.world_to_grid(p, "cell")[0], torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(g.world_to_grid(p, "vertex")[1], torch.tensor([2.0, 4.0, 2.0], dtype=torch.float64))
    for loc in ("cell", "vertex"):
        assert torch.allclose(g.grid_to_world(g.world_to_grid(p, loc), loc), p)
    centres = g.points("cell", dtype=torch.float64)
    assert centres.shape == (2, 4, 2, 3)
    assert torch.allclose(centres[1, 3, 1], torch.tensor([1.5, 3.5, 0.75], dtype=torch.float64))
    assert g.points("vertex").shape == (3, 5, 3, 3)


def test_contains():
    g = GridSpec((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), (4, 4, 4))
    inside = g.contains(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.01, 0.0, 0.0]]))
    assert inside.tolist() == [True, True, False]


@pytest.mark.parametrize("kwargs, match", [
    (dict(lower=(0, 0, 0), upper=(1, 1, 0), cells=(1, 1, 1)), "upper must exceed"),
    (dict(lower=(0, 0), upper=(1, 1, 1), cells=(1, 1, 1)), "lower must have 3"),
    (dict(lower=(0, 0, 0), upper=(1, 1, 1), cells=(1, 0, 1)), "positive ints"),
    (dict(lower=(0, 0, float("nan")), upper=(1, 1, 1), cells=(1, 1, 1)), "finite"),
])
def test_bad_grid(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridSpec(**kwargs)


def test_bad_points():
    with pytest.raises(ValueError, match=r"points must have shape \[\.\.\., 3\]"):
        OCC3D_NUSCENES.world_to_grid(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="location must be"):
        OCC3D_NUSCENES.world_to_grid(torch.zeros(4, 3), "centre")
