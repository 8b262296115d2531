from dataclasses import replace

import pytest
import torch

from occflow_data import collate_samples
from occflow_train import STAGE1_TERMS, STAGE2_TERMS, LossConfig, RenderConfig, SceneField, compute_losses
from volrender import GridSpec

SCENE_GRID = GridSpec((-8.0, -8.0, -1.0), (8.0, 8.0, 3.0), (32, 32, 8))  # conftest.SCENE_GRID
RENDER = RenderConfig(rays_per_camera=(12, 16), n_samples=48, lidar_rays=256, backend="torch",
                      lidar_origin=(0.0, 0.0, 1.8))


def _losses(scene, sample, stage, sdf_shift=0.0, flow=None, config=None):
    sdf = scene.sdf_grid(SCENE_GRID) + sdf_shift
    flow = torch.zeros(1, 2, *SCENE_GRID.vertex_shape) if flow is None else flow
    field = SceneField(sdf, flow, SCENE_GRID)
    return compute_losses(field, sample, stage, config, RENDER, inv_s=50.0,
                          generator=torch.Generator().manual_seed(0))


def test_stage_terms_and_total(scene, scene_sample, scene_grid):
    assert scene_grid == SCENE_GRID
    cfg = LossConfig()
    l1 = _losses(scene, scene_sample, 1, config=cfg)
    assert not set(l1) & set(STAGE2_TERMS)
    l2 = _losses(scene, scene_sample, 2, config=cfg)
    assert {"flow", "flow_aux", "static_flow", "flow_smoothness", "gamma", "reprojection"} <= set(l2)
    assert {"reprojection", "eikonal", "hessian", "lidar", "depth_smoothness", "sparsity_grid",
            "sparsity_behind"} <= set(l1)
    for losses, stage in ((l1, 1), (l2, 2)):
        expected = sum(w * losses[k] for k, w in cfg.weights(stage).items() if k in losses)
        assert losses["total"].item() == pytest.approx(float(expected), rel=1e-5)
        assert all(torch.isfinite(v) for v in losses.values())
    assert set(l1) - {"total"} <= set(STAGE1_TERMS)
    zero_lidar = _losses(scene, scene_sample, 1, config=LossConfig(lidar=0.0))
    assert "lidar" not in zero_lidar


def test_lidar_returns_beyond_the_grid_clear_its_far_end(scene_cls):
    open_yard = scene_cls(wall=10.0)            # walls outside the grid: those LiDAR returns lie beyond it
    sample = open_yard.sample()
    assert (~SCENE_GRID.contains(sample.current.lidar[None])).sum() > 100
    config, render = LossConfig(lidar_free_space=1.0), replace(RENDER, lidar_free_rays=256)
    flow = torch.zeros(1, 2, *SCENE_GRID.vertex_shape)
    found = {}
    for name, sdf in (("true", open_yard.sdf_grid(SCENE_GRID)), ("walled", scene_cls().sdf_grid(SCENE_GRID))):
        sdf = sdf.clone().requires_grad_(True)
        losses = compute_losses(SceneField(sdf, flow, SCENE_GRID), sample, 1, config, render, inv_s=50.0,
                                generator=torch.Generator().manual_seed(0))
        losses["lidar_free_space"].backward()
        found[name] = (losses["lidar_free_space"].item(), sdf.grad.abs().sum().item())
    assert found["true"][0] < 0.02                  # nothing in the way inside the grid
    assert found["walled"][0] > 0.5                 # walls at 7 m stop the rays that reach 10 m
    assert found["walled"][1] > 0
    # a thin cylindrical shell 3 m around the sensor blocks every ray, unless scoring starts at 4 m
    radius = SCENE_GRID.points("vertex")[..., :2].norm(dim=-1)          # the sensor is at x = y = 0
    shell = torch.minimum(open_yard.sdf_grid(SCENE_GRID), ((radius - 3.0).abs() - 0.3)[None, None])
    for near, expected in ((0.0, (0.5, 1.0)), (4.0, (0.0, 0.02))):
        value = compute_losses(SceneField(shell, flow, SCENE_GRID), sample, 1, config,
                               replace(render, lidar_free_near=near), inv_s=50.0,
                               generator=torch.Generator().manual_seed(0))["lidar_free_space"].item()
        assert expected[0] <= value <= expected[1], (near, value)
    off = compute_losses(SceneField(scene_cls().sdf_grid(SCENE_GRID), flow, SCENE_GRID), sample, 1,
                         LossConfig(), render, inv_s=50.0, generator=torch.Generator().manual_seed(0))
    assert "lidar_free_space" not in off           # weight 0 by default (the released setting)


