"""Warp kernels of the synthetic world: ray casting against the static and the moving-object mesh,
procedural textures and Lambertian shading. Kept in one small module (one compile)."""

from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False})

# Fine classes used by the texture patterns (mirrors _classes.py).
_ROAD = wp.constant(0)
_SIDEWALK = wp.constant(1)
_TERRAIN = wp.constant(2)
_OTHER_FLAT = wp.constant(3)
_BUILDING = wp.constant(4)
_FOLIAGE = wp.constant(8)
_HEDGE = wp.constant(9)
_CAR = wp.constant(12)
_PEDESTRIAN = wp.constant(17)
_CYCLIST = wp.constant(15)
_WHEEL = wp.constant(18)
_GLASS = wp.constant(19)
_ROAD_HALF = wp.constant(7.5)
_LANE = wp.constant(3.5)
_CROSS_HALF = wp.constant(6.0)
_CROSS_WALK = wp.constant(10.0)


@wp.struct
class Hit:
    t: float
    face: int
    which: int  # -1 none, 0 static mesh, 1 moving-object mesh
    normal: wp.vec3


@wp.func
def cast(
    static_mesh: wp.uint64, dyn_mesh: wp.uint64, has_dyn: int, o: wp.vec3, d: wp.vec3, max_t: float
) -> Hit:
    h = Hit()
    h.t = max_t
    h.face = -1
    h.which = -1
    h.normal = wp.vec3(0.0, 0.0, 1.0)
    q = wp.mesh_query_ray(static_mesh, o, d, max_t)
    if q.result:
        h.t = q.t
        h.face = q.face
        h.which = 0
        h.normal = q.normal
    if has_dyn != 0:
        q2 = wp.mesh_query_ray(dyn_mesh, o, d, h.t)
        if q2.result:
            if q2.t < h.t:
                h.t = q2.t
                h.face = q2.face
                h.which = 1
                h.normal = q2.normal
    return h


@wp.func
def mix32(x: wp.uint32) -> wp.uint32:
    x = x ^ (x >> wp.uint32(16))
    x = x * wp.uint32(0x7FEB352D)
    x = x ^ (x >> wp.uint32(15))
    x = x * wp.uint32(0x846CA68B)
    x = x ^ (x >> wp.uint32(16))
    return x


@wp.func
def lattice(i: int, j: int, k: int, seed: int) -> float:
    h = mix32(
        (wp.uint32(i + 1000000) * wp.uint32(73856093))
        ^ (wp.uint32(j + 1000000) * wp.uint32(19349663))
        ^ (wp.uint32(k + 1000000) * wp.uint32(83492791))
        ^ wp.uint32(seed)
    )
    return float(h >> wp.uint32(8)) / 16777216.0


@wp.func
def vnoise(p: wp.vec3, seed: int) -> float:
    fx = wp.floor(p[0])
    fy = wp.floor(p[1])
    fz = wp.floor(p[2])
    i = int(fx)
    j = int(fy)
    k = int(fz)
    tx = p[0] - fx
    ty = p[1] - fy
    tz = p[2] - fz
    sx = tx * tx * (3.0 - 2.0 * tx)
    sy = ty * ty * (3.0 - 2.0 * ty)
    sz = tz * tz * (3.0 - 2.0 * tz)
    a = wp.lerp(lattice(i, j, k, seed), lattice(i + 1, j, k, seed), sx)
    b = wp.lerp(lattice(i, j + 1, k, seed), lattice(i + 1, j + 1, k, seed), sx)
    c = wp.lerp(lattice(i, j, k + 1, seed), lattice(i + 1, j, k + 1, seed), sx)
    e = wp.lerp(lattice(i, j + 1, k + 1, seed), lattice(i + 1, j + 1, k + 1, seed), sx)
    return wp.lerp(wp.lerp(a, b, sy), wp.lerp(c, e, sy), sz)


@wp.func
def fbm(p: wp.vec3, freq: float, footprint: float, seed: int) -> float:
    """Zero-mean fractal value noise (about [-0.5, 0.5]); octaves finer than ~1.5 px fade out."""
    total = 0.0
    amp = 0.55
    f = freq
    for o in range(4):
        fade = wp.clamp(1.6 - 2.0 * footprint * f, 0.0, 1.0)
        total = total + amp * fade * (vnoise(p * f, seed + o * 7919) - 0.5)
        amp = amp * 0.55
        f = f * 2.17
    return total


@wp.func
def stripe(x: float, period: float, duty: float, footprint: float) -> float:
    """1 inside the first ``duty`` of each period, 0 outside, box-filtered by the pixel footprint."""
    u = x / period - wp.floor(x / period)
    w = wp.clamp(footprint / period, 0.0, 0.5)
    inside = 0.0
    if u < duty:
        inside = 1.0
    if w > 0.25:
        return duty
    return inside


