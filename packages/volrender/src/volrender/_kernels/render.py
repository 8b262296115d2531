"""Warp kernels for NeuS rendering along rays: a forward pass and a hand-written backward pass.

``build(scalar)`` makes both kernels for one scalar type (``wp.float32`` or ``wp.float64``) in
their own Warp module. One thread per ray. All arrays are flat and contiguous:

- ``sdf``: ``[B * NX * NY * NZ]``, ``feat``: ``[B * C * NX * NY * NZ]`` (vertex grids),
- ``origins``, ``dirs``: ``[B * R * 3]``, ``t0``, ``t1``: ``[B * R]`` (the ray's segment in the box;
  ``t1 <= t0`` is a miss), ``edges``: ``[B * R * (S + 1)]`` jittered boundaries (if ``stratified``).

Forward: interval boundary ``k`` is at ``t0 + e_k (t1 - t0) / S``; the SDF is trilinear at the
boundaries, alpha_i is NeuS's ``(1 - exp(b - a)) sigmoid(-b)`` (``a, b = inv_s * sdf`` at the two
ends, 0 if ``b > a``); ``w_i = T_i alpha_i``; a ray stops once ``T_i < thr``; features are read at
midpoints only where ``w_i != 0``.

Backward (no division by ``1 - alpha``): with ``v_i = dL/dw_i`` (depth, opacity, feature and
per-weight gradients), ``P_i = sum_{k<=i} v_k w_k`` and the ray total ``S0`` (computed by the
caller from the forward outputs), ``g_i = v_i T_{i+1} - (S0 - P_i)`` equals
``(1 - alpha_i) dL/dalpha_i``, and ``dL/da_i = g_i sigmoid(-a_i)``, ``dL/db_i = -g_i sigmoid(-b_i)``
(every partial derivative of alpha carries the factor ``1 - alpha``). The kernel recomputes the
forward quantities in order and scatters into ``grad_sdf``/``grad_feat`` with ``atomic_add``
(callers give each CPU thread its own buffers) and writes ``d/d inv_s`` per ray.
"""


import functools

import warp as wp

from .common import helpers


