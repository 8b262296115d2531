"""render_rays: analytic cases, edge cases and bad inputs (both backends), warp vs torch values and
gradients, float64 gradcheck of the Warp backward."""

import math

import pytest
import torch

import volrender
from volrender import GridSpec, render_rays

BACKENDS = ["torch", "warp"]
BOX = GridSpec((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), (16, 16, 16))


def _rays(origins, directions, dtype=torch.float32):
    o = torch.tensor(origins, dtype=dtype)[None]
    d = torch.tensor(directions, dtype=dtype)[None]
    return o, d / d.norm(dim=-1, keepdim=True)


def _sphere(grid=BOX, radius=0.5, dtype=torch.float32):
    return (grid.points("vertex", dtype=dtype).norm(dim=-1) - radius)[None, None].contiguous()


def _plane(grid=BOX, x0=0.3, dtype=torch.float32):
    """SDF positive for x < x0, so a ray along +x enters the surface at x = x0."""
    return (x0 - grid.points("vertex", dtype=dtype)[..., 0])[None, None].contiguous()


# --------------------------------------------------------------------------------------- analytic
@pytest.mark.parametrize("backend", BACKENDS)
def test_plane_depth_converges_as_inv_s_grows(backend):
    sdf = _plane()
    o, d = _rays([[-2.0, 0.1, 0.2], [-2.0, -0.3, 0.0]], [[1.0, 0.0, 0.0], [1.0, 0.2, 0.1]])
    expected = (0.3 + 2.0) / d[0, :, 0]
    errors = []
    for inv_s in (10.0, 100.0, 1000.0):
        out = render_rays(sdf, None, BOX, o, d, n_samples=512, inv_s=inv_s, backend=backend)
        errors.append((out.depth[0] - expected).abs().max().item())
        assert out.opacity.min() > 0.99
    assert errors[0] > 10 * errors[1] and errors[0] > 10 * errors[2]   # a soft surface is seen early
    assert errors[2] < 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_sphere_depth(backend):
    sdf = _sphere()
    o, d = _rays([[-2.0, 0.0, 0.0], [0.0, -3.0, 0.1], [-0.9, 0.0, 0.0]],
                 [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = render_rays(sdf, None, BOX, o, d, n_samples=400, inv_s=2000.0, backend=backend)
    y = math.sqrt(0.25 - 0.01)
    expected = torch.tensor([1.5, 3.0 - y, 0.4])
    torch.testing.assert_close(out.depth[0], expected, atol=0.02, rtol=0)
    torch.testing.assert_close(out.opacity[0], torch.ones(3), atol=1e-3, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_features_render_opacity_times_feature(backend):
    g = torch.Generator().manual_seed(0)
    sdf = _sphere() + 0.05 * torch.randn((1, 1, *BOX.vertex_shape), generator=g)
    feats = torch.tensor([0.7, -1.3, 2.0]).reshape(1, 3, 1, 1, 1).expand(1, 3, *BOX.vertex_shape).contiguous()
    o = torch.tensor([-2.0, 0.0, 0.0]).expand(1, 64, 3).contiguous()
    d = torch.randn(1, 64, 3, generator=g) * 0.3 + torch.tensor([1.0, 0.0, 0.0])
    d = d / d.norm(dim=-1, keepdim=True)
    out = render_rays(sdf, feats, BOX, o, d, n_samples=64, inv_s=30.0, backend=backend)
    assert out.opacity.min() < 0.9  # some rays pass by the sphere: a non-trivial check
    torch.testing.assert_close(out.features, out.opacity[..., None] * torch.tensor([0.7, -1.3, 2.0]),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_miss_graze_and_inside(backend):
    sdf = _sphere()
    o, d = _rays([[-2.0, 3.0, 0.0],    # misses the box
                  [-2.0, 1.0, 0.0],    # slides along the box's y = 1 face
                  [-2.0, 1.0, 1.0],    # slides along an edge
                  [2.0, 2.0, 0.0],     # touches only the corner edge x = y = 1: empty segment
                  [0.0, 0.0, 0.0],     # starts inside the sphere, leaves it (no surface entry)
                  [-0.9, 0.0, 0.0]],   # starts inside the box, outside the sphere
                 [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [1.0, 0.0, 0.0],
                  [1.0, 0.0, 0.0]])
    feats = torch.ones(1, 2, *BOX.vertex_shape)
    out = render_rays(sdf, feats, BOX, o, d, n_samples=128, inv_s=500.0, return_samples=True,
                      backend=backend)
    for x in (out.depth, out.opacity, out.features, out.weights, out.t, out.points):
        assert torch.isfinite(x).all()
    assert out.depth[0, 0] == 0 and out.opacity[0, 0] == 0 and (out.features[0, 0] == 0).all()
    assert (out.weights[0, 0] == 0).all() and (out.t[0, 0] == 0).all()
    assert (out.weights[0, 3] == 0).all()
    assert out.opacity[0, 1] < 1e-3 and out.opacity[0, 2] < 1e-3   # far from the sphere
    assert out.opacity[0, 4] < 1e-3
    assert abs(out.depth[0, 5].item() - 0.4) < 0.01
    assert out.t[0, 5, 0] > 0 and out.t[0, 5, -1] < 1.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_far_clip(backend):
    sdf = _plane()
    o, d = _rays([[-2.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]])
    out = render_rays(sdf, None, BOX, o, d, n_samples=128, inv_s=500.0, far=2.0, backend=backend)
    assert out.opacity.item() < 1e-3
    out = render_rays(sdf, None, BOX, o, d, n_samples=128, inv_s=500.0, near=1.5,
                      far=torch.tensor([[2.5]]), return_samples=True, backend=backend)
    assert out.opacity.item() > 0.99
    assert out.t.min() > 1.5 and out.t.max() < 2.5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_underflow_gives_no_nan(backend, dtype):
    sdf = (_sphere(dtype=dtype) * 50.0).requires_grad_()      # |sdf| up to ~80 m
    feats = torch.ones(1, 2, *BOX.vertex_shape, dtype=dtype, requires_grad=True)
    inv_s = torch.tensor(1e5, dtype=dtype, requires_grad=True)  # inv_s * sdf ~ 1e7: sigmoid underflows
    o, d = _rays([[-2.0, 0.0, 0.0], [-2.0, 0.3, 0.1]], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
    out = render_rays(sdf, feats, BOX, o, d, n_samples=64, inv_s=inv_s, return_samples=True, backend=backend)
    loss = out.depth.sum() + out.features.sum() + out.opacity.sum() + out.weights.square().sum()
    loss.backward()
    for x in (out.depth, out.opacity, out.weights, sdf.grad, feats.grad, inv_s.grad):
        assert torch.isfinite(x).all()
    assert out.opacity.min() > 0.999


@pytest.mark.parametrize("backend", BACKENDS)
def test_stratified_is_reproducible_and_ordered(backend):
    sdf = _sphere()
    o, d = _rays([[-2.0, 0.0, 0.0], [-2.0, 0.2, 0.1]], [[1.0, 0.0, 0.0], [1.0, 0.1, 0.0]])
    kw = dict(n_samples=32, inv_s=50.0, stratified=True, return_samples=True, backend=backend)
    a = render_rays(sdf, None, BOX, o, d, generator=torch.Generator().manual_seed(1), **kw)
    b = render_rays(sdf, None, BOX, o, d, generator=torch.Generator().manual_seed(1), **kw)
    c = render_rays(sdf, None, BOX, o, d, generator=torch.Generator().manual_seed(2), **kw)
    torch.testing.assert_close(a.depth, b.depth, rtol=0, atol=0)
    assert not torch.equal(a.t, c.t)
    assert (a.t.diff(dim=-1) > 0).all()
    plain = render_rays(sdf, None, BOX, o, d, n_samples=32, inv_s=50.0, return_samples=True, backend=backend)
    step = plain.t[..., 1] - plain.t[..., 0]
    assert ((a.t - plain.t).abs() <= step[..., None] + 1e-6).all()
    torch.testing.assert_close(a.depth, plain.depth, atol=0.05, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_items_are_independent(backend):
    g = torch.Generator().manual_seed(3)
    sdf = torch.randn(2, 1, *BOX.vertex_shape, generator=g)
    feats = torch.randn(2, 2, *BOX.vertex_shape, generator=g)
    o = torch.rand(2, 10, 3, generator=g) * 2 - 1
    d = torch.randn(2, 10, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    full = render_rays(sdf, feats, BOX, o, d, n_samples=16, inv_s=5.0, backend=backend)
    one = render_rays(sdf[1:], feats[1:], BOX, o[1:], d[1:], n_samples=16, inv_s=5.0, backend=backend)
    torch.testing.assert_close(full.depth[1:], one.depth)
    torch.testing.assert_close(full.features[1:], one.features)


def test_cos_anneal_variant_matches_boundary_form_on_a_plane():
    """For an exact linear SDF the cos-annealed estimate (ratio 1) equals the boundary form."""
    sdf = _plane(dtype=torch.float64)
    o, d = _rays([[-2.0, 0.1, 0.2], [-2.0, 0.0, 0.3]], [[1.0, 0.0, 0.0], [1.0, 0.3, 0.0]],
                 dtype=torch.float64)
    a = render_rays(sdf, None, BOX, o, d, n_samples=64, inv_s=40.0, backend="torch", return_samples=True)
    b = render_rays(sdf, None, BOX, o, d, n_samples=64, inv_s=40.0, backend="torch", return_samples=True,
                    cos_anneal_ratio=1.0)
    torch.testing.assert_close(a.weights, b.weights, atol=1e-10, rtol=1e-8)
    # ratio 0 on a plane seen at 45 degrees: a steeper slope estimate (0.5 + 0.5 |cos| > |cos|) gives
    # different weights, still close to the plane (x = 0.3 at t = 1.8 sqrt(2))
    o, d = _rays([[-1.5, -1.5, 0.3]], [[1.0, 1.0, 0.0]], dtype=torch.float64)
    c = render_rays(sdf, None, BOX, o, d, n_samples=256, inv_s=40.0, backend="torch", return_samples=True,
                    cos_anneal_ratio=0.0)
    e = render_rays(sdf, None, BOX, o, d, n_samples=256, inv_s=40.0, backend="torch", return_samples=True)
    assert (c.weights - e.weights).abs().max() > 1e-3
    assert c.weights.max() > e.weights.max()
    assert abs(c.depth.item() - 1.8 * math.sqrt(2)) < 0.03   # biased early in the annealing
    with pytest.raises(ValueError, match="cos_anneal_ratio"):
        render_rays(sdf, None, BOX, o, d, n_samples=8, inv_s=1.0, backend="warp", cos_anneal_ratio=1.5)


@pytest.mark.parametrize("ratio", [0.0, pytest.param(0.4, marks=pytest.mark.slow), 1.0])
def test_cos_anneal_warp_matches_torch(ratio):
    _assert_warp_matches_torch("cpu", torch.float64, cos_anneal_ratio=ratio, seed=3)
    _assert_warp_matches_torch("cpu", torch.float32, cos_anneal_ratio=ratio)


def test_cos_anneal_warp_gradcheck_float64():
    g = torch.Generator().manual_seed(5)
    grid = GridSpec((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (3, 3, 2))
    sdf = (0.5 - grid.points("vertex", dtype=torch.float64)[..., 0])[None, None]
    sdf = (sdf + 0.05 * torch.randn(sdf.shape, generator=g, dtype=torch.float64)).requires_grad_()
    feats = torch.randn(1, 2, *grid.vertex_shape, generator=g, dtype=torch.float64, requires_grad=True)
    inv_s = torch.tensor(8.0, dtype=torch.float64, requires_grad=True)
    o = torch.tensor([[[-0.5, 0.3, 0.4], [-0.5, 0.6, 0.5], [0.2, 0.1, 0.9]]], dtype=torch.float64)
    d = torch.tensor([[[1.0, 0.1, 0.05], [1.0, -0.4, 0.0], [0.3, 0.2, -1.0]]], dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)

    def fn(s, f, k):
        out = render_rays(s, f, grid, o, d, n_samples=7, inv_s=k, backend="warp", return_samples=True,
                          cos_anneal_ratio=0.3)
        return out.depth, out.features, out.opacity, out.weights

    assert torch.autograd.gradcheck(fn, (sdf, feats, inv_s))


def _random_case(dtype, device="cpu", b=2, r=300, c=3, seed=0, grid=None):
    grid = grid or GridSpec((-1.0, -1.2, -0.5), (1.0, 0.8, 0.7), (9, 8, 6))
    g = torch.Generator().manual_seed(seed)
    pts = grid.points("vertex", dtype=dtype)
    sdf = pts.norm(dim=-1) - 0.5 + 0.2 * torch.randn((b, 1, *grid.vertex_shape), generator=g, dtype=dtype)
    feats = torch.randn((b, c, *grid.vertex_shape), generator=g, dtype=dtype)
    lower = torch.tensor(grid.lower, dtype=dtype)
    upper = torch.tensor(grid.upper, dtype=dtype)
    target = lower + (upper - lower) * (0.1 + 0.8 * torch.rand((b, r, 3), generator=g, dtype=dtype))
    d = torch.randn((b, r, 3), generator=g, dtype=dtype)
    d = d / d.norm(dim=-1, keepdim=True)
    back = torch.full((b, r, 1), 3.0, dtype=dtype)
    back[:, r // 2:r // 2 + r // 10] = -4.0     # these rays start beyond the box and point away: misses
    back[:, -(r // 10):] = 0.0                  # these start inside the box
    o = target - back * d
    to = dict(device=device)
    return grid, sdf.to(**to), feats.to(**to), o.to(**to), d.to(**to)


def _forward_backward(backend, grid, sdf, feats, o, d, inv_s, seed=None, **kw):
    if seed is not None:
        kw.update(stratified=True, generator=torch.Generator().manual_seed(seed))
    sdf = sdf.clone().requires_grad_()
    feats = feats.clone().requires_grad_()
    inv_s = torch.tensor(inv_s, dtype=sdf.dtype, device=sdf.device, requires_grad=True)
    out = render_rays(sdf, feats, grid, o, d, inv_s=inv_s, return_samples=True, backend=backend, **kw)
    g = torch.Generator().manual_seed(7)
    w_grad = torch.randn(out.weights.shape, generator=g, dtype=sdf.dtype).to(sdf.device)
    f_grad = torch.randn(out.features.shape, generator=g, dtype=sdf.dtype).to(sdf.device)
    loss = (1.3 * out.depth).sum() + out.opacity.square().sum() + (out.features * f_grad).sum() \
        + (out.weights * w_grad).sum()
    loss.backward()
    return out, sdf.grad, feats.grad, inv_s.grad


def _assert_warp_matches_torch(device, dtype=torch.float32, inv_s=6.0, **kw):
    grid, sdf, feats, o, d = _random_case(dtype, device)
    kw.setdefault("n_samples", 48)
    a = _forward_backward("torch", grid, sdf, feats, o, d, inv_s, **kw)
    b = _forward_backward("warp", grid, sdf, feats, o, d, inv_s, **kw)
    tol = dict(atol=2e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-11, rtol=1e-9)
    for name in ("depth", "opacity", "features", "weights", "t", "points"):
        torch.testing.assert_close(getattr(b[0], name), getattr(a[0], name), **tol, msg=name)
    assert a[0].opacity.max() > 0.9 and a[0].opacity.min() == 0   # surfaces hit and rays missed
    scale = a[1].abs().max()
    torch.testing.assert_close(b[1], a[1], atol=tol["atol"] * 10 * scale, rtol=tol["rtol"] * 10,
                               msg="sdf grad")
    torch.testing.assert_close(b[2], a[2], **tol, msg="feature grad")
    # d/d inv_s sums many cancelling terms: compare against the size of the sdf gradient it mirrors
    assert (b[3] - a[3]).abs() <= 50 * tol["atol"] * max(1.0, float(scale)), (a[3], b[3])


@pytest.mark.parametrize("seed", [None, 5])
def test_warp_matches_torch_float32(seed):
    _assert_warp_matches_torch("cpu", seed=seed)


def test_warp_matches_torch_sharp_surfaces():
    """inv_s so large that alpha rounds to exactly 1 (T = 0 after the surface): no division anywhere.

    float64, where rounding (~1e-16 x inv_s) stays far below the tolerance; in float32 the weights'
    sensitivity to the SDF's last bit grows with inv_s, so only a loose check is meaningful there.
    """
    grid, sdf, feats, o, d = _random_case(torch.float64)
    a = render_rays(sdf, None, grid, o, d, n_samples=48, inv_s=3000.0, backend="torch", return_samples=True,
                    transmittance_threshold=0.0)
    assert ((a.weights == 1.0).any(-1) & (a.opacity == 1.0)).any()      # alpha == 1 exactly somewhere
    _assert_warp_matches_torch("cpu", torch.float64, inv_s=3000.0, transmittance_threshold=0.0)
    _assert_warp_matches_torch("cpu", torch.float64, inv_s=3000.0)
    grid, sdf, feats, o, d = _random_case(torch.float32)
    a = _forward_backward("torch", grid, sdf, feats, o, d, 3000.0, n_samples=48)
    b = _forward_backward("warp", grid, sdf, feats, o, d, 3000.0, n_samples=48)
    torch.testing.assert_close(b[0].depth, a[0].depth, atol=2e-3, rtol=0)
    torch.testing.assert_close(b[0].opacity, a[0].opacity, atol=2e-3, rtol=0)
    assert all(torch.isfinite(g).all() for g in b[1:])


def test_warp_matches_torch_float64_with_near_far_and_termination():
    far = torch.full((1, 1), 3.1, dtype=torch.float64)
    _assert_warp_matches_torch("cpu", torch.float64, near=0.3, far=far, transmittance_threshold=1e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_warp_matches_torch_cuda(dtype):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _assert_warp_matches_torch("cuda", dtype, seed=5)


def test_warp_cpu_chunks_agree(monkeypatch):
    grid, sdf, feats, o, d = _random_case(torch.float64, r=600)
    monkeypatch.setenv("VOLRENDER_CPU_THREADS", "1")
    a = _forward_backward("warp", grid, sdf, feats, o, d, 6.0, n_samples=32)
    monkeypatch.setenv("VOLRENDER_CPU_THREADS", "3")
    b = _forward_backward("warp", grid, sdf, feats, o, d, 6.0, n_samples=32)
    torch.testing.assert_close(a[0].depth, b[0].depth, rtol=0, atol=0)
    for x, y in zip(a[1:], b[1:], strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_chunked_kernels_match_torch(monkeypatch, dtype):
    """The CUDA default splits each ray's samples over several threads (chunk transmittances and
    running sums in extra passes); force it on the CPU and check it against the reference."""
    monkeypatch.setenv("VOLRENDER_SAMPLE_CHUNKS", "6")
    grid, sdf, feats, o, d = _random_case(dtype, r=40)
    out = render_rays(sdf.requires_grad_(), feats, grid, o, d, n_samples=20, inv_s=6.0)
    assert out.depth.grad_fn.q == 6                     # the chunked path ran
    _assert_warp_matches_torch("cpu", dtype, seed=4, transmittance_threshold=1e-3)
    _assert_warp_matches_torch("cpu", dtype, inv_s=30.0)


def test_termination_threshold_changes_little():
    grid, sdf, feats, o, d = _random_case(torch.float32)
    kw = dict(n_samples=64, inv_s=40.0, backend="warp")
    a = render_rays(sdf, feats, grid, o, d, transmittance_threshold=0.0, **kw)
    b = render_rays(sdf, feats, grid, o, d, **kw)
    assert (a.opacity - b.opacity).abs().max() <= 2e-6
    c = render_rays(sdf, feats, grid, o, d, transmittance_threshold=0.1, **kw)
    assert (a.opacity - c.opacity).abs().max() > 1e-3     # the threshold is honoured


def test_feature_gradient_only_when_needed():
    grid, sdf, feats, o, d = _random_case(torch.float32, r=50)
    sdf = sdf.requires_grad_()
    out = render_rays(sdf, feats, grid, o, d, n_samples=16, inv_s=5.0)
    out.features.sum().backward()
    assert sdf.grad is not None and feats.grad is None and torch.isfinite(sdf.grad).all()


@pytest.mark.parametrize("threshold", [pytest.param(0.0, marks=pytest.mark.slow), 1e-6])
def test_warp_gradcheck_float64(threshold):
    g = torch.Generator().manual_seed(4)
    grid = GridSpec((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (2, 3, 2))
    sdf = (0.5 - grid.points("vertex", dtype=torch.float64)[..., 0])[None, None].repeat(2, 1, 1, 1, 1)
    sdf = (sdf + 0.05 * torch.randn(sdf.shape, generator=g, dtype=torch.float64)).requires_grad_()
    feats = torch.randn(2, 2, *grid.vertex_shape, generator=g, dtype=torch.float64, requires_grad=True)
    inv_s = torch.tensor(8.0, dtype=torch.float64, requires_grad=True)
    o = torch.tensor([[-0.5, 0.3, 0.4], [-0.5, 0.6, 0.5], [0.2, 0.1, 0.9]], dtype=torch.float64)
    o = o.expand(2, 3, 3).contiguous()
    d = torch.tensor([[1.0, 0.1, 0.05], [1.0, -0.1, 0.0], [0.3, 0.2, -1.0]], dtype=torch.float64)
    d = (d / d.norm(dim=-1, keepdim=True)).expand(2, 3, 3).contiguous()

    def fn(s, f, k):
        out = render_rays(s, f, grid, o, d, n_samples=7, inv_s=k, backend="warp", return_samples=True,
                          transmittance_threshold=threshold)
        return out.depth, out.features, out.opacity, out.weights

    assert torch.autograd.gradcheck(fn, (sdf, feats, inv_s))


def test_torch_reference_gradcheck():
    g = torch.Generator().manual_seed(4)
    grid = GridSpec((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (2, 3, 2))
    sdf = (0.5 - grid.points("vertex", dtype=torch.float64)[..., 0])[None, None]
    sdf = (sdf + 0.05 * torch.randn(sdf.shape, generator=g, dtype=torch.float64)).requires_grad_()
    feats = torch.randn(1, 2, *grid.vertex_shape, generator=g, dtype=torch.float64, requires_grad=True)
    inv_s = torch.tensor(8.0, dtype=torch.float64, requires_grad=True)
    o = torch.tensor([[[-0.5, 0.3, 0.4], [-0.5, 0.6, 0.5]]], dtype=torch.float64)
    d = torch.tensor([[[1.0, 0.1, 0.05], [1.0, -0.1, 0.0]]], dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)

    def fn(s, f, k):
        out = render_rays(s, f, grid, o, d, n_samples=6, inv_s=k, backend="torch", return_samples=True)
        return out.depth, out.features, out.opacity, out.weights

    assert torch.autograd.gradcheck(fn, (sdf, feats, inv_s))


# ------------------------------------------------------------------------------------- bad inputs
def _good(dtype=torch.float32):
    sdf = _sphere(dtype=dtype)
    feats = torch.zeros(1, 2, *BOX.vertex_shape, dtype=dtype)
    o, d = _rays([[-2.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]], dtype=dtype)
    return dict(sdf=sdf, features=feats, grid=BOX, origins=o, directions=d, n_samples=8, inv_s=10.0)


def _call(**kw):
    args = _good()
    args.update(kw)
    return render_rays(args.pop("sdf"), args.pop("features"), args.pop("grid"), args.pop("origins"),
                       args.pop("directions"), **args)


@pytest.mark.parametrize("kw, err, match", [
    (dict(sdf=torch.zeros(1, 1, 16, 17, 17)), ValueError, "sdf must be a vertex grid"),
    (dict(sdf=torch.zeros(1, 2, 17, 17, 17)), ValueError, "sdf must have 1 channel"),
    (dict(sdf=torch.zeros(1, 17, 17, 17)), ValueError, "sdf must have 5 dimensions"),
    (dict(sdf=torch.zeros(1, 1, 17, 17, 17, dtype=torch.float16)), ValueError, "sdf must be float32"),
    (dict(sdf=torch.zeros(1, 1, 17, 17, 17, dtype=torch.int64)), ValueError, "sdf must be float32"),
    (dict(sdf=torch.full((1, 1, 17, 17, 17), float("nan"))), ValueError, "sdf must be finite"),
    (dict(sdf=[0.0]), TypeError, "sdf must be a torch.Tensor"),
    (dict(features=torch.zeros(1, 2, 17, 17, 17, dtype=torch.float64)), ValueError,
     "features must have dtype"),
    (dict(features=torch.zeros(2, 2, 17, 17, 17)), ValueError, "features must have batch size 1"),
    (dict(features=torch.zeros(1, 2, 17, 17, 9)), ValueError, "features must be a vertex grid"),
    (dict(grid=(0, 1, 2)), TypeError, "grid must be a volrender.GridSpec"),
    (dict(origins=torch.zeros(1, 1, 2)), ValueError, "origins must have shape"),
    (dict(origins=torch.zeros(2, 1, 3)), ValueError, "origins must have shape"),
    (dict(origins=torch.tensor([[[float("nan"), 0.0, 0.0]]])), ValueError, "origins must be finite"),
    (dict(directions=torch.tensor([[[2.0, 0.0, 0.0]]])), ValueError, "directions must be unit"),
    (dict(directions=torch.zeros(1, 1, 3)), ValueError, "directions must be unit"),
    (dict(directions=torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)), ValueError,
     "directions must have dtype"),
    (dict(features=torch.zeros(1, 2, 17, 17, 17, device="meta")), ValueError, "features must be on device"),
    (dict(origins=torch.zeros(1, 1, 3, device="meta")), ValueError, "origins must be on device"),
    (dict(inv_s=torch.tensor(1.0, device="meta")), ValueError, "inv_s must be on device"),
    (dict(n_samples=0), ValueError, "n_samples must be >= 1"),
    (dict(n_samples=8.0), TypeError, "n_samples must be an int"),
    (dict(inv_s=-1.0), ValueError, "inv_s must be positive"),
    (dict(inv_s=float("nan")), ValueError, "inv_s must be positive"),
    (dict(inv_s=torch.ones(2)), ValueError, "inv_s must have exactly one element"),
    (dict(inv_s="10"), TypeError, "inv_s must be a float"),
    (dict(near=-1.0), ValueError, "near must be >= 0"),
    (dict(far=torch.ones(3, 3)), ValueError, "far must broadcast"),
    (dict(backend="cuda"), ValueError, "backend must be 'warp' or 'torch'"),
    (dict(stratified=1), TypeError, "stratified must be a bool"),
    (dict(transmittance_threshold=1.5), ValueError, "transmittance_threshold must be in"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs(kw, err, match, backend):
    kw = dict(kw)
    kw.setdefault("backend", backend)
    with pytest.raises(err, match=match):
        _call(**kw)


def test_inverted_box_is_rejected():
    with pytest.raises(ValueError, match="upper must exceed"):
        GridSpec((1.0, 0.0, 0.0), (0.0, 1.0, 1.0), (2, 2, 2))


def test_public_names_resolve():
    for name in volrender.__all__:
        assert getattr(volrender, name) is not None


def test_non_contiguous_inputs_match_contiguous():
    grid, sdf, feats, o, d = _random_case(torch.float64, b=1, r=64)
    sdf_nc = sdf.transpose(2, 4).contiguous().transpose(2, 4)          # same values, permuted strides
    feats_nc = feats.transpose(1, 3).contiguous().transpose(1, 3)
    o_nc = o.transpose(1, 2).contiguous().transpose(1, 2)
    assert not (sdf_nc.is_contiguous() or feats_nc.is_contiguous() or o_nc.is_contiguous())
    a = _forward_backward("warp", grid, sdf, feats, o, d, 6.0, n_samples=24)
    b = _forward_backward("warp", grid, sdf_nc, feats_nc, o_nc, d, 6.0, n_samples=24)
    torch.testing.assert_close(a[0].depth, b[0].depth, rtol=0, atol=0)
    for x, y in zip(a[1:], b[1:], strict=True):
        torch.testing.assert_close(x, y)