@wp.func
def band(x: float, half: float, footprint: float) -> float:
    """Soft indicator of |x| < half, smoothed over one pixel footprint."""
    e = wp.max(footprint, 1e-3)
    return wp.clamp((half - wp.abs(x)) / e + 0.5, 0.0, 1.0) * wp.clamp(2.0 * half / e, 0.0, 1.0)


@wp.func
def albedo_at(
    fine: int,
    p: wp.vec3,
    n: wp.vec3,
    base: wp.vec3,
    tint: wp.vec3,
    instance: int,
    footprint: float,
    seed: int,
    cross: wp.array(dtype=float),
    n_cross: int,
) -> wp.vec3:
    """Procedural albedo of fine class ``fine`` at texture position ``p`` (map frame for static
    surfaces, object frame for agents)."""
    col = base
    if instance > 0:
        col = tint
    g = fbm(p, 1.3, footprint, seed + fine * 131)
    fine_grain = fbm(p, 9.0, footprint, seed + fine * 131 + 17)
    m = 1.0 + 0.9 * g + 0.5 * fine_grain
    if fine == _TERRAIN or fine == _FOLIAGE or fine == _HEDGE:
        m = 1.0 + 1.3 * g + 0.9 * fine_grain
    col = col * wp.max(m, 0.1)
    if fine == _ROAD:
        paint = 0.0
        dmin = 1e9
        for c in range(8):
            if c < n_cross:
                dmin = wp.min(dmin, wp.abs(p[0] - cross[c]))
        ay = wp.abs(p[1])
        if ay < _ROAD_HALF:
            if dmin > _CROSS_WALK:
                paint = wp.max(paint, band(p[1], 0.08, footprint) * stripe(p[0], 6.0, 0.5, footprint))
                paint = wp.max(paint, band(ay - _LANE, 0.07, footprint))
                paint = wp.max(paint, band(ay - _LANE - 1.5, 0.06, footprint))
            elif dmin > _CROSS_HALF + 0.5 and dmin < _CROSS_WALK - 0.5:
                paint = wp.max(paint, stripe(p[1], 1.0, 0.5, footprint))
        elif dmin < _CROSS_HALF:
            for c in range(8):
                dx = p[0] - cross[wp.min(c, n_cross - 1)]
                if c < n_cross and wp.abs(dx) < _CROSS_HALF:
                    paint = wp.max(paint, band(dx, 0.08, footprint) * stripe(p[1], 6.0, 0.5, footprint))
        col = wp.lerp(col, wp.vec3(0.85, 0.85, 0.82), paint * 0.9)
    elif fine == _SIDEWALK or fine == _OTHER_FLAT:
        tile = wp.max(
            band(p[0] - wp.round(p[0]), 0.03, footprint), band(p[1] - wp.round(p[1]), 0.03, footprint)
        )
        col = col * (1.0 - 0.35 * tile)
    elif fine == _BUILDING:
        h = p[0]
        if wp.abs(n[0]) > 0.5:
            h = p[1]
        win = stripe(h, 3.0, 0.55, footprint) * stripe(p[2] - 0.3, 3.2, 0.5, footprint)
        if p[2] < 1.2:
            win = 0.0
        col = wp.lerp(col, wp.vec3(0.12, 0.15, 0.2) * (1.0 + 0.8 * fine_grain), win * 0.85)
    elif fine == _GLASS:
        col = base * (1.0 + 1.2 * g)
    return col


@wp.func
def instance_tint(instance: int, base: wp.vec3) -> wp.vec3:
    h = mix32(wp.uint32(instance) * wp.uint32(2654435761))
    r = float(h & wp.uint32(255)) / 255.0
    g = float((h >> wp.uint32(8)) & wp.uint32(255)) / 255.0
    b = float((h >> wp.uint32(16)) & wp.uint32(255)) / 255.0
    return 0.5 * base + 0.5 * wp.vec3(r, g, b)


@wp.func
def sky(d: wp.vec3) -> wp.vec3:
    e = wp.clamp(d[2], 0.0, 1.0)
    return wp.lerp(wp.vec3(0.78, 0.84, 0.92), wp.vec3(0.36, 0.55, 0.86), wp.sqrt(e))


