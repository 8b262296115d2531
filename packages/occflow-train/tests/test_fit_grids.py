"""The losses and the renderer carry the signal: fit raw SDF and flow vertex grids (no network)
to the analytic scene with torch.optim and measure depth and object motion against ground truth."""

import pytest
import torch

import volrender
from occflow_data import collate_samples
from occflow_train import LossConfig, RenderConfig, SceneField, compute_losses, sample_camera_rays
from volrender import GridSpec

GRID = GridSpec((-8.0, -8.0, -1.0), (8.0, 8.0, 3.0), (32, 32, 8))     # conftest.SCENE_GRID


def _fit(scene, stage1_steps: int, stage2_steps: int, config: LossConfig, seed: int = 0):
    """Optimise the grids; return (AbsRel, box-flow EPE) before and after, against ground truth."""
    batch = collate_samples([scene.sample()])
    cur = batch.current
    # start: free space within 5 m of the car and a ground 0.6 m too low (no walls, no box)
    pts = GRID.points("vertex")
    init = torch.minimum(5.0 - pts[..., :2].norm(dim=-1), pts[..., 2] + 0.6)
    sdf = init[None, None].clone().requires_grad_(True)
    flow = torch.zeros(1, 2, *GRID.vertex_shape, requires_grad=True)
    opt = torch.optim.Adam([{"params": [sdf], "lr": 0.1}, {"params": [flow], "lr": 0.05}])
    render = RenderConfig(rays_per_camera=(10, 14), n_samples=48, lidar_rays=128, backend="torch",
                          lidar_origin=(0.0, 0.0, 1.8))

    ev = sample_camera_rays(cur.loss_intrinsics, cur.cam_to_ego, scene.size, (12, 16), random=False)
    o_w, d_w = scene.pixel_rays_world(0, ev.pixels[0])
    gt_depth, _, on_box = scene.trace(o_w, d_w, 0)
    gt_flow = torch.tensor(scene.box_step)
    assert on_box.sum() > 10

    def measure(inv_s):
        with torch.no_grad():
            o, d = ev.flat()
            out = volrender.render_rays(sdf, flow, GRID, o, d, n_samples=96, inv_s=inv_s, backend="torch")
            depth = out.depth.reshape(2, 12, 16).double()
            abs_rel = ((depth - gt_depth).abs() / gt_depth).mean().item()
            epe = (out.features.reshape(2, 12, 16, 2)[on_box] - gt_flow).norm(dim=-1).mean().item()
        return abs_rel, epe

    before = measure(20.0)
    g = torch.Generator().manual_seed(seed)
    for it in range(stage1_steps + stage2_steps):
        inv_s = min(20.0 + 0.5 * it, 80.0)
        stage = 1 if it < stage1_steps else 2
        field = SceneField(sdf, flow, GRID)
        losses = compute_losses(field, batch, stage, config, render, inv_s=inv_s, generator=g)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
    return before, measure(inv_s)


def test_fit_grids_short(scene):
    # camera + LiDAR, flow weights x10 so that 40 stage-2 steps suffice (measured: AbsRel 0.36 -> 0.14,
    # box flow EPE 0.80 -> 0.29 m per step)
    (rel0, epe0), (rel1, epe1) = _fit(scene, 40, 40, LossConfig(flow=0.05, flow_aux=0.05))
    assert epe0 == pytest.approx(0.8, abs=1e-4)          # zero flow against the box's 0.8 m step
    assert rel1 < 0.6 * rel0 and rel1 < 0.22
    assert epe1 < 0.45


@pytest.mark.slow
def test_fit_grids_camera_only_paper_weights(scene):
    # no LiDAR, the paper's loss weights (measured: AbsRel 0.36 -> 0.14, EPE 0.80 -> 0.36)
    (rel0, epe0), (rel1, epe1) = _fit(scene, 100, 80, LossConfig(lidar=0.0))
    assert rel1 < 0.65 * rel0
    assert epe1 < 0.6


@pytest.mark.slow
def test_fit_grids_long_with_lidar(scene):
    # measured: AbsRel 0.36 -> 0.12, EPE 0.80 -> 0.12
    (rel0, epe0), (rel1, epe1) = _fit(scene, 60, 80, LossConfig(flow=0.05, flow_aux=0.05))
    assert rel1 < 0.2
    assert epe1 < 0.3
