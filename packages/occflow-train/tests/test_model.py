import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from occflow_data import Frame, Sample, collate_samples
from occflow_train import (
    MODEL_PRESETS,
    HeadConfig,
    OccFlowModel,
    PointwiseMLP,
    Refine3D,
    RefineConfig,
    SceneField,
    cells_to_vertices,
    count_parameters,
    flow_head,
    occupancy_from_sdf,
    sdf_head,
)
from volrender import GridSpec


def _rig(n, H, W):
    r0 = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    c2e = []
    for i in range(n):
        a = 2 * math.pi * i / n
        m = torch.eye(4)
        c, s = math.cos(a), math.sin(a)
        rz = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        m[:3, :3] = rz @ r0
        m[:3, 3] = torch.tensor([math.cos(a), math.sin(a), 1.6])
        c2e.append(m)
    f = W / 2 / math.tan(0.8)
    K = torch.tensor([[f, 0.0, W / 2], [0.0, f, H / 2], [0.0, 0.0, 1.0]]).expand(n, 3, 3).clone()
    return K, torch.stack(c2e)


def _sample(g, n=2, H=64, W=96, history=2):
    K, c2e = _rig(n, H, W)

    def frame(x):
        pose = torch.eye(4, dtype=torch.float64)
        pose[0, 3] = x
        return Frame(images=torch.rand(n, 3, H, W, generator=g), intrinsics=K, cam_to_ego=c2e,
                     ego_to_global=pose, timestamp=x)
    return Sample(current=frame(0.0), history=[frame(-2.0 + i) for i in range(history)])


def _small_config():
    base = MODEL_PRESETS["synthetic-cpu"]
    enc = replace(base.encoder, cells=(12, 12, 4), image_size=(64, 96))
    return replace(base, encoder=enc, fusion=replace(base.fusion, num_history=2),
                   refine=RefineConfig(blocks=(1, 1, 1), channels=(32, 32, 32), strides=(1, 2, 2),
                                       fpn_channels=16, out_channels=8, upsample=2),
                   heads=HeadConfig(hidden=16))


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return OccFlowModel(_small_config())