@wp.kernel
def render_cameras(
    static_mesh: wp.uint64,
    dyn_mesh: wp.uint64,
    has_dyn: int,
    static_fine: wp.array(dtype=wp.int32),
    dyn_fine: wp.array(dtype=wp.int32),
    dyn_agent: wp.array(dtype=wp.int32),
    agent_occ: wp.array(dtype=wp.int32),
    agent_inst: wp.array(dtype=wp.int32),
    map_to_agent: wp.array(dtype=wp.mat44),
    fine_occ: wp.array(dtype=wp.int32),
    albedo: wp.array(dtype=wp.vec3),
    k_inv: wp.array(dtype=wp.mat33),
    cam_rot: wp.array(dtype=wp.mat33),
    cam_pos: wp.array(dtype=wp.vec3),
    inv_focal: wp.array(dtype=float),
    width: int,
    height: int,
    max_t: float,
    cross: wp.array(dtype=float),
    n_cross: int,
    sun: wp.vec3,
    seed: int,
    offset: int,
    out_rgb: wp.array(dtype=wp.vec3),
    out_depth: wp.array(dtype=float),
    out_sem: wp.array(dtype=wp.int32),
    out_inst: wp.array(dtype=wp.int32),
    out_agent: wp.array(dtype=wp.int32),
    out_point: wp.array(dtype=wp.vec3),
):
    tid = wp.tid() + offset
    npix = width * height
    cam = tid / npix
    pix = tid - cam * npix
    py = pix / width
    px = pix - py * width
    dc = k_inv[cam] * wp.vec3(float(px), float(py), 1.0)
    d = wp.normalize(cam_rot[cam] * dc)
    o = cam_pos[cam]
    h = cast(static_mesh, dyn_mesh, has_dyn, o, d, max_t)
    if h.which < 0:
        out_rgb[tid] = sky(d)
        out_depth[tid] = 0.0
        out_sem[tid] = 17
        out_inst[tid] = 0
        out_agent[tid] = -2
        out_point[tid] = o + d * max_t
        return
    p = o + d * h.t
    n = wp.normalize(h.normal)
    if wp.dot(n, d) > 0.0:
        n = -n
    # z-depth along the optical axis: t times the cosine to the axis (third row of cam_rot^T).
    z = h.t * wp.dot(d, wp.vec3(cam_rot[cam][0, 2], cam_rot[cam][1, 2], cam_rot[cam][2, 2]))
    footprint = h.t * inv_focal[cam]
    fine = 0
    inst = 0
    agent = -1
    sem = 0
    tp = p
    tn = n
    tint = wp.vec3(0.0)
    if h.which == 0:
        fine = static_fine[h.face]
        sem = fine_occ[fine]
    else:
        fine = dyn_fine[h.face]
        agent = dyn_agent[h.face]
        inst = agent_inst[agent]
        sem = agent_occ[agent]
        m = map_to_agent[agent]
        tp = wp.transform_point(m, p)
        tn = wp.transform_vector(m, n)
        tint = instance_tint(inst, albedo[fine])
        if fine == _WHEEL or fine == _GLASS:
            inst_col = albedo[fine]
            tint = inst_col
    col = albedo_at(fine, tp, tn, albedo[fine], tint, inst, footprint, seed, cross, n_cross)
    shade = 0.42 + 0.58 * wp.max(wp.dot(n, sun), 0.0)
    out_rgb[tid] = col * shade
    out_depth[tid] = z
    out_sem[tid] = sem
    out_inst[tid] = inst
    out_agent[tid] = agent
    out_point[tid] = p


@wp.kernel
def render_lidar(
    static_mesh: wp.uint64,
    dyn_mesh: wp.uint64,
    has_dyn: int,
    static_fine: wp.array(dtype=wp.int32),
    dyn_fine: wp.array(dtype=wp.int32),
    dyn_agent: wp.array(dtype=wp.int32),
    agent_occ: wp.array(dtype=wp.int32),
    agent_inst: wp.array(dtype=wp.int32),
    fine_occ: wp.array(dtype=wp.int32),
    albedo: wp.array(dtype=wp.vec3),
    origin: wp.vec3,
    dirs: wp.array(dtype=wp.vec3),
    max_t: float,
    out_t: wp.array(dtype=float),
    out_sem: wp.array(dtype=wp.int32),
    out_inst: wp.array(dtype=wp.int32),
    out_agent: wp.array(dtype=wp.int32),
    out_fine: wp.array(dtype=wp.int32),
    out_intensity: wp.array(dtype=float),
    out_normal: wp.array(dtype=wp.vec3),
):
    tid = wp.tid()
    d = dirs[tid]
    h = cast(static_mesh, dyn_mesh, has_dyn, origin, d, max_t)
    if h.which < 0:
        out_t[tid] = 0.0
        out_sem[tid] = 17
        out_inst[tid] = 0
        out_agent[tid] = -2
        out_fine[tid] = -1
        out_intensity[tid] = 0.0
        out_normal[tid] = wp.vec3(0.0)
        return
    fine = 0
    if h.which == 0:
        fine = static_fine[h.face]
        out_sem[tid] = fine_occ[fine]
        out_inst[tid] = 0
        out_agent[tid] = -1
    else:
        fine = dyn_fine[h.face]
        a = dyn_agent[h.face]
        out_sem[tid] = agent_occ[a]
        out_inst[tid] = agent_inst[a]
        out_agent[tid] = a
    n = wp.normalize(h.normal)
    if wp.dot(n, d) > 0.0:
        n = -n
    out_normal[tid] = n
    c = albedo[fine]
    out_t[tid] = h.t
    out_fine[tid] = fine
    out_intensity[tid] = 255.0 * wp.abs(wp.dot(n, d)) * (c[0] + c[1] + c[2]) / 3.0
