"""Flow chaining through intermediate images."""

from __future__ import annotations

import math

import pytest
import torch

import pseudolabels as pl


def _plane_depth(h, w, k, normal, dist, motion):
    """z-depth [H, W] in camera k of the plane normal . X0 = dist (camera-0 coordinates)."""
    r, t = motion[:3, :3], motion[:3, 3]
    n_k = r @ normal
    d_k = dist + n_k @ t
    grid = pl.pixel_grid(h, w).double()
    rays = torch.linalg.inv(k) @ torch.cat([grid, torch.ones(1, h, w, dtype=torch.float64)]).reshape(3, -1)
    return (d_k / (n_k @ rays)).reshape(h, w).float()


def _motion(forward, yaw_deg, side=0.0):
    a = math.radians(yaw_deg)
    r = torch.tensor(
        [[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]], dtype=torch.float64
    )
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = r.T
    m[:3, 3] = -(r.T @ torch.tensor([side, 0.0, forward], dtype=torch.float64))
    return m


def test_chain_of_rigid_flows_equals_direct_flow():
    """A tilted plane seen over 4 camera steps: chaining the exact per-step flows gives the direct flow."""
    h, w = 60, 90
    k = torch.tensor([[70.0, 0, 44.5], [0, 70.0, 29.5], [0, 0, 1]], dtype=torch.float64)
    normal = torch.tensor([0.2, -0.3, 1.0], dtype=torch.float64)
    normal = normal / normal.norm()
    dist = 12.0
    steps = [_motion(0.5, 0.8, 0.1), _motion(0.6, -0.5), _motion(0.4, 1.2, -0.1), _motion(0.5, 0.3)]
    flows, valids = [], []
    to_k = torch.eye(4, dtype=torch.float64)
    for m in steps:
        depth_k = _plane_depth(h, w, k, normal, dist, to_k)
        f, v = pl.rigid_flow(depth_k, k, m)
        flows.append(f)
        valids.append(v)
        to_k = m @ to_k
    direct, _ = pl.rigid_flow(_plane_depth(h, w, k, normal, dist, torch.eye(4, dtype=torch.float64)), k, to_k)
    chained, valid = pl.chain_flows(flows, valids)
    assert valid.float().mean() > 0.6
    err = (chained - direct).norm(dim=0)[valid]
    assert err.max() < 0.05  # bilinear lookups of a smooth field
    # pixels that leave the image at some step are invalid
    end = pl.pixel_grid(h, w) + direct
    outside = (end[0] < 0) | (end[0] > w - 1) | (end[1] < 0) | (end[1] > h - 1)
    assert not valid[outside].any()


def test_chain_translations_and_validity_propagation():
    h, w = 20, 30
    flows = [torch.zeros(2, h, w) for _ in range(3)]
    flows[0][0] = 1.5
    flows[1][1] = 2.0
    flows[2][0] = -0.5
    valids = [torch.ones(h, w, dtype=torch.bool) for _ in range(3)]
    valids[1][10, 12] = False  # reached from pixel (x=10.5.., y=10) of image 0 -> x in [10.5, 11.5]
    flow, valid = pl.chain_flows(flows, valids)
    assert torch.allclose(flow[0][valid], torch.full_like(flow[0][valid], 1.0))
    assert torch.allclose(flow[1][valid], torch.full_like(flow[1][valid], 2.0))
    # image-0 pixels whose position 1.5 px right touches the invalid pixel with non-zero weight
    assert not valid[10, 10] and not valid[10, 11] and valid[10, 9] and valid[10, 12]
    assert not valid[h - 2 :, :].any()  # pushed 2 px down out of the image


def test_chained_tracker_on_translating_texture():
    """DIS per step, chained over 3 steps of 4 px each, against the exact 12 px translation."""
    g = torch.Generator().manual_seed(3)
    big = torch.nn.functional.interpolate(
        torch.rand(1, 3, 40, 60, generator=g), size=(160, 240), mode="bicubic"
    )
    big = big[0].clamp(0, 1)
    frames = torch.stack([big[:, 20:140, 20 + 4 * i : 200 + 4 * i] for i in range(4)])  # scene moves left
    tracker = pl.ChainedFlowTracker(pl.DISFlow("medium"))
    flow, valid = tracker.track(frames)
    assert valid.float().mean() > 0.6
    err = (flow - torch.tensor([-12.0, 0.0]).view(2, 1, 1)).norm(dim=0)
    assert err[valid].mean() < 0.5
    assert isinstance(tracker, pl.KeyframeTracker)
    assert tracker.settings()["estimator"] == "opencv-dis"


def test_chain_input_validation():
    f = torch.zeros(2, 4, 5)
    v = torch.ones(4, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="same non-zero length"):
        pl.chain_flows([f], [])
    with pytest.raises(ValueError, match=r"flows\[1\]: expected shape"):
        pl.chain_flows([f, torch.zeros(2, 4, 6)], [v, v])
    with pytest.raises(ValueError, match=r"valids\[0\]: expected dtype torch.bool"):
        pl.chain_flows([f], [v.float()])
    with pytest.raises(ValueError, match="images"):
        pl.ChainedFlowTracker(pl.DISFlow("ultrafast")).track(torch.zeros(1, 3, 4, 5))
    with pytest.raises(TypeError, match="estimator"):
        pl.ChainedFlowTracker(object())
