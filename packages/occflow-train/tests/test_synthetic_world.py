"""Integration with the real readers: the synthetic nuScenes-layout world -> model -> losses."""

import pytest
import torch

from occflow_data import ImageConfig, NuScenesSequences, SequenceConfig, collate_samples
from occflow_train import LossConfig, OccFlowModel, RenderConfig, compute_losses


@pytest.mark.slow
def test_synthetic_world_batch_through_model_and_stage1_losses():
    from occflow_data.synth import default_world

    root = default_world(progress=False)            # generated once into the cache (about 2 minutes)
    image = ImageConfig(input_scale=1.0, input_size=(96, 192), loss_scale=1.0, loss_size=(96, 192))
    ds = NuScenesSequences(root, "mini_train", SequenceConfig(image=image), version="v1.0-mini")
    batch = collate_samples([ds[3], ds[5]])
    torch.manual_seed(0)
    model = OccFlowModel("synthetic-cpu")
    field = model(batch)
    assert field.sdf.shape == (2, 1, 81, 81, 9)
    render = RenderConfig(rays_per_camera=(8, 16), n_samples=48, lidar_rays=256)   # LiDAR origin: LIDAR_TOP
    losses = compute_losses(field, batch, 1, LossConfig(), render, inv_s=model.inv_s(),
                            generator=torch.Generator().manual_seed(0))
    assert {"reprojection", "lidar", "eikonal", "hessian"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
