import pytest
import torch

from tpv_encoder import MultiScaleDeformableAttention, ms_deform_attn
from tpv_encoder._reference import ms_deform_attn_reference

SHAPES = torch.tensor([[5, 7], [3, 4], [1, 2]])


def _inputs(gen, B=2, Q=3, heads=2, D=3, P=2, dtype=torch.float64, shapes=SHAPES):
    S = int((shapes[:, 0] * shapes[:, 1]).sum())
    L = shapes.shape[0]
    value = torch.randn(B, S, heads, D, generator=gen, dtype=dtype)
    # Locations partly outside [0, 1] to exercise the zero padding.
    loc = torch.rand(B, Q, heads, L, P, 2, generator=gen, dtype=dtype) * 1.4 - 0.2
    w = torch.rand(B, Q, heads, L, P, generator=gen, dtype=dtype)
    return value, loc, w


def test_values_match_naive_reference():
    gen = torch.Generator().manual_seed(0)
    value, loc, w = _inputs(gen)
    out = ms_deform_attn(value, SHAPES, loc, w)
    ref = ms_deform_attn_reference(value, SHAPES, loc, w)
    assert out.shape == (2, 3, 6)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_gradients_match_naive_reference():
    gen = torch.Generator().manual_seed(1)
    value, loc, w = _inputs(gen)
    grad_out = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    grads = []
    for fn in (ms_deform_attn, ms_deform_attn_reference):
        args = [t.clone().requires_grad_(True) for t in (value, loc, w)]
        (fn(args[0], SHAPES, args[1], args[2]) * grad_out).sum().backward()
        grads.append([a.grad for a in args])
    for g, r in zip(*grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9)
    assert grads[0][1].abs().sum() > 0  # locations do receive gradient


def test_gradcheck_tiny():
    gen = torch.Generator().manual_seed(2)
    shapes = torch.tensor([[3, 4], [2, 2]])
    value, loc, w = _inputs(gen, B=1, Q=2, heads=1, D=2, P=2, shapes=shapes)
    args = [t.requires_grad_(True) for t in (value, loc, w)]
    assert torch.autograd.gradcheck(lambda v, l, a: ms_deform_attn(v, shapes, l, a), args)


def test_pixel_centre_reads_that_pixel_and_outside_reads_zero():
    value = torch.arange(12.0).reshape(1, 12, 1, 1)  # one level 3 x 4, pixel (i, j) = 4 i + j
    shapes = torch.tensor([[3, 4]])
    loc = torch.tensor([[(2 + 0.5) / 4, (1 + 0.5) / 3], [1.6, 0.5]]).reshape(1, 2, 1, 1, 1, 2)
    out = ms_deform_attn(value, shapes, loc, torch.ones(1, 2, 1, 1, 1))
    assert out[0, 0, 0].item() == pytest.approx(6.0)
    assert out[0, 1, 0].item() == 0.0


@pytest.mark.parametrize("case", ["value_dim", "shapes_sum", "loc_shape", "weights_shape", "shapes_dtype",
                                  "not_tensor", "int_weights"])
def test_bad_inputs_raise(case):
    gen = torch.Generator().manual_seed(3)
    value, loc, w = _inputs(gen, dtype=torch.float32)
    shapes = SHAPES
    err = ValueError
    if case == "value_dim":
        value = value[0]
    elif case == "shapes_sum":
        shapes = torch.tensor([[5, 7], [3, 4], [1, 3]])
    elif case == "loc_shape":
        loc = loc[..., :1]
    elif case == "weights_shape":
        w = w[..., :1]
    elif case == "shapes_dtype":
        shapes = SHAPES.float()
    elif case == "not_tensor":
        value, err = value.tolist(), TypeError
    elif case == "int_weights":
        w = w.long()
    with pytest.raises(err):
        ms_deform_attn(value, shapes, loc, w)


def _module(dtype=torch.float64, **kw):
    torch.manual_seed(0)
    args = dict(embed_dim=4, num_heads=2, num_levels=2, num_points=2) | kw
    return MultiScaleDeformableAttention(**args).to(dtype)


def test_module_shapes_and_uniform_init():
    m = _module(dtype=torch.float32)
    gen = torch.Generator().manual_seed(4)
    shapes = torch.tensor([[4, 6], [2, 3]])
    q = torch.randn(2, 5, 4, generator=gen)
    v = torch.randn(2, 30, 4, generator=gen)
    ref = torch.rand(2, 5, 2, 2, generator=gen)
    out = m(q, v, ref, shapes)
    assert out.shape == (2, 5, 4)
    assert torch.count_nonzero(m.attention_weights.weight) == 0
    # Offsets at init: head 0 points along +x with point k at k + 1 cells.
    b = m.sampling_offsets.bias.reshape(2, 2, 2, 2)
    torch.testing.assert_close(b[0, 0], torch.tensor([[1.0, 0.0], [2.0, 0.0]]))


