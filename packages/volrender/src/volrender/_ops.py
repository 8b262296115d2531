"""PyTorch autograd glue around the Warp kernels (private). Inputs are validated by the public ops."""

from __future__ import annotations

import functools
import os

import torch
from torch.autograd.function import once_differentiable

from . import _wp
from ._grid import GridSpec


@functools.cache
def _geometry(grid: GridSpec, dtype: torch.dtype) -> tuple[float, ...]:
    """``(lx, ly, lz, vx, vy, vz)``: lower corner and voxel size rounded to ``dtype``, computed with the
    same arithmetic as the torch reference (``(upper - lower) / cells`` in ``dtype``)."""
    lower = torch.tensor(grid.lower, dtype=dtype)
    upper = torch.tensor(grid.upper, dtype=dtype)
    cells = torch.tensor(grid.cells, dtype=dtype)
    return tuple(lower.tolist()) + tuple(((upper - lower) / cells).tolist())


_CUDA_BLOCK = 64


@functools.cache
def _load_once(kernel, device: str) -> None:
    """Load (compile on first use) a kernel's Warp module on a device once per process, for the
    block size it is launched with (before CPU launches from several threads)."""
    block = _CUDA_BLOCK if device.startswith("cuda") else None
    _wp.warp().load_module(kernel.module, device=device, block_dim=block)


def _load(kernel, dev) -> None:
    _load_once(kernel, str(dev))


def _launch(kernel, n: int, args_of, like: torch.Tensor) -> None:
    """Launch ``kernel`` over ``n`` rays; ``args_of(chunk, offset)`` gives its inputs.

    CUDA: one launch on torch's stream. CPU: contiguous ray chunks from parallel Python threads.
    """
    wp = _wp.warp()
    dev = _wp.device(like)
    _load(kernel, dev)
    if like.is_cuda:
        # One thread per ray and typically ~1e4 rays: small blocks spread them over every SM
        # (256-thread blocks would leave half of an H100's 132 SMs idle at 16,896 rays).
        wp.launch(kernel, dim=n, inputs=args_of(0, 0), device=dev, stream=wp.stream_from_torch(like.device),
                  block_dim=_CUDA_BLOCK)
        return
    chunks = _chunks_for(n)
    _wp.launch_chunked(lambda c, off, cnt: wp.launch(kernel, dim=cnt, inputs=args_of(c, off), device=dev),
                       n, chunks)


def _chunks_for(n: int) -> int:
    return _wp.cpu_chunks(n)


def _sample_chunks(like: torch.Tensor, n_samples: int) -> int:
    """How many threads share one ray's samples (render kernels): 8 on CUDA, where one thread per
    ray leaves the GPU mostly idle at ~1e4 rays, 1 on the CPU. ``VOLRENDER_SAMPLE_CHUNKS`` overrides."""
    default = 8 if like.is_cuda else 1
    return max(1, min(int(os.environ.get("VOLRENDER_SAMPLE_CHUNKS", default)), n_samples))


def _zeros(like: torch.Tensor) -> torch.Tensor:
    """A contiguous zero buffer shaped like ``like`` (``zeros_like`` would keep permuted strides)."""
    return torch.zeros(like.shape, dtype=like.dtype, device=like.device)


def _clone(g: torch.Tensor | None, shape, like: torch.Tensor) -> torch.Tensor:
    """Incoming gradients, cloned into fresh contiguous buffers before Warp sees them."""
    if g is None:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return g.detach().to(like.dtype).clone(memory_format=torch.contiguous_format)


def _builder(ratio):
    if ratio is None:
        from ._kernels.render import build
    else:
        from ._kernels.render_cos import build
    return build


