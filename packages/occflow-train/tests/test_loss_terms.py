import pytest
import torch

from occflow_train import (
    dssim,
    dynamic_mask,
    edge_aware_smoothness,
    flow_loss,
    flow_target_valid,
    free_space_loss,
    imbalance_weight,
    normalize_by_opacity,
    photometric_error,
    reprojection_loss,
    sample_vertex_field,
    silog_loss,
    sparsity_behind_surface,
    sparsity_grid,
    static_flow_regularization,
)
from volrender import GridSpec


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_dssim_zero_for_equal_images_and_symmetric():
    x = torch.rand(2, 3, 8, 10, generator=_gen())
    y = torch.rand(2, 3, 8, 10, generator=_gen(1))
    assert dssim(x, x).abs().max() < 1e-4
    assert dssim(x, y).mean() > 0.1
    assert torch.allclose(dssim(x, y), dssim(y, x), atol=1e-6)
    with pytest.raises(ValueError, match="y must have shape"):
        dssim(x, y[..., :5])


def test_photometric_error_mix():
    x = torch.rand(1, 3, 6, 6, generator=_gen())
    y = (x + 0.1).clamp(0, 1)
    l1 = torch.full((1, 6, 6), 0.5)
    e = photometric_error(x, y, l1, ssim_weight=0.0)
    assert torch.allclose(e, l1)
    assert photometric_error(x, x).abs().max() < 1e-4
    with pytest.raises(ValueError, match="ssim_weight"):
        photometric_error(x, y, ssim_weight=2.0)


def _ray_image(seed, b=2, n=2, h=6, w=8):
    return torch.rand(b, n, h, w, 3, generator=_gen(seed))


def test_reprojection_loss_perfect_warp_is_zero_and_perturbed_larger():
    src = _ray_image(0)
    adjacent = _ray_image(1)[..., None, :].expand(-1, -1, -1, -1, 2, -1)   # unwarped: different
    perfect = src[..., None, :].expand_as(adjacent)
    l1_zero = torch.zeros(perfect.shape[:-1])
    loss0 = reprojection_loss(perfect, src, adjacent, weighted_l1=l1_zero)
    noisy = (perfect + 0.2 * torch.rand(perfect.shape, generator=_gen(2))).clamp(0, 1)
    loss1 = reprojection_loss(noisy, src, adjacent, weighted_l1=(noisy - perfect).abs().mean(-1))
    assert loss0 < 1e-4
    assert loss1 > 10 * loss0 + 1e-3


def test_reprojection_automask_blocks_gradient_where_identity_wins():
    src = _ray_image(0)
    identity = src[..., None, :].clone()                     # the adjacent image looks the same
    warped = (_ray_image(3)[..., None, :]).requires_grad_(True)
    loss = reprojection_loss(warped, src, identity)
    loss.backward()
    assert loss < 1e-4 and warped.grad.abs().max() == 0
    warped.grad = None
    reprojection_loss(warped, src, identity, automask=False).backward()
    assert warped.grad.abs().max() > 0


def test_reprojection_invalid_target_ignored():
    src = _ray_image(0)
    bad = _ray_image(5)
    warped = torch.stack([src, bad], dim=-2)                  # target 0 perfect, target 1 wrong
    identity = torch.stack([_ray_image(6), _ray_image(7)], dim=-2)
    valid = torch.ones(warped.shape[:-1], dtype=torch.bool)
    assert reprojection_loss(warped, src, identity, valid=valid) < 1e-4
    valid[..., 0] = False                                     # only the wrong target is left
    assert reprojection_loss(warped, src, identity, valid=valid) > 0.05


def test_free_space_loss_is_the_mean_opacity_of_valid_rays():
    opacity = torch.tensor([[0.0, 0.5, 1.0, 0.9]], requires_grad=True)
    valid = torch.tensor([[True, True, True, False]])
    loss = free_space_loss(opacity, valid)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert torch.allclose(opacity.grad, torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]]))
    assert free_space_loss(opacity, torch.zeros_like(valid)).item() == 0.0
    with pytest.raises(ValueError, match="valid"):
        free_space_loss(opacity, valid[:, :3])


