"""Warp kernels for ground-truth visibility masks (one small module, no backward)."""

from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False})


@wp.kernel
def camera_visibility(
    centres: wp.array(dtype=wp.vec3),
    ego_to_cam: wp.array(dtype=wp.mat44),
    intr: wp.array(dtype=wp.vec4),
    depth: wp.array(dtype=float),
    n_cams: int,
    width: int,
    height: int,
    tol: float,
    out: wp.array(dtype=wp.uint8),
):
    """out[v] = 1 if voxel centre v projects into some camera and is not behind its depth + tol."""
    v = wp.tid()
    p = centres[v]
    seen = wp.uint8(0)
    for c in range(n_cams):
        q = wp.transform_point(ego_to_cam[c], p)
        if q[2] > 0.05:
            k = intr[c]
            u = int(wp.round(k[0] * q[0] / q[2] + k[2]))
            w = int(wp.round(k[1] * q[1] / q[2] + k[3]))
            if u >= 0 and w >= 0 and u < width and w < height:
                d = depth[(c * height + w) * width + u]
                if d <= 0.0 or q[2] <= d + tol:
                    seen = wp.uint8(1)
    out[v] = seen


@wp.kernel
def lidar_traverse(
    origin: wp.vec3,
    dirs: wp.array(dtype=wp.vec3),
    ranges: wp.array(dtype=float),
    lower: wp.vec3,
    vsize: wp.vec3,
    nx: int,
    ny: int,
    nz: int,
    max_range: float,
    out: wp.array(dtype=wp.uint8),
):
    """Mark every voxel a LiDAR ray crosses up to and including the one holding its hit
    (Amanatides-Woo traversal; rays without a hit run to ``max_range``)."""
    r = wp.tid()
    d = dirs[r]
    t_end = ranges[r]
    if t_end <= 0.0:
        t_end = max_range
    upper = wp.vec3(
        lower[0] + vsize[0] * float(nx), lower[1] + vsize[1] * float(ny), lower[2] + vsize[2] * float(nz)
    )
    t0 = 0.0
    t1 = t_end + 1e-4
    for a in range(3):
        if wp.abs(d[a]) < 1e-12:
            if origin[a] < lower[a] or origin[a] > upper[a]:
                return
        else:
            ta = (lower[a] - origin[a]) / d[a]
            tb = (upper[a] - origin[a]) / d[a]
            t0 = wp.max(t0, wp.min(ta, tb))
            t1 = wp.min(t1, wp.max(ta, tb))
    if t1 <= t0:
        return
    p = origin + d * (t0 + 1e-6)
    i = wp.clamp(int(wp.floor((p[0] - lower[0]) / vsize[0])), 0, nx - 1)
    j = wp.clamp(int(wp.floor((p[1] - lower[1]) / vsize[1])), 0, ny - 1)
    k = wp.clamp(int(wp.floor((p[2] - lower[2]) / vsize[2])), 0, nz - 1)
    si = 1
    sj = 1
    sk = 1
    if d[0] < 0.0:
        si = -1
    if d[1] < 0.0:
        sj = -1
    if d[2] < 0.0:
        sk = -1
    big = 1e30
    tmx = big
    tmy = big
    tmz = big
    dx = big
    dy = big
    dz = big
    if wp.abs(d[0]) > 1e-12:
        bx = lower[0] + vsize[0] * float(i + wp.max(si, 0))
        tmx = (bx - origin[0]) / d[0]
        dx = vsize[0] / wp.abs(d[0])
    if wp.abs(d[1]) > 1e-12:
        by = lower[1] + vsize[1] * float(j + wp.max(sj, 0))
        tmy = (by - origin[1]) / d[1]
        dy = vsize[1] / wp.abs(d[1])
    if wp.abs(d[2]) > 1e-12:
        bz = lower[2] + vsize[2] * float(k + wp.max(sk, 0))
        tmz = (bz - origin[2]) / d[2]
        dz = vsize[2] / wp.abs(d[2])
    t = t0
    while t <= t1:
        out[(i * ny + j) * nz + k] = wp.uint8(1)
        if tmx <= tmy and tmx <= tmz:
            t = tmx
            tmx = tmx + dx
            i = i + si
            if i < 0 or i >= nx:
                return
        elif tmy <= tmz:
            t = tmy
            tmy = tmy + dy
            j = j + sj
            if j < 0 or j >= ny:
                return
        else:
            t = tmz
            tmz = tmz + dz
            k = k + sk
            if k < 0 or k >= nz:
                return