class RenderRaysFn(torch.autograd.Function):
    """Fused NeuS rendering: forward and hand-written backward Warp kernels."""

    @staticmethod
    def forward(ctx, sdf, features, inv_s, grid, origins, dirs, t0, t1, edges, n_samples, thr, want_weights,
                ratio=None):
        """``sdf`` is ``[B, 1, ...]``, or with a cos-anneal ``ratio`` the ``[B, 4, ...]`` field
        ``[sdf, grad sdf]`` read at midpoints (``_kernels/render_cos.py``)."""
        build = _builder(ratio)
        extra = [] if ratio is None else [float(ratio)]

        b, r = t0.shape
        n = b * r
        c = 0 if features is None else features.shape[1]
        q = _sample_chunks(sdf, n_samples) if ratio is None else 1
        m = n * q                                           # threads: (ray, sample chunk)
        opts = dict(dtype=sdf.dtype, device=sdf.device)
        depth = torch.zeros(m, **opts)
        opacity = torch.zeros(m, **opts)
        feat_out = torch.zeros(m * c, **opts)
        weights = torch.zeros((b, r, n_samples) if want_weights else (0,), **opts)
        geo = _geometry(grid, sdf.dtype)
        inv_s = inv_s.detach().reshape(1).contiguous()
        kernels = build(_wp.scalar_type(sdf.dtype))
        nx, ny, nz = grid.vertex_shape
        a = [_wp.arr(x, sdf) for x in (sdf, features, origins, dirs, t0, t1, edges, inv_s,
                                          depth, opacity, feat_out, weights)]
        (w_sdf, w_feat, w_o, w_d, w_t0, w_t1, w_edges, w_inv_s,
         w_depth, w_opacity, w_feat_out, w_weights) = a
        stratified = int(edges is not None)
        t_start = None
        if q > 1:
            # transmittance at the start of each chunk: exclusive product of the chunks' factors
            prod = torch.zeros(m, **opts)
            w_prod = _wp.arr(prod, sdf)
            _launch(kernels[2], m, lambda _c, off: [w_sdf, nx, ny, nz, *geo, w_o, w_d, w_t0, w_t1, w_edges,
                                                    stratified, r, n_samples, w_inv_s, off, q, w_prod], sdf)
            prod = prod.view(n, q)
            t_start = torch.cat([torch.ones_like(prod[:, :1]), torch.cumprod(prod[:, :-1], dim=1)], dim=1)
            t_start = t_start.reshape(-1).contiguous()
        chunk_args = [] if ratio is not None else [q, _wp.arr(t_start, sdf)]

        def args_of(_chunk, offset):
            return [w_sdf, w_feat, c, nx, ny, nz, *geo, w_o, w_d, w_t0, w_t1, w_edges,
                    stratified, r, n_samples, w_inv_s, thr, *extra, offset, int(want_weights), *chunk_args,
                    w_depth, w_opacity, w_feat_out, w_weights]

        _launch(kernels[0], m, args_of, sdf)
        depth = depth.view(b, r, q).sum(-1)
        opacity = opacity.view(b, r, q).sum(-1)
        feat_out = feat_out.view(b, r, q, c).sum(-2)
        ctx.grid = grid
        ctx.n_samples = n_samples
        ctx.thr = thr
        ctx.has_features = features is not None
        ctx.want_weights = want_weights
        ctx.stratified = stratified
        ctx.ratio = ratio
        ctx.q = q
        ctx.save_for_backward(sdf, features, inv_s, origins, dirs, t0, t1, edges, depth, opacity, feat_out,
                              weights, t_start)
        return depth, opacity, feat_out, weights

    @staticmethod
    @once_differentiable
    def backward(ctx, g_depth, g_opacity, g_feat, g_weights):
        build = _builder(ctx.ratio)
        extra = [] if ctx.ratio is None else [float(ctx.ratio)]

        sdf, features, inv_s, origins, dirs, t0, t1, edges, depth, opacity, feat_out, weights, t_start = \
            ctx.saved_tensors
        grid, n_samples, q = ctx.grid, ctx.n_samples, ctx.q
        b, r = t0.shape
        n = b * r
        m = n * q
        c = feat_out.shape[-1]
        g_depth = _clone(g_depth, depth.shape, sdf)
        g_opacity = _clone(g_opacity, opacity.shape, sdf)
        g_feat = _clone(g_feat, feat_out.shape, sdf)
        has_gw = ctx.want_weights and g_weights is not None
        g_weights = _clone(g_weights, weights.shape, sdf) if has_gw else None
        total = g_depth * depth + g_opacity * opacity
        if c > 0:
            total = total + (g_feat * feat_out).sum(-1)
        if has_gw:
            total = total + (g_weights * weights).sum(-1)
        total = total.contiguous()
        want_feat_grad = ctx.has_features and ctx.needs_input_grad[1]

        threads = 1 if sdf.is_cuda else _chunks_for(m)
        grad_sdf = [_zeros(sdf) for _ in range(threads)]
        grad_feat = [_zeros(features) if want_feat_grad else None for _ in range(threads)]
        grad_inv_s = torch.zeros(m, dtype=sdf.dtype, device=sdf.device)
        geo = _geometry(grid, sdf.dtype)
        kernels = build(_wp.scalar_type(sdf.dtype))
        nx, ny, nz = grid.vertex_shape
        w = [_wp.arr(x, sdf) for x in (sdf, features if c > 0 else None, origins, dirs, t0,
                                       t1, edges, inv_s, g_depth, g_opacity, g_feat, g_weights, total,
                                       grad_inv_s)]
        (w_sdf, w_feat, w_o, w_d, w_t0, w_t1, w_edges, w_inv_s,
         w_gd, w_go, w_gf, w_gw, w_total, w_gs) = w
        w_grad_sdf = [_wp.arr(x, sdf) for x in grad_sdf]
        w_grad_feat = [_wp.arr(x, sdf) for x in grad_feat]
        chunk_args = []
        if ctx.ratio is None:
            pre = None
            w_t_start = _wp.arr(t_start, sdf)
            if q > 1:
                # sum of v_k w_k over the earlier chunks of each ray (the reverse scan's running sum)
                vw = torch.zeros(m, dtype=sdf.dtype, device=sdf.device)
                w_vw = _wp.arr(vw, sdf)
                _launch(kernels[3], m, lambda _c, off: [
                    w_sdf, w_feat, c, nx, ny, nz, *geo, w_o, w_d, w_t0, w_t1, w_edges, ctx.stratified, r,
                    n_samples, w_inv_s, ctx.thr, off, q, w_t_start, w_gd, w_go, w_gf, w_gw, int(has_gw),
                    w_vw], sdf)
                vw = vw.view(n, q)
                pre = torch.cat([torch.zeros_like(vw[:, :1]), torch.cumsum(vw[:, :-1], dim=1)], dim=1)
                pre = pre.reshape(-1).contiguous()
            chunk_args = [q, w_t_start, _wp.arr(pre, sdf)]

        def args_of(chunk, offset):
            return [w_sdf, w_feat, c, nx, ny, nz, *geo, w_o, w_d, w_t0, w_t1, w_edges,
                    ctx.stratified, r, n_samples, w_inv_s, ctx.thr, *extra, offset, *chunk_args,
                    w_gd, w_go, w_gf, w_gw, int(has_gw), w_total, int(want_feat_grad),
                    w_grad_sdf[chunk], w_grad_feat[chunk], w_gs]

        _launch(kernels[1], m, args_of, sdf)
        d_sdf = grad_sdf[0]
        for more in grad_sdf[1:]:
            d_sdf += more
        d_feat = None
        if want_feat_grad:
            d_feat = grad_feat[0]
            for more in grad_feat[1:]:
                d_feat += more
        d_inv_s = grad_inv_s.sum().reshape(()) if ctx.needs_input_grad[2] else None
        return (d_sdf if ctx.needs_input_grad[0] else None, d_feat, d_inv_s,
                None, None, None, None, None, None, None, None, None, None)