def test_normalize_by_opacity_gives_weight_averages():
    w = torch.tensor([[[0.1, 0.3, 0.0], [0.0, 0.0, 0.0]]])             # [B=1, R=2, S=3]
    c = torch.tensor([[[0.2, 0.6, 0.9], [0.5, 0.5, 0.5]]])             # one target, one channel
    e = torch.tensor([[[1.0, 3.0, 7.0], [2.0, 2.0, 2.0]]])
    sums_c = (w * c).sum(-1)[..., None, None]                          # [1, 2, 1, 1]
    sums_e = (w * e).sum(-1)[..., None]                                # [1, 2, 1]
    colors, errors = normalize_by_opacity(sums_c, sums_e, w.sum(-1))
    assert colors[0, 0, 0, 0].item() == pytest.approx((0.1 * 0.2 + 0.3 * 0.6) / 0.4)
    assert errors[0, 0, 0].item() == pytest.approx((0.1 * 1.0 + 0.3 * 3.0) / 0.4)
    assert colors[0, 1].abs().max() == 0 and errors[0, 1].abs().max() == 0   # empty ray stays 0
    # halving every weight leaves the averages unchanged
    half_c, half_e = normalize_by_opacity(sums_c / 2, sums_e / 2, w.sum(-1) / 2)
    assert torch.allclose(half_c[0, 0], colors[0, 0]) and torch.allclose(half_e[0, 0], errors[0, 0])
    with pytest.raises(ValueError, match="opacity"):
        normalize_by_opacity(sums_c, sums_e, w.sum(-1)[:, :1])
    with pytest.raises(ValueError, match="min_opacity"):
        normalize_by_opacity(sums_c, sums_e, w.sum(-1), min_opacity=0.0)


def test_dynamic_mask():
    cue = torch.tensor([[10.0, 0.0], [10.0, 0.0], [10.0, 0.0], [3.0, 0.0]])
    static = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    movable = torch.tensor([True, False, True, True])
    valid = torch.tensor([True, True, False, True])
    assert dynamic_mask(cue, static, movable, valid, threshold=8.0).tolist() == [True, False, False, False]
    assert dynamic_mask(cue, static, movable, valid, threshold=2.0).tolist() == [True, False, False, True]


def test_imbalance_weight_formula_and_cap():
    assert imbalance_weight(100, 10).item() == pytest.approx(10.0)
    assert imbalance_weight(1000, 10).item() == pytest.approx(20.0)
    assert imbalance_weight(1000, 10, cap=50).item() == pytest.approx(50.0)
    assert imbalance_weight(1000, 0).item() == 0.0
    with pytest.raises(ValueError, match="n_dynamic"):
        imbalance_weight(5, 6)


def test_flow_target_valid_drops_outliers():
    cue = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1e7, 0.0], [3.0, 1.0], [500.0, 0.0]])
    valid = torch.ones(5, dtype=torch.bool)
    assert flow_target_valid(cue, valid).tolist() == [True, True, False, True, False]


def _flow_case(seed=0, b=2, r=12, s=5):
    g = _gen(seed)
    pixels = torch.rand(b, r, 2, generator=g) * 50
    cue = torch.randn(b, r, 2, generator=g) * 4
    weights = torch.rand(b, r, s, generator=g)
    valid = torch.ones(b, r, dtype=torch.bool)
    dynamic = torch.zeros(b, r, dtype=torch.bool)
    dynamic[:, :3] = True
    return pixels, cue, weights, valid, dynamic


def test_flow_loss_zero_when_rendered_flow_matches_cue():
    pixels, cue, weights, valid, dynamic = _flow_case()
    s = weights.shape[-1]
    match = (pixels + cue)[:, :, None].expand(-1, -1, s, -1)
    loss, gamma = flow_loss(match, weights, pixels, cue, valid, dynamic)
    assert loss.abs() < 1e-5
    assert gamma.item() == pytest.approx(24 / 6)
    off = match + torch.tensor([1.0, -2.0])
    loss2, _ = flow_loss(off, weights, pixels, cue, valid, dynamic)
    # every ray errs by |1| + |-2| = 3 px: static rays count 1x, dynamic gamma x
    expected = (18 * 3.0 + 6 * 4.0 * 3.0) / 24
    assert loss2.item() == pytest.approx(expected, rel=1e-5)


def test_flow_loss_detaches_weights_on_dynamic_rays():
    pixels, cue, weights, valid, dynamic = _flow_case(1)
    s = weights.shape[-1]
    samples = (pixels + cue)[:, :, None].expand(-1, -1, s, -1) + torch.randn(2, 12, s, 2, generator=_gen(9))
    weights = weights.clone().requires_grad_(True)
    samples = samples.clone().requires_grad_(True)
    loss, _ = flow_loss(samples, weights, pixels, cue, valid, dynamic)
    loss.backward()
    assert weights.grad[dynamic].abs().max() == 0           # no geometry push from dynamic rays
    assert weights.grad[~dynamic].abs().max() > 0
    assert samples.grad[dynamic].abs().max() > 0            # the flow still learns there
    weights.grad = None
    flow_loss(samples, weights, pixels, cue, valid, dynamic, detach_dynamic_weights=False)[0].backward()
    assert weights.grad[dynamic].abs().max() > 0


