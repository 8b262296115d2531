"""TemporalFusion end to end: every variant, beta = 0, identity path, gradients, batching, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from temporal_fusion import PRESETS, VARIANTS, TemporalFusion, TemporalFusionConfig, align_history

TINY = PRESETS["tiny"]  # 16 channels, box [-4, 4] x [-4, 4] x [-1, 1] m
SHAPE = (8, 8, 4)  # 1 m x 1 m x 0.5 m cells
ATTENTION = [v for v in VARIANTS if v != "concat_conv"]


def _cfg(variant: str, **kw) -> TemporalFusionConfig:
    return dataclasses.replace(TINY, variant=variant, **kw)


def _model(variant: str, seed: int = 0, **kw) -> TemporalFusion:
    torch.manual_seed(seed)
    model = TemporalFusion(_cfg(variant, **kw))
    with torch.no_grad():  # make offsets and weights depend on the features (they start at zero)
        for name, p in model.named_parameters():
            if "sampling_offsets.weight" in name or "attention_weights.weight" in name:
                p.normal_(0, 0.05)
    return model


def _inputs(b: int = 2, t: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    volumes = torch.randn(b, t, 16, *SHAPE, generator=g)
    poses = torch.eye(4).repeat(b, t - 1, 1, 1)
    angle = torch.rand(b, t - 1, generator=g) * 0.4 - 0.2
    poses[:, :, 0, 0], poses[:, :, 0, 1] = angle.cos(), -angle.sin()
    poses[:, :, 1, 0], poses[:, :, 1, 1] = angle.sin(), angle.cos()
    poses[:, :, :2, 3] = torch.randn(b, t - 1, 2, generator=g)
    return volumes, poses


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_runs_and_uses_the_history(variant):
    model = _model(variant)
    volumes, poses = _inputs()
    out = model(volumes, poses)
    assert out.shape == (2, 16, *SHAPE) and bool(torch.isfinite(out).all())
    changed = volumes.clone()
    changed[:, 0] += 1.0  # the oldest frame
    assert not torch.allclose(model(changed, poses), out, atol=1e-5)
    # A list of per-frame volumes is the same input.
    torch.testing.assert_close(model(list(volumes.unbind(1)), poses), out, atol=0, rtol=0)


@pytest.mark.parametrize("variant", ATTENTION)
def test_beta_zero_ignores_history(variant):
    model = _model(variant, beta_init=0.0)
    volumes, poses = _inputs()
    out = model(volumes, poses)
    current = volumes[:, -1]
    # BFAM returns the current frame's maps untouched, so the result is eq. 6 applied to the
    # current frame's own volume and global BEV.
    torch.testing.assert_close(out, model.merge(current, current.mean(-1)), atol=1e-6, rtol=1e-6)
    other = volumes.clone()
    other[:, :-1] = torch.randn(other[:, :-1].shape, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(model(other, poses.flip(1)), out, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_history_is_identity(variant):
    model = _model(variant)
    volumes, _ = _inputs(t=1)
    assert torch.equal(model(volumes), volumes[:, 0])
    assert torch.equal(model(volumes, torch.zeros(2, 0, 4, 4)), volumes[:, 0])
    empty = TemporalFusion(_cfg(variant, num_history=0))
    assert sum(p.numel() for p in empty.parameters()) == 0
    assert torch.equal(empty(volumes), volumes[:, 0])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("history_grad", [False, True])
def test_gradients_reach_all_parameters(variant, history_grad):
    model = _model(variant, history_grad=history_grad)
    volumes, poses = _inputs()
    volumes.requires_grad_(True)
    target = torch.randn(2, 16, *SHAPE, generator=torch.Generator().manual_seed(5))
    ((model(volumes, poses) - target) ** 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert torch.count_nonzero(p.grad) > 0, f"no gradient reaches {name}"
    assert torch.count_nonzero(volumes.grad[:, -1]) > 0
    history_grad_norm = volumes.grad[:, :-1].abs().sum()
    assert (history_grad_norm > 0) == history_grad


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_equals_one_by_one(variant):
    model = _model(variant)
    if variant == "concat_conv":
        model.eval()  # BatchNorm in training mode mixes the batch on purpose
    volumes, poses = _inputs(b=3)
    out = model(volumes, poses)
    for b in range(3):
        one = model(volumes[b:b + 1], poses[b:b + 1])
        torch.testing.assert_close(one, out[b:b + 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fusion_aligns_history_before_fusing(variant):
    model = _model(variant).eval()
    volumes, poses = _inputs()
    aligned, _ = align_history(volumes[:, :-1], poses, TINY.lower, TINY.upper)
    prealigned = torch.cat([aligned, volumes[:, -1:]], dim=1)
    identity = torch.eye(4).repeat(2, 2, 1, 1)
    torch.testing.assert_close(model(prealigned, identity), model(volumes, poses), atol=1e-5, rtol=1e-5)


def test_fewer_history_frames_use_the_youngest_steps():
    model = _model("slices_bfam")
    volumes, poses = _inputs()
    model(volumes[:, 1:], poses[:, 1:]).sum().backward()
    used = {n for n, p in model.named_parameters() if p.grad is not None and torch.count_nonzero(p.grad)}
    assert any(n.startswith("bfam.forward_steps.0.") for n in used)
    assert any(n.startswith("bfam.backward_steps.0.") for n in used)
    assert not any(n.startswith(("bfam.forward_steps.1.", "bfam.backward_steps.1.")) for n in used)


def test_zero_invalid_masks_history_from_outside():
    volumes, poses = _inputs()
    far = poses.clone()
    far[:, :, 0, 3] = 50.0  # the history grid lies entirely outside the current one
    masked = _model("slices_bfam", zero_invalid=True)
    zeros = volumes.clone()
    zeros[:, :-1] = 0.0
    torch.testing.assert_close(masked(volumes, far), masked(zeros, far), atol=1e-6, rtol=1e-6)


def test_module_counts_match_algorithm_1():
    counts = {}
    for variant in ATTENTION:
        model = TemporalFusion(_cfg(variant, num_history=3))
        counts[variant] = len(model.bfam.forward_steps) + len(model.bfam.backward_steps)
    assert counts == {"bev_forward": 3, "bev_bfam": 6, "slices_bfam": 6}  # Q - 1 and 2 (Q - 1), Q = 4
    sizes = {v: sum(p.numel() for p in TemporalFusion(_cfg(v)).parameters()) for v in VARIANTS}
    assert sizes["bev_bfam"] == sizes["slices_bfam"] > sizes["bev_forward"]


def test_bad_inputs_raise_clear_errors():
    model = _model("slices_bfam")
    volumes, poses = _inputs()
    with pytest.raises(ValueError, match="C=16 channels"):
        model(volumes[:, :, :8], poses)
    with pytest.raises(ValueError, match=r"volumes must be \[B, T, C, X, Y, Z\]"):
        model(volumes[:, 0], poses)
    with pytest.raises(ValueError, match="at most config.num_history=2"):
        model(torch.cat([volumes, volumes[:, :1]], 1), torch.eye(4).repeat(2, 3, 1, 1))
    with pytest.raises(ValueError, match="poses must be"):
        model(volumes, None)
    with pytest.raises(ValueError, match=r"poses must be \[B=2, T-1=2, 4, 4\]"):
        model(volumes, poses[:, :1])
    with pytest.raises(ValueError, match="last row 0 0 0 1"):
        model(volumes, torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="exactly config.num_history=2"):
        _model("concat_conv")(volumes[:, 1:], poses[:, 1:])
    with pytest.raises(TypeError, match="config must be a TemporalFusionConfig"):
        TemporalFusion({"channels": 16})
    with pytest.raises(ValueError, match="variant must be one of"):
        _cfg("bev_lstm")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        _cfg("slices_bfam", num_heads=3)
    with pytest.raises(ValueError, match="num_history must be an int >= 0"):
        _cfg("slices_bfam", num_history=-1)
    with pytest.raises(ValueError, match="upper must exceed lower"):
        _cfg("slices_bfam", upper=(4.0, 4.0, -2.0))


def test_presets_are_valid_and_paper_width():
    assert set(PRESETS) >= {"letoccflow_nuscenes", "letoccflow_kitti", "tiny"}
    paper = PRESETS["letoccflow_nuscenes"]
    assert (paper.channels, paper.num_history, paper.num_heads, paper.num_points) == (192, 2, 6, 8)
    assert paper.variant == "slices_bfam" and paper.padding_mode == "border" and not paper.history_grad


@pytest.mark.cuda
@pytest.mark.parametrize("variant", VARIANTS)
def test_cuda_matches_cpu(variant):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = _model(variant).eval()
    volumes, poses = _inputs()
    expected = model(volumes, poses)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 convs differ by ~1e-3
        out = model.cuda()(volumes.cuda(), poses.cuda())
    torch.testing.assert_close(out.cpu(), expected, atol=1e-4, rtol=1e-4)


def test_checkpointing_changes_nothing_but_memory():
    volumes, poses = _inputs()
    grads = []
    for ckpt in (False, True):
        model = _model("slices_bfam", checkpoint=ckpt, checkpoint_chunk=3)
        out = model(volumes, poses)
        out.square().mean().backward()
        grads.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (o0, g0), (o1, g1) = grads
    torch.testing.assert_close(o1, o0, atol=1e-6, rtol=1e-6)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_float64_gradcheck_through_alignment_attention_and_merge():
    cfg = TemporalFusionConfig(channels=2, num_history=1, num_heads=1, num_points=2, history_grad=True,
                               lower=(-1.5, -1.5, -0.5), upper=(1.5, 1.5, 0.5))
    torch.manual_seed(0)
    model = TemporalFusion(cfg).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "sampling_offsets" in name or "attention_weights.weight" in name:
                p.add_(torch.randn_like(p) * 0.3)  # generic, off-grid sampling points
    g = torch.Generator().manual_seed(1)
    volumes = torch.randn(1, 2, 2, 3, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    pose = torch.eye(4, dtype=torch.float64)[None, None].clone()
    pose[0, 0, :2, 3] = torch.tensor([0.37, -0.21], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: model(v, pose), (volumes,), atol=1e-6)