def test_module_offsets_are_in_cells_of_each_level():
    """Zero offset weights and a bias of one cell in +x: the module reads the right neighbour."""
    m = _module(num_heads=1, num_levels=1, num_points=1, embed_dim=2)
    with torch.no_grad():
        for lin in (m.value_proj, m.output_proj):
            lin.weight.copy_(torch.eye(2, dtype=torch.float64))
            lin.bias.zero_()
        m.sampling_offsets.bias.copy_(torch.tensor([1.0, 0.0], dtype=torch.float64))
    shapes = torch.tensor([[3, 5]])
    gen = torch.Generator().manual_seed(5)
    v = torch.randn(1, 15, 2, generator=gen, dtype=torch.float64)
    q = torch.randn(1, 1, 2, generator=gen, dtype=torch.float64)
    # Reference at the centre of pixel (row 1, col 2): the sample lands on pixel (1, 3).
    ref = torch.tensor([(2 + 0.5) / 5, (1 + 0.5) / 3], dtype=torch.float64).reshape(1, 1, 1, 2)
    out = m(q, v, ref, shapes)
    torch.testing.assert_close(out[0, 0], v[0, 1 * 5 + 3])


def test_module_point_mask_ignores_masked_anchor():
    m = _module(num_points=4)
    gen = torch.Generator().manual_seed(6)
    shapes = torch.tensor([[4, 6], [2, 3]])
    q = torch.randn(1, 3, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(1, 30, 4, generator=gen, dtype=torch.float64)
    ref = torch.rand(1, 3, 2, 2, 2, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[[True, False], [True, True], [False, False]]])
    out1 = m(q, v, ref, shapes, point_mask=mask)
    ref2 = ref.clone()
    ref2[0, 0, :, 1] = torch.rand(2, 2, generator=gen, dtype=torch.float64)  # move the masked anchor
    out2 = m(q, v, ref2, shapes, point_mask=mask)
    torch.testing.assert_close(out1[0, 0], out2[0, 0])
    torch.testing.assert_close(out1[0, 2], m.output_proj.bias)  # all anchors masked
    assert not torch.allclose(m(q, v, ref2, shapes)[0, 0], out1[0, 0])


def test_module_value_mask_zeroes_values():
    m = _module()
    gen = torch.Generator().manual_seed(7)
    shapes = torch.tensor([[4, 6], [2, 3]])
    q = torch.randn(1, 3, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(1, 30, 4, generator=gen, dtype=torch.float64)
    ref = torch.rand(1, 3, 2, 2, generator=gen, dtype=torch.float64)
    mask = torch.zeros(1, 30, dtype=torch.bool)
    torch.testing.assert_close(m(q, v, ref, shapes, value_mask=mask), m.output_proj.bias.expand(1, 3, 4))


def test_module_bad_inputs():
    m = _module(dtype=torch.float32)
    shapes = torch.tensor([[4, 6], [2, 3]])
    q, v, ref = torch.zeros(1, 3, 4), torch.zeros(1, 30, 4), torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match="query"):
        m(torch.zeros(1, 3, 5), v, ref, shapes)
    with pytest.raises(ValueError, match="reference_points"):
        m(q, v, torch.zeros(1, 3, 3, 2), shapes)
    with pytest.raises(ValueError, match="num_levels"):
        m(q, v, ref, shapes[:1])
    with pytest.raises(ValueError, match="divisible"):
        MultiScaleDeformableAttention(6, 4, 1, 1)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_gradient_of_one_input_only(which):
    """The recomputing backward handles inputs that do not need gradients."""
    gen = torch.Generator().manual_seed(8)
    inputs = _inputs(gen)
    grad_out = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    grads = []
    for fn in (ms_deform_attn, ms_deform_attn_reference):
        args = [t.clone().requires_grad_(i == which) for i, t in enumerate(inputs)]
        (fn(args[0], SHAPES, args[1], args[2]) * grad_out).sum().backward()
        assert all(a.grad is None for i, a in enumerate(args) if i != which)
        grads.append(args[which].grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)


def test_mixed_dtypes_promote():
    gen = torch.Generator().manual_seed(9)
    value, loc, w = _inputs(gen, dtype=torch.float32)
    out = ms_deform_attn(value.bfloat16(), SHAPES, loc, w)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ms_deform_attn(value.bfloat16().float(), SHAPES, loc, w))


def test_module_under_cpu_autocast_bf16():
    m = _module(dtype=torch.float32)
    gen = torch.Generator().manual_seed(10)
    shapes = torch.tensor([[4, 6], [2, 3]])
    q = torch.randn(1, 3, 4, generator=gen, requires_grad=True)
    v = torch.randn(1, 30, 4, generator=gen, requires_grad=True)
    ref = torch.rand(1, 3, 2, 2, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(q, v, ref, shapes)
    out.float().sum().backward()
    ref_out = m(q, v, ref, shapes)
    torch.testing.assert_close(out.float(), ref_out, rtol=0.05, atol=0.05)
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
