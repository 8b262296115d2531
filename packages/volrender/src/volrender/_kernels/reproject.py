"""Warp kernels for the fused photometric reprojection: forward and hand-written backward.

One thread per ray. The NeuS scan is the one of ``render.py`` (same sample placement, alpha,
early termination). At every sample with ``w_i != 0`` the midpoint ``x_i`` (displaced by
``scale[b, k] * flow(x_i)`` when a flow field is given; 2 channels are (dx, dy, 0)) is mapped into
each target camera ``k`` by ``pose[b, k]`` (4x4, target camera from grid) and ``intr[b, k]`` (3x3);
if it lies in front of the camera (depth > ``zmin``) and inside the image (pixel centres at
integer coordinates, ``0 <= u <= W - 1``, ``0 <= v <= H - 1``) its colour is read bilinearly and

- ``col[ray, k, ch] += w_i c_ikch``,
- ``err[ray, k] += w_i mean_ch |c_ikch - src[ray, ch]|``,
- ``cov[ray, k] += w_i``.

With ``n_chunks > 1`` each ray's samples are split over ``n_chunks`` threads exactly as in
``render.py`` (the chunks' starting transmittances ``t_start`` come from its
``chunk_transmittance`` pass; with ``vw_only`` the backward kernel only sums ``v_i w_i`` per chunk,
which gives the running sums ``pre``). The backward pass uses the same reverse-scan identity as
``render.py`` with
``v_i = dL/dw_i = g_opacity + sum_k m_ik (g_col_k . c_ik + g_err_k e_ik + g_cov_k)`` and scatters
``dL/dc`` into the images' gradient and, through the bilinear image gradient and the projection,
into the flow field's gradient.
"""

import functools

import warp as wp

from .common import helpers


