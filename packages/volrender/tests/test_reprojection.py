"""render_reprojection: warp vs torch values and gradients, gradcheck, geometric properties, bad inputs."""

import pytest
import torch

from volrender import GridSpec, render_rays, render_reprojection

GRID = GridSpec((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), (8, 9, 7))
# camera looking along +x of the grid (OpenCV axes: x right = -y, y down = -z, z forward = +x)
ROT = [[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]


def _pose(centre, dtype):
    rot = torch.tensor(ROT, dtype=dtype)
    t = torch.eye(4, dtype=dtype)
    t[:3, :3] = rot
    t[:3, 3] = -rot @ torch.tensor(centre, dtype=dtype)
    return t


def _case(dtype=torch.float64, b=2, r=120, ch=3, h=24, w=32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    pts = GRID.points("vertex", dtype=dtype)
    sdf = (pts.norm(dim=-1) - 0.6)[None, None].repeat(b, 1, 1, 1, 1)
    sdf = sdf + 0.05 * torch.randn(sdf.shape, generator=g, dtype=dtype)
    flow = 0.1 * torch.randn((b, 2, *GRID.vertex_shape), generator=g, dtype=dtype)
    # target 0 sees everything, target 1 has its principal point moved so part of the view falls outside
    poses = torch.stack([_pose([-3.0, 0.3, 0.1], dtype), _pose([-3.0, -0.3, 0.0], dtype)])
    poses = poses[None].repeat(b, 1, 1, 1)
    intr = torch.tensor([[[20.0, 0.0, 15.5], [0.0, 20.0, 11.5], [0.0, 0.0, 1.0]],
                         [[20.0, 0.0, 4.0], [0.0, 20.0, 11.5], [0.0, 0.0, 1.0]]], dtype=dtype)
    intr = intr.expand(b, 2, 3, 3).contiguous()
    images = torch.rand((b, 2, ch, h, w), generator=g, dtype=dtype)
    o = torch.tensor([-3.0, 0.0, 0.0], dtype=dtype).expand(b, r, 3).contiguous()
    d = torch.rand((b, r, 3), generator=g, dtype=dtype) * 1.6 - 0.8 - o
    d = d / d.norm(dim=-1, keepdim=True)
    src = torch.rand((b, r, ch), generator=g, dtype=dtype)
    to = dict(device=device)
    return [x.to(**to) for x in (sdf, flow, o, d, src, images, intr, poses)]


def _run(backend, sdf, flow, o, d, src, images, intr, poses, inv_s=10.0, seed=None, **kw):
    if seed is not None:
        kw.update(stratified=True, generator=torch.Generator().manual_seed(seed))
    sdf = sdf.clone().requires_grad_()
    flow = flow.clone().requires_grad_()
    images = images.clone().requires_grad_()
    inv_s = torch.tensor(inv_s, dtype=sdf.dtype, device=sdf.device, requires_grad=True)
    out = render_reprojection(sdf, flow, GRID, o, d, src, images, intr, poses, n_samples=32, inv_s=inv_s,
                              backend=backend, **kw)
    g = torch.Generator().manual_seed(3)
    loss = (out.colors * torch.randn(out.colors.shape, generator=g, dtype=sdf.dtype).to(sdf.device)).sum() \
        + 2.0 * out.errors.sum() + 0.3 * out.coverage.sum() + out.opacity.sum()
    loss.backward()
    return out, (sdf.grad, flow.grad, images.grad, inv_s.grad)


def _compare(dtype, device="cpu", **kw):
    case = _case(dtype, device=device)
    a, ga = _run("torch", *case, **kw)
    b, gb = _run("warp", *case, **kw)
    tol = dict(atol=3e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-11, rtol=1e-9)
    for name in ("colors", "errors", "coverage", "opacity"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), **tol, msg=name)
    cov = a.coverage[..., 1] / a.opacity.clamp_min(1e-9)
    assert (cov < 0.5).any() and (cov > 0.99).any()     # target 1 sees only part of the samples
    for x, y, name in zip(gb, ga, ("sdf", "flow", "images", "inv_s"), strict=True):
        scale = max(1.0, float(y.abs().max()))
        torch.testing.assert_close(x, y, atol=tol["atol"] * 10 * scale, rtol=tol["rtol"] * 10, msg=name)


def test_warp_matches_torch_float32():
    _compare(torch.float32, flow_scale=[1.0, -0.5])


def test_warp_matches_torch_float64_stratified():
    _compare(torch.float64, flow_scale=torch.tensor([[0.5, 1.0], [1.0, 0.0]], dtype=torch.float64),
             seed=2)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_warp_matches_torch_cuda(dtype):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _compare(dtype, device="cuda", flow_scale=[1.0, -0.5])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_chunked_kernels_match_torch(monkeypatch, dtype):
    """The CUDA default splits each ray's samples over several threads; force it on the CPU."""
    monkeypatch.setenv("VOLRENDER_SAMPLE_CHUNKS", "6")
    sdf, flow, o, d, src, images, intr, poses = _case(dtype, b=1, r=8)
    out = render_reprojection(sdf.requires_grad_(), flow, GRID, o, d, src, images, intr, poses, n_samples=20,
                              inv_s=5.0)
    assert out.opacity.grad_fn.q == 6                   # the chunked path ran
    _compare(dtype, flow_scale=[1.0, -0.5])
    _compare(dtype, seed=3)


def test_non_contiguous_images_and_flow():
    sdf, flow, o, d, src, images, intr, poses = _case(torch.float64, b=1, r=40)
    images_nc = images.transpose(3, 4).contiguous().transpose(3, 4)
    flow_nc = flow.transpose(1, 4).contiguous().transpose(1, 4)
    assert not (images_nc.is_contiguous() or flow_nc.is_contiguous())
    a, ga = _run("warp", sdf, flow, o, d, src, images, intr, poses)
    b, gb = _run("warp", sdf, flow_nc, o, d, src, images_nc, intr, poses)
    torch.testing.assert_close(a.colors, b.colors, rtol=0, atol=0)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y)