class ReprojectFn(torch.autograd.Function):
    """Fused NeuS reprojection into K target images: forward and hand-written backward Warp kernels."""

    @staticmethod
    def forward(ctx, sdf, flow, images, inv_s, grid, origins, dirs, t0, t1, edges, n_samples, thr, source,
                intrinsics, target_from_grid, flow_scale):
        from ._kernels.render import build as build_render
        from ._kernels.reproject import build

        b, r = t0.shape
        n = b * r
        q = _sample_chunks(sdf, n_samples)
        m = n * q                                           # threads: (ray, sample chunk)
        k, ch, h, w = images.shape[1:]
        c_flow = 0 if flow is None else flow.shape[1]
        opts = dict(dtype=sdf.dtype, device=sdf.device)
        opacity = torch.zeros(m, **opts)
        col = torch.zeros(m * k * ch, **opts)
        err = torch.zeros(m * k, **opts)
        cov = torch.zeros(m * k, **opts)
        geo = _geometry(grid, sdf.dtype)
        inv_s = inv_s.detach().reshape(1).contiguous()
        fwd, _ = build(_wp.scalar_type(sdf.dtype))
        nx, ny, nz = grid.vertex_shape
        stratified = int(edges is not None)
        a = [_wp.arr(x, sdf) for x in (sdf, flow, None, None, origins, dirs, t0, t1, edges, inv_s, images,
                                          intrinsics, target_from_grid, flow_scale, source, opacity, col, err,
                                          cov)]
        t_start = None
        if q > 1:   # the chunks' starting transmittances, from render.py's chunk_transmittance pass
            prod = torch.zeros(m, **opts)
            w_prod = _wp.arr(prod, sdf)
            trans_kernel = build_render(_wp.scalar_type(sdf.dtype))[2]
            _launch(trans_kernel, m, lambda _c, off: [a[0], nx, ny, nz, *geo, a[4], a[5], a[6], a[7], a[8],
                                                      stratified, r, n_samples, a[9], off, q, w_prod], sdf)
            prod = prod.view(n, q)
            t_start = torch.cat([torch.ones_like(prod[:, :1]), torch.cumprod(prod[:, :-1], dim=1)], dim=1)
            t_start = t_start.reshape(-1).contiguous()
        w_t_start = _wp.arr(t_start, sdf)

        def args_of(_chunk, offset):
            return [a[0], a[1], c_flow, nx, ny, nz, *geo, a[4], a[5], a[6], a[7], a[8],
                    stratified, r, n_samples, a[9], thr, offset, q, w_t_start, a[10], k, ch, h, w, a[11],
                    a[12], a[13], a[14], a[15], a[16], a[17], a[18]]

        _launch(fwd, m, args_of, sdf)
        opacity = opacity.view(b, r, q).sum(-1)
        col = col.view(b, r, q, k, ch).sum(2)
        err = err.view(b, r, q, k).sum(2)
        cov = cov.view(b, r, q, k).sum(2)
        ctx.grid, ctx.n_samples, ctx.thr, ctx.q = grid, n_samples, thr, q
        ctx.has_flow = flow is not None
        ctx.stratified = stratified
        ctx.save_for_backward(sdf, flow, images, inv_s, origins, dirs, t0, t1, edges, source, intrinsics,
                              target_from_grid, flow_scale, opacity, col, err, cov, t_start)
        return opacity, col, err, cov

    @staticmethod
    @once_differentiable
    def backward(ctx, g_opacity, g_col, g_err, g_cov):
        from ._kernels.reproject import build

        (sdf, flow, images, inv_s, origins, dirs, t0, t1, edges, source, intrinsics, target_from_grid,
         flow_scale, opacity, col, err, cov, t_start) = ctx.saved_tensors
        grid, q = ctx.grid, ctx.q
        b, r = t0.shape
        n = b * r
        m = n * q
        k, ch, h, w = images.shape[1:]
        c_flow = 0 if flow is None else flow.shape[1]
        g_opacity = _clone(g_opacity, opacity.shape, sdf)
        g_col = _clone(g_col, col.shape, sdf)
        g_err = _clone(g_err, err.shape, sdf)
        g_cov = _clone(g_cov, cov.shape, sdf)
        total = (g_opacity * opacity + (g_col * col).sum((-1, -2)) + (g_err * err).sum(-1)
                 + (g_cov * cov).sum(-1)).contiguous()
        want_flow = ctx.has_flow and ctx.needs_input_grad[1]
        want_images = ctx.needs_input_grad[2]
        threads = 1 if sdf.is_cuda else _chunks_for(m)
        grad_sdf = [_zeros(sdf) for _ in range(threads)]
        grad_flow = [_zeros(flow) if want_flow else None for _ in range(threads)]
        grad_images = [_zeros(images) if want_images else None for _ in range(threads)]
        grad_inv_s = torch.zeros(m, dtype=sdf.dtype, device=sdf.device)
        geo = _geometry(grid, sdf.dtype)
        _, bwd = build(_wp.scalar_type(sdf.dtype))
        nx, ny, nz = grid.vertex_shape
        a = [_wp.arr(x, sdf) for x in (sdf, flow, None, None, origins, dirs, t0, t1, edges, inv_s, images,
                                          intrinsics, target_from_grid, flow_scale, source, g_opacity, g_col,
                                          g_err, g_cov, total, grad_inv_s)]
        w_sdf = [_wp.arr(x, sdf) for x in grad_sdf]
        w_flow = [_wp.arr(x, sdf) for x in grad_flow]
        w_img = [_wp.arr(x, sdf) for x in grad_images]
        w_t_start = _wp.arr(t_start, sdf)
        pre = None
        if q > 1:
            # pass A: each chunk's sum of v_i w_i (the backward kernel with vw_only), then running sums
            vw = torch.zeros(m, dtype=sdf.dtype, device=sdf.device)
            w_vw = _wp.arr(vw, sdf)
            w_zero = _wp.arr(torch.zeros(m, dtype=sdf.dtype, device=sdf.device), sdf)
            _launch(bwd, m, lambda c, off: [
                a[0], a[1], c_flow, nx, ny, nz, *geo, a[4], a[5], a[6], a[7], a[8], ctx.stratified, r,
                ctx.n_samples, a[9], ctx.thr, off, q, w_t_start, w_zero, a[10], k, ch, h, w, a[11], a[12],
                a[13], a[14], a[15], a[16], a[17], a[18], a[19], 0, 0, 1, w_sdf[c], w_flow[c], w_img[c],
                w_vw], sdf)
            vw = vw.view(n, q)
            pre = torch.cat([torch.zeros_like(vw[:, :1]), torch.cumsum(vw[:, :-1], dim=1)], dim=1)
            pre = pre.reshape(-1).contiguous()
        w_pre = _wp.arr(pre, sdf)

        def args_of(chunk, offset):
            return [a[0], a[1], c_flow, nx, ny, nz, *geo, a[4], a[5], a[6], a[7], a[8],
                    ctx.stratified, r, ctx.n_samples, a[9], ctx.thr, offset, q, w_t_start, w_pre, a[10], k,
                    ch, h, w, a[11], a[12], a[13], a[14], a[15], a[16], a[17], a[18], a[19], int(want_flow),
                    int(want_images), 0, w_sdf[chunk], w_flow[chunk], w_img[chunk], a[20]]

        _launch(bwd, m, args_of, sdf)

        def total_of(bufs):
            out = bufs[0]
            for more in bufs[1:]:
                out += more
            return out

        d_sdf = total_of(grad_sdf) if ctx.needs_input_grad[0] else None
        d_flow = total_of(grad_flow) if want_flow else None
        d_images = total_of(grad_images) if want_images else None
        d_inv_s = grad_inv_s.sum().reshape(()) if ctx.needs_input_grad[3] else None
        return (d_sdf, d_flow, d_images, d_inv_s) + (None,) * 12
