"""Warp kernels for the cos-annealed NeuS estimate (released NeuS / Let Occ Flow code).

Like ``render.py`` (one thread per ray, same sample placement, early termination, hand-written
reverse scan), but each interval reads a 4-channel geometry field ``geo = [sdf, dsdf/dx, dsdf/dy,
dsdf/dz]`` at its midpoint only (the caller builds the gradient channels with
``sdf_gradient``, so autograd carries their gradient back to the SDF). With ``c = d . grad``,
``k = -(relu(0.5 - 0.5 c) (1 - r) + relu(-c) r)`` and ``h = k dt / 2``, the boundary values are
estimated as ``s -/+ h``: ``a = inv_s (s - h)``, ``b = inv_s (s + h)``, and alpha is the
cancellation-free NeuS form of ``render.py``. ``geo`` is ``[B * 4 * NX * NY * NZ]``.
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

    hp = helpers(scalar)
    expm1, sigmoid, cell, frac = hp.expm1, hp.sigmoid, hp.cell, hp.frac
    lerp3, scatter3 = hp.lerp3, hp.scatter3

    @wp.func
    def slope(c: scalar, r: scalar) -> scalar:
        return -(wp.max(half - half * c, zero) * (one - r) + wp.max(-c, zero) * r)

    @wp.func
    def dslope(c: scalar, r: scalar) -> scalar:
        # d slope / d c (relu' = 0 at 0, as torch)
        out = zero
        if half - half * c > zero:
            out += half * (one - r)
        if -c > zero:
            out += r
        return out

    @wp.kernel(module="unique", enable_backward=False)
    def forward(geo: wp.array(dtype=scalar), feat: wp.array(dtype=scalar), n_feat: int,
                nx: int, ny: int, nz: int, lx: scalar, ly: scalar, lz: scalar,
                vx: scalar, vy: scalar, vz: scalar,
                origins: wp.array(dtype=scalar), dirs: wp.array(dtype=scalar),
                t0: wp.array(dtype=scalar), t1: wp.array(dtype=scalar),
                edges: wp.array(dtype=scalar), stratified: int, n_rays: int, n_samples: int,
                inv_s: wp.array(dtype=scalar), thr: scalar, ratio: scalar, offset: int, write_weights: int,
                depth: wp.array(dtype=scalar), opacity: wp.array(dtype=scalar),
                feat_out: wp.array(dtype=scalar), weights: wp.array(dtype=scalar)):
        ray = wp.tid() + offset
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
        s = inv_s[0]
        dt = (a1 - a0) / scalar(n_samples)
        ebase = ray * (n_samples + 1)
        e = zero
        if stratified != 0:
            e = edges[ebase]
        tp = a0 + e * dt
        trans = one
        acc_d = zero
        acc_o = zero
        for n in range(n_samples):
            if trans < thr:
                break
            e = scalar(n + 1)
            if stratified != 0:
                e = edges[ebase + n + 1]
            tn = a0 + e * dt
            tm = half * (tp + tn)
            mx = (ox + tm * dx - lx) / vx
            my = (oy + tm * dy - ly) / vy
            mz = (oz + tm * dz - lz) / vz
            mi = cell(mx, nx)
            mj = cell(my, ny)
            mk = cell(mz, nz)
            fx = frac(mx, nx, mi)
            fy = frac(my, ny, mj)
            fz = frac(mz, nz, mk)
            o = b * 4 * nvert + mi * sx + mj * sy + mk
            sm = lerp3(geo, o, sx, sy, fx, fy, fz)
            c = dx * lerp3(geo, o + nvert, sx, sy, fx, fy, fz) \
                + dy * lerp3(geo, o + 2 * nvert, sx, sy, fx, fy, fz) \
                + dz * lerp3(geo, o + 3 * nvert, sx, sy, fx, fy, fz)
            hh = slope(c, ratio) * (tn - tp) * half
            ap = s * (sm - hh)
            bn = s * (sm + hh)
            alpha = zero
            if bn < ap:
                alpha = -expm1(bn - ap) * sigmoid(-bn)
            w = trans * alpha
            if w != zero:
                if write_weights != 0:
                    weights[ray * n_samples + n] = w
                acc_d += w * tm
                acc_o += w
                for ch in range(n_feat):
                    fo = (b * n_feat + ch) * nvert + mi * sx + mj * sy + mk
                    feat_out[ray * n_feat + ch] += w * lerp3(feat, fo, sx, sy, fx, fy, fz)
            trans = trans * (one - alpha)
            tp = tn
        depth[ray] = acc_d
        opacity[ray] = acc_o

    @wp.kernel(module="unique", enable_backward=False)
    def backward(geo: wp.array(dtype=scalar), feat: wp.array(dtype=scalar), n_feat: int,
                 nx: int, ny: int, nz: int, lx: scalar, ly: scalar, lz: scalar,
                 vx: scalar, vy: scalar, vz: scalar,
                 origins: wp.array(dtype=scalar), dirs: wp.array(dtype=scalar),
                 t0: wp.array(dtype=scalar), t1: wp.array(dtype=scalar),
                 edges: wp.array(dtype=scalar), stratified: int, n_rays: int, n_samples: int,
                 inv_s: wp.array(dtype=scalar), thr: scalar, ratio: scalar, offset: int,
                 g_depth: wp.array(dtype=scalar), g_opacity: wp.array(dtype=scalar),
                 g_feat: wp.array(dtype=scalar), g_weights: wp.array(dtype=scalar), has_g_weights: int,
                 total: wp.array(dtype=scalar), want_feat_grad: int,
                 grad_geo: wp.array(dtype=scalar), grad_feat: wp.array(dtype=scalar),
                 grad_inv_s: wp.array(dtype=scalar)):
        ray = wp.tid() + offset
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
        s = inv_s[0]
        dt = (a1 - a0) / scalar(n_samples)
        ebase = ray * (n_samples + 1)
        gd = g_depth[ray]
        go = g_opacity[ray]
        s0 = total[ray]
        e = zero
        if stratified != 0:
            e = edges[ebase]
        tp = a0 + e * dt
        trans = one
        prefix = zero
        gs = zero
        for n in range(n_samples):
            if trans < thr:
                break
            e = scalar(n + 1)
            if stratified != 0:
                e = edges[ebase + n + 1]
            tn = a0 + e * dt
            tm = half * (tp + tn)
            mx = (ox + tm * dx - lx) / vx
            my = (oy + tm * dy - ly) / vy
            mz = (oz + tm * dz - lz) / vz
            mi = cell(mx, nx)
            mj = cell(my, ny)
            mk = cell(mz, nz)
            fx = frac(mx, nx, mi)
            fy = frac(my, ny, mj)
            fz = frac(mz, nz, mk)
            o = b * 4 * nvert + mi * sx + mj * sy + mk
            sm = lerp3(geo, o, sx, sy, fx, fy, fz)
            c = dx * lerp3(geo, o + nvert, sx, sy, fx, fy, fz) \
                + dy * lerp3(geo, o + 2 * nvert, sx, sy, fx, fy, fz) \
                + dz * lerp3(geo, o + 3 * nvert, sx, sy, fx, fy, fz)
            half_dt = (tn - tp) * half
            hh = slope(c, ratio) * half_dt
            ap = s * (sm - hh)
            bn = s * (sm + hh)
            alpha = zero
            active = bn <= ap
            if bn < ap:
                alpha = -expm1(bn - ap) * sigmoid(-bn)
            w = trans * alpha
            tnext = trans * (one - alpha)
            if w != zero or active:
                v = gd * tm + go
                if has_g_weights != 0:
                    v += g_weights[ray * n_samples + n]
                for ch in range(n_feat):
                    fo = (b * n_feat + ch) * nvert + mi * sx + mj * sy + mk
                    gf = g_feat[ray * n_feat + ch]
                    v += gf * lerp3(feat, fo, sx, sy, fx, fy, fz)
                    if w != zero and want_feat_grad != 0:
                        scatter3(grad_feat, fo, sx, sy, fx, fy, fz, gf * w)
                prefix += v * w
                if active:
                    g = v * tnext - (s0 - prefix)
                    ga = g * sigmoid(-ap)          # dL/da
                    gb = -g * sigmoid(-bn)         # dL/db
                    g_sm = s * (ga + gb)
                    g_c = s * (gb - ga) * half_dt * dslope(c, ratio)
                    gs += (sm - hh) * ga + (sm + hh) * gb
                    scatter3(grad_geo, o, sx, sy, fx, fy, fz, g_sm)
                    if g_c != zero:
                        scatter3(grad_geo, o + nvert, sx, sy, fx, fy, fz, g_c * dx)
                        scatter3(grad_geo, o + 2 * nvert, sx, sy, fx, fy, fz, g_c * dy)
                        scatter3(grad_geo, o + 3 * nvert, sx, sy, fx, fy, fz, g_c * dz)
            trans = tnext
            tp = tn
        grad_inv_s[ray] = gs

    return forward, backward