def test_warp_gradcheck_float64():
    sdf, flow, o, d, src, images, intr, poses = _case(torch.float64, b=1, r=4, ch=2, h=6, w=7)
    intr = intr.clone()
    intr[..., 0, 0] = intr[..., 1, 1] = 3.0
    intr[..., 0, 2] = 3.0
    intr[..., 1, 2] = 2.5
    sdf, flow, images = (x.requires_grad_() for x in (sdf, flow, images))
    inv_s = torch.tensor(6.0, dtype=torch.float64, requires_grad=True)

    def fn(s, f, im, k):
        out = render_reprojection(s, f, GRID, o, d, src, im, intr, poses, n_samples=6, inv_s=k,
                                  flow_scale=[1.0, 2.0], backend="warp")
        return out.colors, out.errors, out.coverage, out.opacity

    assert torch.autograd.gradcheck(fn, (sdf, flow, images, inv_s), atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("backend", ["torch", "warp"])
def test_reprojection_into_the_source_camera_is_exact(backend):
    """Target = source camera, rays through pixel centres: every sample lands on the ray's own pixel."""
    dtype = torch.float64
    sdf = _case(dtype, b=1)[0]
    image = torch.rand((1, 1, 3, 24, 32), generator=torch.Generator().manual_seed(1), dtype=dtype)
    intr = torch.tensor([[20.0, 0.0, 15.5], [0.0, 20.0, 11.5], [0.0, 0.0, 1.0]], dtype=dtype)
    pose = _pose([-3.0, 0.0, 0.0], dtype)
    px = torch.tensor([[13, 10], [15, 11], [16, 12], [18, 13], [14, 12]])
    ray_cam = torch.cat([px.to(dtype), torch.ones(5, 1, dtype=dtype)], dim=1) @ torch.linalg.inv(intr).T
    d = ray_cam @ pose[:3, :3]                    # camera -> grid rotation is the transpose
    d = (d / d.norm(dim=-1, keepdim=True))[None]
    o = torch.tensor([-3.0, 0.0, 0.0], dtype=dtype).expand(1, 5, 3)
    src = image[0, 0, :, px[:, 1], px[:, 0]].T[None]
    out = render_reprojection(sdf, None, GRID, o, d, src, image, intr[None, None], pose[None, None],
                              n_samples=64, inv_s=20.0, backend=backend)
    assert out.opacity.min() > 0.5
    torch.testing.assert_close(out.colors[:, :, 0], src)
    assert out.errors.abs().max() < 1e-9
    torch.testing.assert_close(out.coverage[..., 0], out.opacity)
    # and the weights are those of render_rays
    rr = render_rays(sdf, None, GRID, o, d, n_samples=64, inv_s=20.0, backend=backend)
    torch.testing.assert_close(out.opacity, rr.opacity)


@pytest.mark.parametrize("backend", ["torch", "warp"])
def test_constant_flow_equals_moving_the_target(backend):
    dtype = torch.float64
    sdf, flow, o, d, src, images, intr, poses = _case(dtype, b=1)
    shift = torch.tensor([0.05, -0.08], dtype=dtype)
    flow = shift.reshape(1, 2, 1, 1, 1).expand_as(flow).contiguous()
    a = render_reprojection(sdf, flow, GRID, o, d, src, images, intr, poses, n_samples=32, inv_s=10.0,
                            flow_scale=[2.0, 0.0], backend=backend)
    moved = poses.clone()
    t = torch.eye(4, dtype=dtype)
    t[:2, 3] = 2.0 * shift
    moved[:, 0] = poses[:, 0] @ t
    b = render_reprojection(sdf, None, GRID, o, d, src, images, intr, moved, n_samples=32, inv_s=10.0,
                            backend=backend)
    torch.testing.assert_close(a.colors, b.colors)
    torch.testing.assert_close(a.errors, b.errors)
    c = render_reprojection(sdf, flow, GRID, o, d, src, images, intr, poses, n_samples=32, inv_s=10.0,
                            flow_scale=0.0, backend=backend)
    e = render_reprojection(sdf, None, GRID, o, d, src, images, intr, poses, n_samples=32, inv_s=10.0,
                            backend=backend)
    torch.testing.assert_close(c.colors, e.colors)


def _call(**kw):
    sdf, flow, o, d, src, images, intr, poses = _case(torch.float32, b=1, r=4)
    args = dict(sdf=sdf, flow=flow, grid=GRID, origins=o, directions=d, source_colors=src,
                target_images=images, intrinsics=intr, target_from_grid=poses, n_samples=8, inv_s=5.0)
    args.update(kw)
    return render_reprojection(**args)


@pytest.mark.parametrize("kw, err, match", [
    (dict(flow=torch.zeros(1, 1, 9, 10, 8)), ValueError, "flow must have 2"),
    (dict(flow=torch.zeros(1, 2, 9, 10, 7)), ValueError, "flow must be a vertex grid"),
    (dict(target_images=torch.zeros(1, 2, 3, 1, 5)), ValueError, "target_images must have shape"),
    (dict(target_images=torch.zeros(2, 3, 24, 32)), ValueError, "target_images must have 5 dimensions"),
    (dict(target_images=torch.full((1, 2, 3, 24, 32), float("nan"))), ValueError,
     "target_images must be finite"),
    (dict(source_colors=torch.zeros(1, 4, 4)), ValueError, "source_colors must have shape"),
    (dict(intrinsics=torch.zeros(1, 1, 3, 3)), ValueError, "intrinsics must have shape"),
    (dict(target_from_grid=torch.zeros(1, 2, 3, 4)), ValueError, "target_from_grid must have shape"),
    (dict(target_from_grid=torch.zeros(1, 2, 4, 4, dtype=torch.float64)), ValueError,
     "target_from_grid must have dtype"),
    (dict(flow=None, flow_scale=1.0), ValueError, "flow_scale was given without a flow"),
    (dict(flow_scale=[1.0, 2.0, 3.0]), ValueError, "flow_scale must have shape"),
    (dict(backend="numpy"), ValueError, "backend"),
])
def test_bad_inputs(kw, err, match):
    with pytest.raises(err, match=match):
        _call(**kw)