def test_model_forward_batch_of_two_and_gradients(small_model):
    g = torch.Generator().manual_seed(0)
    cfg = _small_config()
    model = small_model
    model.zero_grad()
    batch = collate_samples([_sample(g, history=1), _sample(g, history=1)])
    field = model(batch)
    assert isinstance(field, SceneField)
    assert field.grid == cfg.grid and cfg.grid.cells == (24, 24, 8)
    assert field.sdf.shape == (2, 1, 25, 25, 9) and field.flow.shape == (2, 2, 25, 25, 9)
    assert field.flow.abs().max() < 0.1                    # the flow head starts near zero
    assert not torch.allclose(field.sdf[0], field.sdf[1])  # the two scenes differ
    (field.sdf.square().mean() + field.flow.square().mean() + model.inv_s().sum()).backward()
    for name in ("encoder", "fusion", "refine", "sdf_head", "flow_head"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(gr is not None and gr.abs().sum() > 0 for gr in grads), name
    assert model.deviation.grad is not None
    assert model.inv_s().item() == pytest.approx(math.exp(1.0), rel=1e-6)
    assert model.encoder.training                           # history encoding restores the mode


def test_model_accepts_a_sample_and_no_history(small_model):
    g = torch.Generator().manual_seed(1)
    model = small_model.eval()
    try:
        with torch.no_grad():
            a = model(_sample(g, history=0))
    finally:
        model.train()
    assert a.sdf.shape[0] == 1
    with pytest.raises(TypeError, match="Batch or Sample"):
        model({"images": None})


def test_history_volumes_get_no_gradient(small_model):
    g = torch.Generator().manual_seed(2)
    model = small_model
    batch = collate_samples([_sample(g)])
    hist = model.encode_history(batch.history)
    assert all(not v.requires_grad for v in hist)


def test_refine_shapes_and_odd_sizes():
    torch.manual_seed(0)
    m = Refine3D(8, blocks=(1, 1, 1), channels=(8, 16, 16), strides=(1, 2, 2), fpn_channels=8, out_channels=4,
                 upsample=2)
    for size in ((6, 6, 4), (5, 7, 3)):
        out = m(torch.randn(2, 8, *size))
        assert out.shape == (2, 4, *(2 * s for s in size))
    with pytest.raises(ValueError, match="same length"):
        Refine3D(8, blocks=(1, 2), channels=(8,), strides=(1,))


def test_cells_to_vertices_linear_interior():
    x = torch.arange(6.0)[:, None, None] * 2 + torch.arange(5.0)[None, :, None]
    x = x - torch.arange(4.0)[None, None, :]
    v = cells_to_vertices(x[None, None])
    assert v.shape == (1, 1, 7, 6, 5)
    # an interior vertex (i, j, k) lies halfway between cells i-1, i (etc.)
    assert v[0, 0, 3, 2, 2].item() == pytest.approx(2 * 2.5 + 1.5 - 1.5)


def test_heads_layout_and_init():
    torch.manual_seed(0)
    fh = flow_head(96, 96)
    last = fh.net[-1]
    assert last.bias.abs().max() == 0
    assert 0.005 < last.weight.std().item() < 0.015
    linears = [m for m in fh.net if isinstance(m, nn.Conv3d)]
    assert len(linears) == 3 and all(isinstance(m, nn.Softplus) for m in fh.net[::2])
    sh = sdf_head(96, 96)
    assert [type(m).__name__ for m in sh.net] == ["Softplus", "Conv3d", "Softplus", "Conv3d"]
    # pointwise: equals the MLP applied to one voxel's feature vector
    mlp = PointwiseMLP(5, 7, 3, hidden_layers=2)
    vol = torch.randn(1, 5, 2, 3, 4)
    out = mlp(vol)
    feat = vol[0, :, 1, 2, 3]
    h = feat
    for m in mlp.net:
        if isinstance(m, nn.Softplus):
            h = torch.nn.functional.softplus(h)
        else:
            h = m.weight[:, :, 0, 0, 0] @ h + m.bias
    assert torch.allclose(out[0, :, 1, 2, 3], h, atol=1e-6)


def test_presets_and_config_validation():
    assert set(MODEL_PRESETS) == {"nuscenes", "kitti", "synthetic-cpu"}
    assert MODEL_PRESETS["nuscenes"].grid.vertex_shape == (201, 201, 21)
    assert MODEL_PRESETS["kitti"].grid.voxel_size == (0.2, 0.2, 0.2)
    base = MODEL_PRESETS["synthetic-cpu"]
    with pytest.raises(ValueError, match="fusion.channels"):
        replace(base, fusion=replace(base.fusion, channels=16, num_heads=2))
    with pytest.raises(ValueError, match="box"):
        replace(base, fusion=replace(base.fusion, lower=(-10.0, -10.0, -1.0)))
    with pytest.raises(ValueError, match="unknown model preset"):
        OccFlowModel("nope")
    with pytest.raises(ValueError, match="RefineConfig"):
        RefineConfig(blocks=(1,), channels=(8, 8), strides=(1, 2))


def test_count_parameters_synthetic_cpu():
    counts = count_parameters(OccFlowModel("synthetic-cpu"))
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total") + 1   # + deviation
    assert 1e6 < counts["total"] < 1e7


@pytest.mark.slow
def test_count_parameters_paper_presets():
    counts = count_parameters(OccFlowModel("nuscenes"))
    r = RefineConfig()
    assert counts["sdf_head"] == 96 * 96 + 96 + 96 + 1
    assert counts["flow_head"] == 2 * (96 * 96 + 96) + 96 * 2 + 2
    assert counts["refine"] > 27 * r.channels[-1] ** 2 * 2 * r.blocks[-1]  # the 768-channel stage dominates
    assert counts["total"] > 2e8


def test_model_to_losses_end_to_end(scene):
    """OccFlowModel -> SceneField -> compute_losses (stage 2) -> gradients in every module."""
    from occflow_train import LossConfig, RenderConfig, compute_losses

    base = _small_config()
    box = {"lower": (-8.0, -8.0, -1.0), "upper": (8.0, 8.0, 3.0)}
    cfg = replace(base, encoder=replace(base.encoder, cells=(16, 16, 4), image_size=scene.size, **box),
                  fusion=replace(base.fusion, **box))
    assert cfg.grid == GridSpec(box["lower"], box["upper"], (32, 32, 8))
    torch.manual_seed(0)
    model = OccFlowModel(cfg)
    batch = collate_samples([scene.sample(history=1), scene.sample(history=1)])
    field = model(batch)
    render = RenderConfig(rays_per_camera=(6, 8), n_samples=32, lidar_rays=64, backend="torch",
                          lidar_origin=(0.0, 0.0, 1.8))
    losses = compute_losses(field, batch, 2, LossConfig(), render, inv_s=model.inv_s(),
                            generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(losses["total"])
    losses["total"].backward()
    for name in ("encoder", "refine", "sdf_head", "flow_head"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert model.deviation.grad is not None and model.deviation.grad.abs() > 0


def test_ground_prior_makes_the_untrained_model_flat_ground():
    cfg = _small_config()
    with_prior = OccFlowModel(replace(cfg, heads=replace(cfg.heads, ground_prior=0.0))).eval()
    without = OccFlowModel(cfg).eval()
    without.load_state_dict(with_prior.state_dict())        # same weights: the prior is no parameter
    assert "ground_sdf" not in with_prior.state_dict()
    assert MODEL_PRESETS["synthetic-cpu"].heads.ground_prior == 0.0
    sample = _sample(torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = with_prior(sample), without(sample)
    z = with_prior.grid.points("vertex")[..., 2]
    torch.testing.assert_close(a.sdf - b.sdf, z[None, None].expand_as(a.sdf), rtol=0, atol=1e-5)
    torch.testing.assert_close(a.flow, b.flow)
    occ = occupancy_from_sdf(z[None, None], with_prior.grid, border=0)[0]   # the prior alone
    zc = with_prior.grid.points("cell")[0, 0, :, 2]
    assert bool(occ[:, :, zc < 0].all()) and not bool(occ[:, :, zc > 0.5].any())
