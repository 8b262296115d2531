"""Temporal deformable attention (eq. 5) and the order of operations of BFAM (Algorithm 1)."""

from __future__ import annotations

import pytest
import torch

from temporal_fusion import BackwardForwardAttention, TemporalBEVAttention, TemporalDeformableAttention


def _maps(n=2, c=4, h=5, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=torch.float64)


def _plain_attention(c: int, heads: int, points: int, offset_cells: tuple[float, float] = (0.0, 0.0)):
    """Attention with identity projections, uniform weights and every point at ``offset``.

    Its output is then (other(p + offset) + query(p + offset)) / 2 (zero outside the map).
    """
    attn = TemporalDeformableAttention(c, heads, points).double()
    with torch.no_grad():
        attn.value_proj.weight.copy_(torch.eye(c))
        attn.output_proj.weight.copy_(torch.eye(c))
        attn.sampling_offsets.weight.zero_()
        attn.sampling_offsets.bias.copy_(torch.tensor(offset_cells).repeat(2 * heads * points))
    return attn


def test_layout_zero_offsets_averages_both_frames():
    attn = _plain_attention(4, 2, 3)
    q, o = _maps(seed=0), _maps(seed=1)
    torch.testing.assert_close(attn(q, o), 0.5 * (q + o), atol=1e-12, rtol=0)


def test_offsets_are_in_cells_x_along_width_y_along_height():
    q, o = _maps(seed=0), _maps(seed=1)
    mean = 0.5 * (q + o)
    # One cell along W (the map's second axis: ego y).
    out = _plain_attention(4, 2, 3, (1.0, 0.0))(q, o)
    torch.testing.assert_close(out[..., :-1], mean[..., 1:], atol=1e-12, rtol=0)
    torch.testing.assert_close(out[..., -1], torch.zeros_like(out[..., -1]), atol=1e-12, rtol=0)
    # Two cells back along H (ego x).
    out = _plain_attention(4, 2, 3, (0.0, -2.0))(q, o)
    torch.testing.assert_close(out[:, :, 2:], mean[:, :, :-2], atol=1e-12, rtol=0)
    torch.testing.assert_close(out[:, :, :2], torch.zeros_like(out[:, :, :2]), atol=1e-12, rtol=0)


def test_attention_maps_are_independent_along_n():
    torch.manual_seed(0)
    attn = TemporalDeformableAttention(8, 2, 4).double()
    with torch.no_grad():  # make offsets and weights depend on the features
        attn.sampling_offsets.weight.normal_(0, 0.1)
        attn.attention_weights.weight.normal_(0, 0.1)
    q, o = _maps(3, 8, seed=2), _maps(3, 8, seed=3)
    out = attn(q, o)
    for i in range(3):
        torch.testing.assert_close(out[i:i + 1], attn(q[i:i + 1], o[i:i + 1]), atol=1e-12, rtol=0)
    # The result depends on the other frame.
    assert not torch.allclose(out, attn(q, o.flip(-1)))


def test_beta_zero_step_returns_query():
    step = TemporalBEVAttention(4, 2, 3, beta_init=0.0).double()
    q, o = _maps(seed=0), _maps(seed=1)
    assert torch.equal(step(q, o), q)


def _linear_bfam(num_history: int, forward_only: bool) -> tuple[BackwardForwardAttention, dict]:
    """BFAM whose steps compute q + beta * (q + o) / 2 with a distinct beta per step."""
    bfam = BackwardForwardAttention(1, 1, 1, num_history, forward_only=forward_only).double()
    betas = {}
    for kind, steps in (("f", bfam.forward_steps), ("b", bfam.backward_steps)):
        for i, step in enumerate(steps):
            plain = _plain_attention(1, 1, 1)
            step.attn.load_state_dict(plain.state_dict())
            beta = 0.1 * (i + 1) + (0.5 if kind == "b" else 0.0)
            with torch.no_grad():
                step.beta.fill_(beta)
            betas[kind, i] = beta
    return bfam, betas


def _step(beta, q, o):
    return q + beta * (q + o) / 2


def test_bfam_follows_algorithm_1_backward_then_forward():
    bfam, be = _linear_bfam(2, forward_only=False)
    b2, b1, b0 = (torch.full((1, 1, 3, 3), v, dtype=torch.float64) for v in (1.0, 10.0, 100.0))
    # Algorithm 1 unrolled for n = 3 frames (B_-2 oldest, B_0 current).
    n1 = _step(be["b", 0], b1, b0)        # backward: B_-1 from (B_-1, B_0)
    n2 = _step(be["b", 1], b2, n1)        # backward: B_-2 from (B_-2, B_-1)
    n1 = _step(be["f", 1], n1, n2)        # forward: B_-1 from (B_-1, B_-2)
    n0 = _step(be["f", 0], b0, n1)        # forward: B_0 from (B_0, B_-1)
    torch.testing.assert_close(bfam([b2, b1, b0]), n0, atol=1e-12, rtol=0)


def test_forward_only_and_fewer_frames():
    fwd, be = _linear_bfam(2, forward_only=True)
    assert len(fwd.backward_steps) == 0 and len(fwd.forward_steps) == 2
    b2, b1, b0 = (torch.full((1, 1, 3, 3), v, dtype=torch.float64) for v in (1.0, 10.0, 100.0))
    expected = _step(be["f", 0], b0, _step(be["f", 1], b1, b2))
    torch.testing.assert_close(fwd([b2, b1, b0]), expected, atol=1e-12, rtol=0)
    bfam, be = _linear_bfam(2, forward_only=False)
    # Two frames use the youngest pair's steps only.
    expected = _step(be["f", 0], b0, _step(be["b", 0], b1, b0))
    torch.testing.assert_close(bfam([b1, b0]), expected, atol=1e-12, rtol=0)
    assert torch.equal(bfam([b0]), b0)


def test_bfam_bad_inputs():
    bfam = BackwardForwardAttention(4, 2, 3, 2)
    m = torch.zeros(1, 4, 3, 3)
    with pytest.raises(ValueError, match="1 to 3 frames"):
        bfam([m] * 4)
    with pytest.raises(ValueError, match="shape of the query map"):
        bfam([torch.zeros(1, 4, 3, 4), m])
    with pytest.raises(TypeError, match="list"):
        bfam(m)
    with pytest.raises(ValueError, match="divisible"):
        TemporalDeformableAttention(6, 4, 2)
    with pytest.raises(ValueError, match="4 channels"):
        TemporalDeformableAttention(4, 2, 2)(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))


def test_initial_offsets_point_each_head_its_own_way_on_both_maps():
    attn = TemporalDeformableAttention(8, 4, 3)
    bias = attn.sampling_offsets.bias.detach().reshape(4, 2, 3, 2)  # [heads, queue, points, 2]
    assert torch.equal(bias[:, 0], bias[:, 1])
    directions = bias[:, 0, 0]
    assert len({tuple(d.tolist()) for d in directions}) == 4
    torch.testing.assert_close(bias[:, 0, 2], 3 * directions)
    assert torch.count_nonzero(attn.attention_weights.weight) == 0
