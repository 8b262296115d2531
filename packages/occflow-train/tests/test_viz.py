import matplotlib
import numpy as np
import pytest
import torch

from occflow_train._viz import bev_height, depth_to_rgb, flow_to_rgb, save_frame_figure


def test_flow_colour_wheel():
    flow = torch.zeros(2, 1, 4)
    flow[:, 0, 1] = torch.tensor([1.0, 0.0])
    flow[:, 0, 2] = torch.tensor([-1.0, 0.0])
    flow[:, 0, 3] = torch.tensor([0.5, 0.0])
    rgb = flow_to_rgb(flow, max_norm=1.0)
    assert np.allclose(rgb[0, 0], 1.0)                       # zero vector: white
    assert not np.allclose(rgb[0, 1], rgb[0, 2])             # opposite directions differ
    sat = lambda c: c.max() - c.min()                        # noqa: E731
    assert sat(rgb[0, 3]) == pytest.approx(0.5 * sat(rgb[0, 1]), abs=1e-5)
    with pytest.raises(ValueError, match=r"flow must have shape \[2, H, W\]"):
        flow_to_rgb(torch.zeros(3, 2, 2))


def test_depth_colours_near_brighter_and_none_black():
    d = torch.tensor([[2.0, 40.0, 0.0]])
    rgb = depth_to_rgb(d, max_depth=50.0)
    assert rgb[0, 0].sum() > rgb[0, 1].sum()
    assert np.all(rgb[0, 2] == 0)


def test_bev_height_orientation_and_colour():
    occ = np.zeros((4, 3, 5), dtype=bool)
    occ[3, 0, :2] = True          # most forward x, rightmost y (y = -max), low
    occ[0, 2, :5] = True          # rearmost x, leftmost y, reaches the top
    z = np.linspace(0.0, 4.0, 5)
    rgb = bev_height(occ, z)
    assert rgb.shape == (4, 3, 3)
    viridis = matplotlib.colormaps["viridis"]
    # forward x -> row 0; y = -max (right) -> last column
    assert np.allclose(rgb[0, 2], viridis(0.25)[:3], atol=1e-6)
    assert np.allclose(rgb[3, 0], viridis(1.0)[:3], atol=1e-6)
    assert np.allclose(rgb[1, 1], 1.0)


def test_figure_written(tmp_path):
    g = torch.Generator().manual_seed(0)
    out = save_frame_figure(tmp_path / "f.png", images=torch.rand(2, 3, 8, 12, generator=g),
                            depth=torch.rand(2, 4, 6, generator=g) * 10,
                            flow=torch.randn(2, 2, 4, 6, generator=g),
                            bev_pred=np.ones((5, 5, 3)), bev_gt=np.zeros((5, 5, 3)),
                            arrows=(np.array([[1.0, 1.0]]), np.array([[1.0, 0.0]])),
                            novel_depth=torch.rand(4, 6, generator=g) + 1, title="t")
    assert out.stat().st_size > 1000


def test_depth_colours_robust_to_a_few_near_pixels():
    d = torch.full((20, 20), 30.0)
    d[:10] = 10.0
    d[0, 0] = 0.2                                    # one pixel almost on the camera
    d[19, :] = 0.01                                  # sky: opacity ~0, depth ~0 -> none
    rgb = depth_to_rgb(d)
    assert rgb[5, 5].sum() > rgb[15, 15].sum() + 0.3     # 10 m still clearly brighter than 30 m
    assert np.all(rgb[19] == 0)