@functools.cache
def build(scalar):
    """Forward and backward reprojection kernels for ``scalar`` (``wp.float32`` or ``wp.float64``)."""
    zero = scalar(0.0)
    one = scalar(1.0)
    half = scalar(0.5)
    zmin = scalar(1e-3)

    hp = helpers(scalar)
    expm1, sigmoid, cell, frac = hp.expm1, hp.sigmoid, hp.cell, hp.frac
    lerp3, lerp_at, scatter3 = hp.lerp3, hp.lerp_at, hp.scatter3

    @wp.func
    def bilerp(img: wp.array(dtype=scalar), o: int, w: int, ax: scalar, ay: scalar) -> scalar:
        return (img[o] * (one - ax) + img[o + 1] * ax) * (one - ay) + \
            (img[o + w] * (one - ax) + img[o + w + 1] * ax) * ay

    @wp.kernel(module="unique", enable_backward=False)
    def forward(sdf: wp.array(dtype=scalar), flow: wp.array(dtype=scalar), n_flow: int,
                nx: int, ny: int, nz: int, lx: scalar, ly: scalar, lz: scalar,
                vx: scalar, vy: scalar, vz: scalar,
                origins: wp.array(dtype=scalar), dirs: wp.array(dtype=scalar),
                t0: wp.array(dtype=scalar), t1: wp.array(dtype=scalar),
                edges: wp.array(dtype=scalar), stratified: int, n_rays: int, n_samples: int,
                inv_s: wp.array(dtype=scalar), thr: scalar, offset: int,
                n_chunks: int, t_start: wp.array(dtype=scalar),
                images: wp.array(dtype=scalar), n_targets: int, n_ch: int, height: int, width: int,
                intr: wp.array(dtype=scalar), pose: wp.array(dtype=scalar), scale: wp.array(dtype=scalar),
                src: wp.array(dtype=scalar),
                opacity: wp.array(dtype=scalar), col: wp.array(dtype=scalar), err: wp.array(dtype=scalar),
                cov: wp.array(dtype=scalar)):
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
        plane = height * width
        inv_ch = one / scalar(n_ch)

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
                acc_o += w
                tm = half * (tp + tn)
                px = ox + tm * dx
                py = oy + tm * dy
                pz = oz + tm * dz
                fx = zero
                fy = zero
                fz = zero
                if n_flow > 0:
                    mx = (px - lx) / vx
                    my = (py - ly) / vy
                    mz = (pz - lz) / vz
                    mi = cell(mx, nx)
                    mj = cell(my, ny)
                    mk = cell(mz, nz)
                    mfx = frac(mx, nx, mi)
                    mfy = frac(my, ny, mj)
                    mfz = frac(mz, nz, mk)
                    fo = b * n_flow * nvert + mi * sx + mj * sy + mk
                    fx = lerp3(flow, fo, sx, sy, mfx, mfy, mfz)
                    fy = lerp3(flow, fo + nvert, sx, sy, mfx, mfy, mfz)
                    if n_flow > 2:
                        fz = lerp3(flow, fo + 2 * nvert, sx, sy, mfx, mfy, mfz)
                for kk in range(n_targets):
                    bk = b * n_targets + kk
                    sc = scale[bk]
                    qx = px + sc * fx
                    qy = py + sc * fy
                    qz = pz + sc * fz
                    pb = bk * 16
                    cx = pose[pb] * qx + pose[pb + 1] * qy + pose[pb + 2] * qz + pose[pb + 3]
                    cy = pose[pb + 4] * qx + pose[pb + 5] * qy + pose[pb + 6] * qz + pose[pb + 7]
                    cz = pose[pb + 8] * qx + pose[pb + 9] * qy + pose[pb + 10] * qz + pose[pb + 11]
                    ib = bk * 9
                    h0 = intr[ib] * cx + intr[ib + 1] * cy + intr[ib + 2] * cz
                    h1 = intr[ib + 3] * cx + intr[ib + 4] * cy + intr[ib + 5] * cz
                    h2 = intr[ib + 6] * cx + intr[ib + 7] * cy + intr[ib + 8] * cz
                    if h2 > zmin:
                        u = h0 / h2
                        v = h1 / h2
                        if u >= zero and u <= scalar(width - 1) and v >= zero and v <= scalar(height - 1):
                            x0 = wp.min(int(wp.floor(u)), width - 2)
                            y0 = wp.min(int(wp.floor(v)), height - 2)
                            ax = u - scalar(x0)
                            ay = v - scalar(y0)
                            e_sum = zero
                            ok = tid * n_targets + kk
                            for ch in range(n_ch):
                                c = bilerp(images, (bk * n_ch + ch) * plane + y0 * width + x0, width, ax, ay)
                                col[ok * n_ch + ch] += w * c
                                e_sum += wp.abs(c - src[ray * n_ch + ch])
                            err[ok] += w * e_sum * inv_ch
                            cov[ok] += w
            trans = trans * (one - alpha)
            tp = tn
            ap = bn
        opacity[tid] = acc_o

    @wp.kernel(module="unique", enable_backward=False)
    def backward(sdf: wp.array(dtype=scalar), flow: wp.array(dtype=scalar), n_flow: int,
                 nx: int, ny: int, nz: int, lx: scalar, ly: scalar, lz: scalar,
                vx: scalar, vy: scalar, vz: scalar,
                 origins: wp.array(dtype=scalar), dirs: wp.array(dtype=scalar),
                 t0: wp.array(dtype=scalar), t1: wp.array(dtype=scalar),
                 edges: wp.array(dtype=scalar), stratified: int, n_rays: int, n_samples: int,
                 inv_s: wp.array(dtype=scalar), thr: scalar, offset: int,
                 n_chunks: int, t_start: wp.array(dtype=scalar), pre: wp.array(dtype=scalar),
                 images: wp.array(dtype=scalar), n_targets: int, n_ch: int, height: int, width: int,
                 intr: wp.array(dtype=scalar), pose: wp.array(dtype=scalar), scale: wp.array(dtype=scalar),
                 src: wp.array(dtype=scalar),
                 g_opacity: wp.array(dtype=scalar), g_col: wp.array(dtype=scalar),
                 g_err: wp.array(dtype=scalar), g_cov: wp.array(dtype=scalar), total: wp.array(dtype=scalar),
                 want_flow_grad: int, want_image_grad: int, vw_only: int,
                 grad_sdf: wp.array(dtype=scalar), grad_flow: wp.array(dtype=scalar),
                 grad_images: wp.array(dtype=scalar), grad_inv_s: wp.array(dtype=scalar)):
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
        plane = height * width
        inv_ch = one / scalar(n_ch)
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
        carry = zero
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
            fxx = frac(ux, nx, i)
            fyy = frac(uy, ny, j)
            fzz = frac(uz, nz, k)
            sn = lerp3(sdf, sdf_base + i * sx + j * sy + k, sx, sy, fxx, fyy, fzz)
            bn = s * sn
            alpha = zero
            active = bn <= ap
            if bn < ap:
                alpha = -expm1(bn - ap) * sigmoid(-bn)
            w = trans * alpha
            tnext = trans * (one - alpha)
            carry_next = zero
            if w != zero or active:
                v_i = go
                tm = half * (tp + tn)
                px = ox + tm * dx
                py = oy + tm * dy
                pz = oz + tm * dz
                fx = zero
                fy = zero
                fz = zero
                mi = 0
                mj = 0
                mk = 0
                mfx = zero
                mfy = zero
                mfz = zero
                fo = 0
                if n_flow > 0:
                    mx = (px - lx) / vx
                    my = (py - ly) / vy
                    mz = (pz - lz) / vz
                    mi = cell(mx, nx)
                    mj = cell(my, ny)
                    mk = cell(mz, nz)
                    mfx = frac(mx, nx, mi)
                    mfy = frac(my, ny, mj)
                    mfz = frac(mz, nz, mk)
                    fo = b * n_flow * nvert + mi * sx + mj * sy + mk
                    fx = lerp3(flow, fo, sx, sy, mfx, mfy, mfz)
                    fy = lerp3(flow, fo + nvert, sx, sy, mfx, mfy, mfz)
                    if n_flow > 2:
                        fz = lerp3(flow, fo + 2 * nvert, sx, sy, mfx, mfy, mfz)
                gfx = zero
                gfy = zero
                gfz = zero
                for kk in range(n_targets):
                    bk = b * n_targets + kk
                    sc = scale[bk]
                    qx = px + sc * fx
                    qy = py + sc * fy
                    qz = pz + sc * fz
                    pb = bk * 16
                    cx = pose[pb] * qx + pose[pb + 1] * qy + pose[pb + 2] * qz + pose[pb + 3]
                    cy = pose[pb + 4] * qx + pose[pb + 5] * qy + pose[pb + 6] * qz + pose[pb + 7]
                    cz = pose[pb + 8] * qx + pose[pb + 9] * qy + pose[pb + 10] * qz + pose[pb + 11]
                    ib = bk * 9
                    h0 = intr[ib] * cx + intr[ib + 1] * cy + intr[ib + 2] * cz
                    h1 = intr[ib + 3] * cx + intr[ib + 4] * cy + intr[ib + 5] * cz
                    h2 = intr[ib + 6] * cx + intr[ib + 7] * cy + intr[ib + 8] * cz
                    if h2 > zmin:
                        u = h0 / h2
                        v = h1 / h2
                        if u >= zero and u <= scalar(width - 1) and v >= zero and v <= scalar(height - 1):
                            x0 = wp.min(int(wp.floor(u)), width - 2)
                            y0 = wp.min(int(wp.floor(v)), height - 2)
                            ax = u - scalar(x0)
                            ay = v - scalar(y0)
                            ok = ray * n_targets + kk
                            ge = g_err[ok]
                            e_sum = zero
                            gu = zero
                            gv = zero
                            for ch in range(n_ch):
                                o = (bk * n_ch + ch) * plane + y0 * width + x0
                                i00 = images[o]
                                i01 = images[o + 1]
                                i10 = images[o + width]
                                i11 = images[o + width + 1]
                                c = (i00 * (one - ax) + i01 * ax) * (one - ay) + \
                                    (i10 * (one - ax) + i11 * ax) * ay
                                diff = c - src[ray * n_ch + ch]
                                e_sum += wp.abs(diff)
                                gc = g_col[ok * n_ch + ch]
                                v_i += gc * c
                                if w != zero:
                                    sgn = zero
                                    if diff > zero:
                                        sgn = one
                                    if diff < zero:
                                        sgn = -one
                                    gcc = w * (gc + ge * sgn * inv_ch)      # dL/dc for this channel
                                    if want_image_grad != 0:
                                        wp.atomic_add(grad_images, o, gcc * (one - ax) * (one - ay))
                                        wp.atomic_add(grad_images, o + 1, gcc * ax * (one - ay))
                                        wp.atomic_add(grad_images, o + width, gcc * (one - ax) * ay)
                                        wp.atomic_add(grad_images, o + width + 1, gcc * ax * ay)
                                    gu += gcc * ((one - ay) * (i01 - i00) + ay * (i11 - i10))
                                    gv += gcc * ((one - ax) * (i10 - i00) + ax * (i11 - i01))
                            v_i += ge * e_sum * inv_ch + g_cov[ok]
                            if w != zero and want_flow_grad != 0 and n_flow > 0:
                                # d(u, v)/d(camera point) = (K_row0 - u K_row2, K_row1 - v K_row2) / h2
                                gcx = (gu * (intr[ib] - u * intr[ib + 6])
                                       + gv * (intr[ib + 3] - v * intr[ib + 6])) / h2
                                gcy = (gu * (intr[ib + 1] - u * intr[ib + 7])
                                       + gv * (intr[ib + 4] - v * intr[ib + 7])) / h2
                                gcz = (gu * (intr[ib + 2] - u * intr[ib + 8])
                                       + gv * (intr[ib + 5] - v * intr[ib + 8])) / h2
                                gfx += sc * (pose[pb] * gcx + pose[pb + 4] * gcy + pose[pb + 8] * gcz)
                                gfy += sc * (pose[pb + 1] * gcx + pose[pb + 5] * gcy + pose[pb + 9] * gcz)
                                gfz += sc * (pose[pb + 2] * gcx + pose[pb + 6] * gcy + pose[pb + 10] * gcz)
                if w != zero and want_flow_grad != 0 and n_flow > 0:
                    scatter3(grad_flow, fo, sx, sy, mfx, mfy, mfz, gfx)
                    scatter3(grad_flow, fo + nvert, sx, sy, mfx, mfy, mfz, gfy)
                    if n_flow > 2:
                        scatter3(grad_flow, fo + 2 * nvert, sx, sy, mfx, mfy, mfz, gfz)
                prefix += v_i * w
                if active and vw_only == 0:
                    g = v_i * tnext - (s0 - prefix)
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
            pfx = fxx
            pfy = fyy
            pfz = fzz
        if carry != zero:
            scatter3(grad_sdf, sdf_base + pi * sx + pj * sy + pk, sx, sy, pfx, pfy, pfz, carry)
        if vw_only != 0:
            grad_inv_s[tid] = prefix      # pass A of the sample chunks: this chunk's sum of v_i w_i
        else:
            grad_inv_s[tid] = gs

    return forward, backward
