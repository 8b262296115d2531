"""GPU checks (skipped without CUDA): the losses agree across backends and devices."""

import pytest
import torch

from occflow_data import collate_samples
from occflow_train import LossConfig, RenderConfig, SceneField, compute_losses
from volrender import GridSpec

GRID = GridSpec((-8.0, -8.0, -1.0), (8.0, 8.0, 3.0), (32, 32, 8))     # conftest.SCENE_GRID


@pytest.mark.cuda
def test_compute_losses_cuda_warp_matches_cpu_torch(scene):
    batch = collate_samples([scene.sample(), scene.sample()])
    sdf = (scene.sdf_grid(GRID) + 0.1).expand(2, -1, -1, -1, -1).contiguous()
    flow = scene.flow_grid(GRID).expand(2, -1, -1, -1, -1).contiguous()
    results = {}
    for device, backend in (("cpu", "torch"), ("cuda", "warp")):
        s = sdf.to(device).requires_grad_(True)
        f = flow.to(device).requires_grad_(True)
        render = RenderConfig(rays_per_camera=(12, 16), n_samples=64, lidar_rays=128, backend=backend,
                              stratified=False, lidar_origin=(0.0, 0.0, 1.8))
        out = compute_losses(SceneField(s, f, GRID), batch.to(device), 2, LossConfig(), render, inv_s=50.0,
                             generator=torch.Generator().manual_seed(0))
        out["total"].backward()
        results[device] = ({k: v.item() for k, v in out.items()}, s.grad.cpu(), f.grad.cpu())
    (a, ga_s, ga_f), (b, gb_s, gb_f) = results["cpu"], results["cuda"]
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-5), key
    assert torch.allclose(ga_s, gb_s, rtol=1e-3, atol=1e-5 * ga_s.abs().max().item())
    assert torch.allclose(ga_f, gb_f, rtol=1e-3, atol=1e-5 * ga_f.abs().max().item())