def test_true_geometry_beats_shifted_geometry(scene, scene_sample):
    true = _losses(scene, scene_sample, 2, flow=scene.flow_grid(SCENE_GRID))
    for shift in (-0.4, 0.4):
        wrong = _losses(scene, scene_sample, 2, sdf_shift=shift, flow=scene.flow_grid(SCENE_GRID))
        assert wrong["lidar"] > 3 * true["lidar"]
        assert wrong["flow_aux"] > 2 * true["flow_aux"]


def test_true_flow_beats_zero_and_reversed_flow(scene, scene_sample):
    gt = _losses(scene, scene_sample, 2, flow=scene.flow_grid(SCENE_GRID))
    zero = _losses(scene, scene_sample, 2)
    wrong = _losses(scene, scene_sample, 2, flow=-scene.flow_grid(SCENE_GRID))
    assert gt["dynamic_fraction"] > 0.02
    assert zero["flow"] > 5 * gt["flow"] and wrong["flow"] > 10 * gt["flow"]
    assert zero["static_flow"] == 0 and gt["static_flow"] > 0


def test_batch_of_two_and_gradients(scene, scene_sample):
    other = scene.sample()
    batch = collate_samples([scene_sample, other])
    sdf = scene.sdf_grid(SCENE_GRID).expand(2, -1, -1, -1, -1).clone().requires_grad_(True)
    flow = scene.flow_grid(SCENE_GRID).expand(2, -1, -1, -1, -1).clone().requires_grad_(True)
    out = compute_losses(SceneField(sdf, flow, SCENE_GRID), batch, 2, None, RENDER, inv_s=50.0,
                         generator=torch.Generator().manual_seed(1))
    out["total"].backward()
    assert sdf.grad.abs().sum() > 0 and flow.grad.abs().sum() > 0
    assert sdf.grad[0].abs().sum() > 0 and sdf.grad[1].abs().sum() > 0


def test_bad_inputs(scene, scene_sample):
    field = SceneField(scene.sdf_grid(SCENE_GRID), torch.zeros(1, 2, *SCENE_GRID.vertex_shape), SCENE_GRID)
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        compute_losses(field, scene_sample, 3, render=RENDER, inv_s=50.0)
    no_cues = scene.sample()
    no_cues.current.cues = {}
    with pytest.raises(ValueError, match="stage 2 needs"):
        compute_losses(field, no_cues, 2, render=RENDER, inv_s=50.0)
    with pytest.raises(ValueError, match="batch size"):
        compute_losses(field, collate_samples([scene_sample, scene_sample]), 1, render=RENDER, inv_s=50.0)
    with pytest.raises(TypeError, match="field"):
        compute_losses(field.sdf, scene_sample, 1, render=RENDER, inv_s=50.0)
    with pytest.raises(ValueError, match="LossConfig.flow"):
        LossConfig(flow=-1.0)
    with pytest.raises(ValueError, match="rays_per_camera"):
        RenderConfig(rays_per_camera=(1, 4))


def test_eikonal_and_hessian_prefer_a_distance_field(scene, scene_sample):
    sdf = scene.sdf_grid(SCENE_GRID)
    flow = torch.zeros(1, 2, *SCENE_GRID.vertex_shape)
    cfg = LossConfig(lidar=0.0, sparsity_grid=0.0, sparsity_behind=0.0, depth_smoothness=0.0)
    out = {}
    for name, field_sdf in (("true", sdf), ("scaled", 2.5 * sdf), ("wavy", sdf + 0.3 * torch.sin(3 * sdf))):
        out[name] = compute_losses(SceneField(field_sdf, flow, SCENE_GRID), scene_sample, 1, cfg, RENDER,
                                   inv_s=50.0, generator=torch.Generator().manual_seed(0))
    assert out["scaled"]["eikonal"] > 5 * out["true"]["eikonal"]
    assert out["wavy"]["hessian"] > out["true"]["hessian"]