def test_flow_loss_ignores_invalid_rays():
    pixels, cue, weights, valid, dynamic = _flow_case(2)
    s = weights.shape[-1]
    samples = (pixels + cue)[:, :, None].expand(-1, -1, s, -1).clone()
    samples[:, -1] += 100.0
    valid[:, -1] = False
    loss, _ = flow_loss(samples, weights, pixels, cue, valid, dynamic)
    assert loss.abs() < 1e-5
    with pytest.raises(ValueError, match="valid must be a bool"):
        flow_loss(samples, weights, pixels, cue, valid.float(), dynamic)


def test_static_flow_regularization():
    g = _gen(3)
    flow = torch.randn(2, 10, 2, generator=g)
    static = torch.zeros(2, 10, dtype=torch.bool)
    static[:, 5:] = True
    reg = static_flow_regularization(flow, static)
    assert reg.item() == pytest.approx(flow[:, 5:].abs().sum(-1).mean().item(), rel=1e-6)
    flow_static_zero = flow.clone()
    flow_static_zero[:, 5:] = 0
    assert static_flow_regularization(flow_static_zero, static) == 0
    sample_flow = torch.randn(2, 10, 4, 2, generator=g)
    weights = torch.full((2, 10, 4), 0.5)
    weights[..., 0] = 0.0                                   # only the first samples are empty space
    total = static_flow_regularization(flow_static_zero, static, sample_flow, weights)
    assert total.item() == pytest.approx(0.2 * sample_flow[..., 0, :].abs().sum(-1).mean().item(), rel=1e-5)


def test_silog():
    g = _gen(4)
    target = torch.rand(100, generator=g) * 30 + 1
    assert silog_loss(target, target) < 1e-5
    assert silog_loss(2 * target, target, variance_focus=1.0) < 1e-3    # scale invariant at lambda=1
    assert silog_loss(2 * target, target) > 0.2                        # partly scale-aware at 0.85
    noisy = target * torch.exp(0.3 * torch.randn(100, generator=g))
    assert silog_loss(noisy, target) > 0.2
    valid = torch.zeros(100, dtype=torch.bool)
    assert silog_loss(noisy, target, valid) == 0


def test_edge_aware_smoothness():
    img = torch.zeros(1, 3, 8, 8)
    img[..., 4:] = 1.0                                     # a vertical image edge between columns 3, 4
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1.0                                    # a depth step at the image edge
    step_elsewhere = torch.zeros(1, 1, 8, 8)
    step_elsewhere[..., 2:] = 1.0
    assert edge_aware_smoothness(torch.ones(1, 1, 8, 8), img) == 0
    assert edge_aware_smoothness(step, img) < edge_aware_smoothness(step_elsewhere, img)
    assert edge_aware_smoothness(3 * step + 1, img, normalize=True) == pytest.approx(
        edge_aware_smoothness(6 * step + 2, img, normalize=True).item())


def test_sparsity_behind_surface():
    t = torch.linspace(0.5, 20, 40).expand(1, 2, 40)
    depth = torch.tensor([[5.0, 15.0]])
    sdf = torch.full((1, 2, 40), -1.0)
    loss = sparsity_behind_surface(sdf, t, depth)
    assert loss.item() == pytest.approx(1.0)
    sdf_pos_behind = torch.where(t > depth[..., None] + 3, torch.ones_like(sdf), sdf)
    assert sparsity_behind_surface(sdf_pos_behind, t, depth) == 0


GRID = GridSpec((-2.0, -2.0, -1.0), (2.0, 2.0, 1.0), (8, 8, 4))


def test_sample_vertex_field_linear_exact():
    a = torch.tensor([0.3, -0.7, 1.1])
    field = (GRID.points("vertex") @ a).reshape(1, 1, *GRID.vertex_shape).expand(2, 1, -1, -1, -1)
    pts = torch.rand(2, 5, 7, 3, generator=_gen(5)) * torch.tensor([4.0, 4.0, 2.0])
    pts = pts - torch.tensor([2.0, 2.0, 1.0])
    out = sample_vertex_field(field, GRID, pts)
    assert out.shape == (2, 5, 7, 1)
    assert torch.allclose(out[..., 0], pts @ a, atol=1e-5)


def test_sparsity_grid():
    pos = torch.ones(1, 1, *GRID.vertex_shape)
    assert sparsity_grid(pos, GRID, generator=_gen()) == 0
    assert sparsity_grid(-pos, GRID, generator=_gen()).item() == pytest.approx(1.0)
