"""Warp kernel: exact Amanatides-Woo traversal of a cell grid, first occupied voxel per ray.

Everything is computed in float64 so that the traversal order of nearly tied boundary crossings
matches the pure-PyTorch reference (``volrender._raycast._raycast_torch``) operation for
operation. Inputs are validated by ``volrender.raycast_voxels``; the kernel assumes contiguous
arrays. Not differentiable (the outputs are piecewise constant in the inputs).
"""

import warp as wp

_FAR = wp.constant(wp.float64(1.0e300))


@wp.func
def _slab(o: wp.float64, d: wp.float64, lo: wp.float64, hi: wp.float64, t: wp.vec2d) -> wp.vec2d:
    # Clip the parameter interval t = (t_near, t_far) to one axis slab [lo, hi].
    if d == wp.float64(0.0):
        if o < lo or o > hi:
            return wp.vec2d(wp.float64(1.0), wp.float64(0.0))
        return t
    ta = (lo - o) / d
    tb = (hi - o) / d
    return wp.vec2d(wp.max(t[0], wp.min(ta, tb)), wp.min(t[1], wp.max(ta, tb)))


@wp.func
def _start_cell(p: wp.float64, lo: wp.float64, vs: wp.float64, n: int) -> int:
    i = int(wp.floor((p - lo) / vs))
    return wp.clamp(i, 0, n - 1)


@wp.func
def _first_crossing(o: wp.float64, d: wp.float64, lo: wp.float64, vs: wp.float64, i: int) -> wp.float64:
    # Distance along the ray to the first cell face crossed along this axis.
    if d > wp.float64(0.0):
        return (lo + wp.float64(i + 1) * vs - o) / d
    if d < wp.float64(0.0):
        return (lo + wp.float64(i) * vs - o) / d
    return _FAR


@wp.func
def _delta(d: wp.float64, vs: wp.float64) -> wp.float64:
    if d == wp.float64(0.0):
        return _FAR
    return vs / wp.abs(d)


@wp.func
def _sign(d: wp.float64) -> int:
    if d < wp.float64(0.0):
        return -1
    return 1


@wp.kernel
def raycast_first_hit(
    occupied: wp.array4d(dtype=wp.uint8),
    origins: wp.array(dtype=wp.vec3d),
    directions: wp.array(dtype=wp.vec3d),
    lower: wp.vec3d,
    upper: wp.vec3d,
    voxel: wp.vec3d,
    nx: int,
    ny: int,
    nz: int,
    rays_per_batch: int,
    first_ray: int,
    max_distance: wp.float64,
    hit: wp.array(dtype=wp.uint8),
    entered: wp.array(dtype=wp.uint8),
    entry: wp.array(dtype=wp.float64),
    exit_: wp.array(dtype=wp.float64),
    index: wp.array2d(dtype=wp.int32),
):
    tid = wp.tid() + first_ray
    b = tid // rays_per_batch
    o = origins[tid]
    d = directions[tid]
    index[tid, 0] = -1
    index[tid, 1] = -1
    index[tid, 2] = -1
    hit[tid] = wp.uint8(0)

    t = wp.vec2d(wp.float64(0.0), max_distance)
    t = _slab(o[0], d[0], lower[0], upper[0], t)
    t = _slab(o[1], d[1], lower[1], upper[1], t)
    t = _slab(o[2], d[2], lower[2], upper[2], t)
    if not (t[0] < t[1]):
        entered[tid] = wp.uint8(0)
        entry[tid] = wp.float64(0.0)
        exit_[tid] = wp.float64(0.0)
        return
    entered[tid] = wp.uint8(1)

    t_in = t[0]
    ix = _start_cell(o[0] + t_in * d[0], lower[0], voxel[0], nx)
    iy = _start_cell(o[1] + t_in * d[1], lower[1], voxel[1], ny)
    iz = _start_cell(o[2] + t_in * d[2], lower[2], voxel[2], nz)
    tx = _first_crossing(o[0], d[0], lower[0], voxel[0], ix)
    ty = _first_crossing(o[1], d[1], lower[1], voxel[1], iy)
    tz = _first_crossing(o[2], d[2], lower[2], voxel[2], iz)
    dtx = _delta(d[0], voxel[0])
    dty = _delta(d[1], voxel[1])
    dtz = _delta(d[2], voxel[2])
    sx = _sign(d[0])
    sy = _sign(d[1])
    sz = _sign(d[2])

    while True:
        if occupied[b, ix, iy, iz] != wp.uint8(0):
            hit[tid] = wp.uint8(1)
            entry[tid] = t_in
            exit_[tid] = wp.min(tx, wp.min(ty, tz))
            index[tid, 0] = ix
            index[tid, 1] = iy
            index[tid, 2] = iz
            return
        # Step along the axis whose face comes first; ties go to z, then y (SparseOcc's order).
        t_next = wp.float64(0.0)
        outside = False
        if tx < ty and tx < tz:
            t_next = tx
            ix = ix + sx
            tx = tx + dtx
            outside = ix < 0 or ix >= nx
        elif ty <= tx and ty < tz:
            t_next = ty
            iy = iy + sy
            ty = ty + dty
            outside = iy < 0 or iy >= ny
        else:
            t_next = tz
            iz = iz + sz
            tz = tz + dtz
            outside = iz < 0 or iz >= nz
        if outside or t_next >= max_distance:
            t_end = wp.min(t_next, max_distance)
            entry[tid] = t_end
            exit_[tid] = t_end
            return
        t_in = t_next