@functools.cache
def build(scalar):
    """Forward and backward kernels for ``scalar`` (``wp.float32`` or ``wp.float64``)."""
    zero = scalar(0.0)
    one = scalar(1.0)
    half = scalar(0.5)

    h = helpers(scalar)
    expm1, sigmoid, cell, frac, lerp3, scatter3 = h.expm1, h.sigmoid, h.cell, h.frac, h.lerp3, h.scatter3
    lerp_at = h.lerp_at

    @wp.kernel(module="unique", enable_backward=False)
    def forward(sdf: wp.array(dtype=scalar), feat: wp.array(dtype=scalar), n_feat: int,
                nx: int, ny: int, nz: int, lx: scalar, ly: scalar, lz: scalar,
                vx: scalar, vy: scalar, vz: scalar,
                origins: wp.array(dtype=scalar), dirs: wp.array(dtype=scalar),
                t0: wp.array(dtype=scalar), t1: wp.array(dtype=scalar),
                edges: wp.array(dtype=scalar), stratified: int, n_rays: int, n_samples: int,
                inv_s: wp.array(dtype=scalar), thr: scalar, offset: int, write_weights: int,
                n_chunks: int, t_start: wp.array(dtype=scalar),
                depth: wp.array(dtype=scalar), opacity: wp.array(dtype=scalar),
                feat_out: wp.array(dtype=scalar), weights: wp.array(dtype=scalar)):
        tid = wp.tid() + offset
        ray = tid // n_chunks
        n0 = ((tid - ray * n_chunks) * n_samples) // n_chunks
        n1 = ((tid - ray * n_chunks + 1) * n_samples) // n_chunks
        a0 = t0[ray]
        a1 = t1[ray]
        if a1 <= a0:
            return
        b = ray // n_rays
        ox = origins[3 * ray]
        oy = origins[3 * ray + 1]
        oz = origins[3 * ray + 2]
        dx = dirs[3 * ray]
        dy = dirs[3 * ray + 1]
        dz = dirs[3 * ray + 2]
        sy = nz
        sx = ny * nz
        nvert = nx * ny * nz
        sdf_base = b * nvert
        s = inv_s[0]
        dt = (a1 - a0) / scalar(n_samples)
        ebase = ray * (n_samples + 1)

        e = scalar(n0)
        if stratified != 0:
            e = edges[ebase + n0]
        tp = a0 + e * dt
        ux = (ox + tp * dx - lx) / vx
        uy = (oy + tp * dy - ly) / vy
        uz = (oz + tp * dz - lz) / vz
        ap = s * lerp_at(sdf, sdf_base, sx, sy, nx, ny, nz, ux, uy, uz)
        trans = one
        if n_chunks > 1:
            trans = t_start[tid]
        acc_d = zero
        acc_o = zero
        for n in range(n0, n1):
            if trans < thr:
                break
            e = scalar(n + 1)
            if stratified != 0:
                e = edges[ebase + n + 1]
            tn = a0 + e * dt
            ux = (ox + tn * dx - lx) / vx
            uy = (oy + tn * dy - ly) / vy
            uz = (oz + tn * dz - lz) / vz
            bn = s * lerp_at(sdf, sdf_base, sx, sy, nx, ny, nz, ux, uy, uz)
            alpha = zero
            if bn < ap:
                alpha = -expm1(bn - ap) * sigmoid(-bn)
            w = trans * alpha
            if w != zero:
                if write_weights != 0:
                    weights[ray * n_samples + n] = w
                tm = half * (tp + tn)
                acc_d += w * tm
                acc_o += w
                if n_feat > 0:
                    mx = (ox + tm * dx - lx) / vx
                    my = (oy + tm * dy - ly) / vy
                    mz = (oz + tm * dz - lz) / vz
                    mi = cell(mx, nx)
                    mj = cell(my, ny)
                    mk = cell(mz, nz)
                    fx = frac(mx, nx, mi)
                    fy = frac(my, ny, mj)
                    fz = frac(mz, nz, mk)
                    for c in range(n_feat):
                        o = (b * n_feat + c) * nvert + mi * sx + mj * sy + mk
                        feat_out[tid * n_feat + c] += w * lerp3(feat, o, sx, sy, fx, fy, fz)
            trans = trans * (one - alpha)
            tp = tn
            ap = bn
        depth[tid] = acc_d
        opacity[tid] = acc_o

    @wp.kernel(module="unique", enable_backward=False)
    def backward(sdf: wp.array(dtype=scalar), feat: wp.array(dtype=scalar), n_feat: int,
                 nx: int, ny: int, nz: int, lx: scalar, ly: scalar, lz: scalar,
                vx: scalar, vy: scalar, vz: scalar,
                 origins: wp.array(dtype=scalar), dirs: wp.array(dtype=scalar),
                 t0: wp.array(dtype=scalar), t1: wp.array(dtype=scalar),
                 edges: wp.array(dtype=scalar), stratified: int, n_rays: int, n_samples: int,
                 inv_s: wp.array(dtype=scalar), thr: scalar, offset: int,
                 n_chunks: int, t_start: wp.array(dtype=scalar), pre: wp.array(dtype=scalar),
                 g_depth: wp.array(dtype=scalar), g_opacity: wp.array(dtype=scalar),
                 g_feat: wp.array(dtype=scalar), g_weights: wp.array(dtype=scalar), has_g_weights: int,
                 total: wp.array(dtype=scalar), want_feat_grad: int,
                 grad_sdf: wp.array(dtype=scalar), grad_feat: wp.array(dtype=scalar),
                 grad_inv_s: wp.array(dtype=scalar)):
        tid = wp.tid() + offset
        ray = tid // n_chunks
        n0 = ((tid - ray * n_chunks) * n_samples) // n_chunks
        n1 = ((tid - ray * n_chunks + 1) * n_samples) // n_chunks
        a0 = t0[ray]
        a1 = t1[ray]
        if a1 <= a0:
            return
        b = ray // n_rays
        ox = origins[3 * ray]
        oy = origins[3 * ray + 1]
        oz = origins[3 * ray + 2]
        dx = dirs[3 * ray]
        dy = dirs[3 * ray + 1]
        dz = dirs[3 * ray + 2]
        sy = nz
        sx = ny * nz
        nvert = nx * ny * nz
        sdf_base = b * nvert
        s = inv_s[0]
        dt = (a1 - a0) / scalar(n_samples)
        ebase = ray * (n_samples + 1)
        gd = g_depth[ray]
        go = g_opacity[ray]
        s0 = total[ray]

        e = scalar(n0)
        if stratified != 0:
            e = edges[ebase + n0]
        tp = a0 + e * dt
        ux = (ox + tp * dx - lx) / vx
        uy = (oy + tp * dy - ly) / vy
        uz = (oz + tp * dz - lz) / vz
        pi = cell(ux, nx)
        pj = cell(uy, ny)
        pk = cell(uz, nz)
        pfx = frac(ux, nx, pi)
        pfy = frac(uy, ny, pj)
        pfz = frac(uz, nz, pk)
        sp = lerp3(sdf, sdf_base + pi * sx + pj * sy + pk, sx, sy, pfx, pfy, pfz)
        ap = s * sp
        trans = one
        prefix = zero
        if n_chunks > 1:
            trans = t_start[tid]
            prefix = pre[tid]
        carry = zero          # dL/dsdf at the current left boundary, not yet scattered
        gs = zero
        for n in range(n0, n1):
            if trans < thr:
                break
            e = scalar(n + 1)
            if stratified != 0:
                e = edges[ebase + n + 1]
            tn = a0 + e * dt
            ux = (ox + tn * dx - lx) / vx
            uy = (oy + tn * dy - ly) / vy
            uz = (oz + tn * dz - lz) / vz
            i = cell(ux, nx)
            j = cell(uy, ny)
            k = cell(uz, nz)
            fx = frac(ux, nx, i)
            fy = frac(uy, ny, j)
            fz = frac(uz, nz, k)
            sn = lerp3(sdf, sdf_base + i * sx + j * sy + k, sx, sy, fx, fy, fz)
            bn = s * sn
            alpha = zero
            active = bn <= ap           # alpha unclamped (the clamp passes its gradient at b == a)
            if bn < ap:
                alpha = -expm1(bn - ap) * sigmoid(-bn)
            w = trans * alpha
            tnext = trans * (one - alpha)
            carry_next = zero
            if w != zero or active:
                tm = half * (tp + tn)
                v = gd * tm + go
                if has_g_weights != 0:
                    v += g_weights[ray * n_samples + n]
                if n_feat > 0:
                    mx = (ox + tm * dx - lx) / vx
                    my = (oy + tm * dy - ly) / vy
                    mz = (oz + tm * dz - lz) / vz
                    mi = cell(mx, nx)
                    mj = cell(my, ny)
                    mk = cell(mz, nz)
                    mfx = frac(mx, nx, mi)
                    mfy = frac(my, ny, mj)
                    mfz = frac(mz, nz, mk)
                    for c in range(n_feat):
                        o = (b * n_feat + c) * nvert + mi * sx + mj * sy + mk
                        gf = g_feat[ray * n_feat + c]
                        v += gf * lerp3(feat, o, sx, sy, mfx, mfy, mfz)
                        if w != zero and want_feat_grad != 0:
                            scatter3(grad_feat, o, sx, sy, mfx, mfy, mfz, gf * w)
                prefix += v * w
                if active:
                    g = v * tnext - (s0 - prefix)
                    ga = g * sigmoid(-ap)
                    gb = -g * sigmoid(-bn)
                    carry += s * ga
                    carry_next = s * gb
                    gs += sp * ga + sn * gb
            if carry != zero:
                scatter3(grad_sdf, sdf_base + pi * sx + pj * sy + pk, sx, sy, pfx, pfy, pfz, carry)
            carry = carry_next
            trans = tnext
            tp = tn
            ap = bn
            sp = sn
            pi = i
            pj = j
            pk = k
            pfx = fx
            pfy = fy
            pfz = fz
        if carry != zero:
            scatter3(grad_sdf, sdf_base + pi * sx + pj * sy + pk, sx, sy, pfx, pfy, pfz, carry)
        grad_inv_s[tid] = gs

    @wp.kernel(module="unique", enable_backward=False)
    def chunk_transmittance(sdf: wp.array(dtype=scalar), nx: int, ny: int, nz: int,
                            lx: scalar, ly: scalar, lz: scalar, vx: scalar, vy: scalar, vz: scalar,
                            origins: wp.array(dtype=scalar), dirs: wp.array(dtype=scalar),
                            t0: wp.array(dtype=scalar), t1: wp.array(dtype=scalar),
                            edges: wp.array(dtype=scalar), stratified: int, n_rays: int, n_samples: int,
                            inv_s: wp.array(dtype=scalar), offset: int, n_chunks: int,
                            prod: wp.array(dtype=scalar)):
        # prod[ray, chunk] = prod_{i in chunk} (1 - alpha_i): the chunk's transmittance factor.
        tid = wp.tid() + offset
        ray = tid // n_chunks
        n0 = ((tid - ray * n_chunks) * n_samples) // n_chunks
        n1 = ((tid - ray * n_chunks + 1) * n_samples) // n_chunks
        a0 = t0[ray]
        a1 = t1[ray]
        trans = one
        if a1 > a0:
            b = ray // n_rays
            ox = origins[3 * ray]
            oy = origins[3 * ray + 1]
            oz = origins[3 * ray + 2]
            dx = dirs[3 * ray]
            dy = dirs[3 * ray + 1]
            dz = dirs[3 * ray + 2]
            sy = nz
            sx = ny * nz
            sdf_base = b * nx * ny * nz
            s = inv_s[0]
            dt = (a1 - a0) / scalar(n_samples)
            ebase = ray * (n_samples + 1)
            e = scalar(n0)
            if stratified != 0:
                e = edges[ebase + n0]
            tp = a0 + e * dt
            ux = (ox + tp * dx - lx) / vx
            uy = (oy + tp * dy - ly) / vy
            uz = (oz + tp * dz - lz) / vz
            ap = s * lerp_at(sdf, sdf_base, sx, sy, nx, ny, nz, ux, uy, uz)
            for n in range(n0, n1):
                if trans == zero:
                    break
                e = scalar(n + 1)
                if stratified != 0:
                    e = edges[ebase + n + 1]
                tn = a0 + e * dt
                ux = (ox + tn * dx - lx) / vx
                uy = (oy + tn * dy - ly) / vy
                uz = (oz + tn * dz - lz) / vz
                bn = s * lerp_at(sdf, sdf_base, sx, sy, nx, ny, nz, ux, uy, uz)
                alpha = zero
                if bn < ap:
                    alpha = -expm1(bn - ap) * sigmoid(-bn)
                trans = trans * (one - alpha)
                ap = bn
        prod[tid] = trans

    @wp.kernel(module="unique", enable_backward=False)
    def chunk_vw(sdf: wp.array(dtype=scalar), feat: wp.array(dtype=scalar), n_feat: int,
                 nx: int, ny: int, nz: int, lx: scalar, ly: scalar, lz: scalar,
                 vx: scalar, vy: scalar, vz: scalar,
                 origins: wp.array(dtype=scalar), dirs: wp.array(dtype=scalar),
                 t0: wp.array(dtype=scalar), t1: wp.array(dtype=scalar),
                 edges: wp.array(dtype=scalar), stratified: int, n_rays: int, n_samples: int,
                 inv_s: wp.array(dtype=scalar), thr: scalar, offset: int,
                 n_chunks: int, t_start: wp.array(dtype=scalar),
                 g_depth: wp.array(dtype=scalar), g_opacity: wp.array(dtype=scalar),
                 g_feat: wp.array(dtype=scalar), g_weights: wp.array(dtype=scalar), has_g_weights: int,
                 vw: wp.array(dtype=scalar)):
        # vw[ray, chunk] = sum_{i in chunk} v_i w_i (v_i = dL/dw_i): the backward's running sums.
        tid = wp.tid() + offset
        ray = tid // n_chunks
        n0 = ((tid - ray * n_chunks) * n_samples) // n_chunks
        n1 = ((tid - ray * n_chunks + 1) * n_samples) // n_chunks
        a0 = t0[ray]
        a1 = t1[ray]
        acc = zero
        if a1 > a0:
            b = ray // n_rays
            ox = origins[3 * ray]
            oy = origins[3 * ray + 1]
            oz = origins[3 * ray + 2]
            dx = dirs[3 * ray]
            dy = dirs[3 * ray + 1]
            dz = dirs[3 * ray + 2]
            sy = nz
            sx = ny * nz
            nvert = nx * ny * nz
            sdf_base = b * nvert
            s = inv_s[0]
            dt = (a1 - a0) / scalar(n_samples)
            ebase = ray * (n_samples + 1)
            gd = g_depth[ray]
            go = g_opacity[ray]
            e = scalar(n0)
            if stratified != 0:
                e = edges[ebase + n0]
            tp = a0 + e * dt
            ux = (ox + tp * dx - lx) / vx
            uy = (oy + tp * dy - ly) / vy
            uz = (oz + tp * dz - lz) / vz
            ap = s * lerp_at(sdf, sdf_base, sx, sy, nx, ny, nz, ux, uy, uz)
            trans = t_start[tid]
            for n in range(n0, n1):
                if trans < thr:
                    break
                e = scalar(n + 1)
                if stratified != 0:
                    e = edges[ebase + n + 1]
                tn = a0 + e * dt
                ux = (ox + tn * dx - lx) / vx
                uy = (oy + tn * dy - ly) / vy
                uz = (oz + tn * dz - lz) / vz
                bn = s * lerp_at(sdf, sdf_base, sx, sy, nx, ny, nz, ux, uy, uz)
                alpha = zero
                if bn < ap:
                    alpha = -expm1(bn - ap) * sigmoid(-bn)
                w = trans * alpha
                if w != zero:
                    tm = half * (tp + tn)
                    v = gd * tm + go
                    if has_g_weights != 0:
                        v += g_weights[ray * n_samples + n]
                    if n_feat > 0:
                        mx = (ox + tm * dx - lx) / vx
                        my = (oy + tm * dy - ly) / vy
                        mz = (oz + tm * dz - lz) / vz
                        mi = cell(mx, nx)
                        mj = cell(my, ny)
                        mk = cell(mz, nz)
                        mfx = frac(mx, nx, mi)
                        mfy = frac(my, ny, mj)
                        mfz = frac(mz, nz, mk)
                        for c in range(n_feat):
                            o = (b * n_feat + c) * nvert + mi * sx + mj * sy + mk
                            v += g_feat[ray * n_feat + c] * lerp3(feat, o, sx, sy, mfx, mfy, mfz)
                    acc += v * w
                trans = trans * (one - alpha)
                tp = tn
                ap = bn
        vw[tid] = acc

    return forward, backward, chunk_transmittance, chunk_vw