def test_reprojection_near_zero_for_the_true_plane_and_larger_for_wrong_depth(scene_cls):
    # A textured ground plane seen by cameras looking down, the ego car driving 0.6 m forward:
    # the true depth warps the next and the previous frames onto the current one.
    plane = scene_cls(wall=100.0, box_centre=(60.0, 60.0, 0.6), pitch=0.9)
    sample = plane.sample()
    z = SCENE_GRID.points("vertex")[..., 2][None, None]
    flow = torch.zeros(1, 2, *SCENE_GRID.vertex_shape)
    render = RenderConfig(rays_per_camera=(12, 16), n_samples=128, lidar_rays=0, backend="torch",
                          stratified=False)
    cfg = LossConfig(eikonal=0.0, hessian=0.0, depth_smoothness=0.0, sparsity_grid=0.0, sparsity_behind=0.0)
    values = {}
    for height in (0.0, 0.1, 0.25, -0.25, 0.5):
        field = SceneField(z - height, flow, SCENE_GRID)
        out = compute_losses(field, sample, 1, cfg, render, inv_s=200.0,
                             generator=torch.Generator().manual_seed(0))
        values[height] = out["reprojection"].item()
    # the floor is bilinear resampling of the 48 x 64 target images (measured 0.011; L1 alone 0.005)
    assert values[0.0] < 0.015
    for wrong in (0.25, -0.25, 0.5):
        assert values[wrong] > 2.5 * values[0.0]
    assert values[0.0] < values[0.1] < values[0.25] < values[0.5]


@pytest.mark.slow
def test_warp_and_torch_backends_agree(scene, scene_sample):
    sdf = scene.sdf_grid(SCENE_GRID) + 0.1
    results = {}
    for backend in ("torch", "warp"):
        s = sdf.clone().requires_grad_(True)
        f = scene.flow_grid(SCENE_GRID).requires_grad_(True)
        render = RenderConfig(rays_per_camera=(12, 16), n_samples=64, lidar_rays=128, backend=backend,
                              stratified=False, lidar_origin=(0.0, 0.0, 1.8))
        out = compute_losses(SceneField(s, f, SCENE_GRID), scene_sample, 2, None, render, inv_s=50.0,
                             generator=torch.Generator().manual_seed(0))
        out["total"].backward()
        results[backend] = (out, s.grad, f.grad)
    (a, ga_s, ga_f), (b, gb_s, gb_f) = results["torch"], results["warp"]
    for key in a:
        assert b[key].item() == pytest.approx(a[key].item(), rel=1e-4, abs=1e-6), key
    assert torch.allclose(ga_s, gb_s, atol=1e-6 * max(1.0, ga_s.abs().max().item()) * 10)
    assert torch.allclose(ga_f, gb_f, atol=1e-6 * max(1.0, ga_f.abs().max().item()) * 10)


def test_flow_rays_add_dynamic_rays_and_keep_the_true_flow_best(scene, scene_sample):
    import dataclasses

    render = dataclasses.replace(RENDER, flow_rays=24)
    flow = scene.flow_grid(SCENE_GRID)

    def run(r, f):
        field = SceneField(scene.sdf_grid(SCENE_GRID), f, SCENE_GRID)
        return compute_losses(field, scene_sample, 2, LossConfig(), r, inv_s=50.0,
                              generator=torch.Generator().manual_seed(0))

    plain, extra = run(RENDER, flow), run(render, flow)
    # more dynamic rays among the flow rays -> a smaller imbalance weight (eq. 11)
    assert extra["gamma"] < plain["gamma"]
    assert extra["dynamic_fraction"] == plain["dynamic_fraction"]      # the lattice's own mask
    zero, wrong = run(render, torch.zeros_like(flow)), run(render, -flow)
    assert zero["flow"] > 5 * extra["flow"] and wrong["flow"] > 8 * extra["flow"]


def test_normalized_reprojection_prefers_sharp_true_surfaces(scene, scene_sample):
    """Weight-averaged reprojection (the released form): the true geometry costs least when sharp,
    and beats the geometry shifted by 0.5 m at every sharpness. Plain weighted sums reward fog:
    the true geometry gets cheaper as the field blurs, and at inv_s 1 the shifted one is cheaper."""
    def reproj(normalize, inv_s, shift=0.0):
        field = SceneField(scene.sdf_grid(SCENE_GRID) + shift, torch.zeros(1, 2, *SCENE_GRID.vertex_shape),
                           SCENE_GRID)
        return compute_losses(field, scene_sample, 1, LossConfig(normalize_reprojection=normalize), RENDER,
                              inv_s=inv_s, generator=torch.Generator().manual_seed(0))["reprojection"].item()
    sharp, medium, soft = (reproj(True, s) for s in (200.0, 5.0, 1.0))
    assert sharp < medium < soft
    for inv_s in (200.0, 5.0, 1.0):
        assert reproj(True, inv_s) < reproj(True, inv_s, shift=0.5)
    assert reproj(False, 5.0) < reproj(False, 200.0)
    assert reproj(False, 1.0, shift=0.5) < reproj(False, 1.0)
    with pytest.raises(ValueError, match="normalize_reprojection must be a bool"):
        LossConfig(normalize_reprojection=1.0)
