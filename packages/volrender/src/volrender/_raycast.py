"""Voxel ray casting: the first occupied cell along each ray (exact Amanatides-Woo traversal)."""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import torch

from ._grid import GridSpec

_FAR = 1.0e300
_RAYS_PER_THREAD = 16384   # smallest CPU work share worth a thread


@dataclass(frozen=True)
class VoxelHits:
    """Result of :func:`raycast_voxels`. All distances are metres along the unit ray direction.

    Attributes:
        hit: ``[B, R]`` bool, whether an occupied cell was met before ``max_distance``.
        entry: ``[B, R]`` distance at which the ray enters the first occupied cell. Without a hit:
            the distance at which the ray leaves the grid, or ``max_distance`` if that comes first
            (0 for a ray that never enters the grid).
        exit: ``[B, R]`` distance at which the ray leaves the first occupied cell (not clipped to
            ``max_distance``). Without a hit: equal to ``entry``.
        index: ``[B, R, 3]`` long ``(i, j, k)`` cell index of the first occupied cell, -1 without a hit.
        entered: ``[B, R]`` bool, whether the ray passes through the grid's box at all before
            ``max_distance`` (a segment of positive length inside the closed box).
    """

    hit: torch.Tensor
    entry: torch.Tensor
    exit: torch.Tensor
    index: torch.Tensor
    entered: torch.Tensor


def raycast_voxels(occupied: torch.Tensor, grid: GridSpec, origins: torch.Tensor, directions: torch.Tensor,
                   max_distance: float, *, backend: Literal["warp", "torch"] = "warp") -> VoxelHits:
    """Find the first occupied cell along each ray by exact voxel traversal (Amanatides & Woo, 1987).

    A ray starting outside the grid's box is first clipped to the box (slab test) and the
    traversal starts in the cell where it enters. Cells are visited in the order the ray crosses
    them; when the ray crosses two or three cell faces at exactly the same distance, it steps along
    z first, then y, then x (the order of SparseOcc's RayIoU caster, so both visit the same cells).
    A point exactly on a face between two cells belongs to the cell with the larger index
    (``floor``); points on the box's outer faces belong to the boundary cells. All arithmetic is
    float64. Not differentiable.

    Args:
        occupied: ``[B, NX, NY, NZ]`` bool occupancy of the cells of ``grid`` (cell ``(i, j, k)``
            spans ``lower + [i, i + 1] * voxel_size`` along x, and likewise along y and z).
        grid: the box and its cells; ``occupied.shape[1:]`` must equal ``grid.cells``.
        origins: ``[B, R, 3]`` ray origins in the grid's frame, metres (float32 or float64).
        directions: ``[B, R, 3]`` unit ray directions (norm within 1e-4 of 1), same dtype.
        max_distance: rays stop after this distance, metres (> 0; ``math.inf`` allowed).
        backend: "warp" (Warp kernel, CPU or CUDA; same code on both) or "torch" (pure-PyTorch
            reference, slow; used by the tests).

    Returns:
        :class:`VoxelHits` on the device of the inputs; ``entry`` and ``exit`` in the dtype of
        ``origins``.

    >>> import torch
    >>> from volrender import GridSpec, raycast_voxels
    >>> grid = GridSpec((0.0, 0.0, 0.0), (10.0, 1.0, 1.0), (10, 1, 1))
    >>> occ = torch.zeros(1, 10, 1, 1, dtype=torch.bool); occ[0, 4] = True   # a wall at x = 4 m
    >>> out = raycast_voxels(occ, grid, torch.tensor([[[0.5, 0.5, 0.5]]]),
    ...                      torch.tensor([[[1.0, 0.0, 0.0]]]), 100.0, backend="torch")
    >>> out.hit.item(), out.entry.item(), out.exit.item(), out.index.tolist()
    (True, 3.5, 4.5, [[[4, 0, 0]]])
    """
    _validate(occupied, grid, origins, directions, max_distance, backend)
    batch, rays = origins.shape[:2]
    dtype, device = origins.dtype, origins.device
    if batch * rays == 0:
        empty = torch.zeros(batch, rays, dtype=dtype, device=device)
        return VoxelHits(hit=torch.zeros(batch, rays, dtype=torch.bool, device=device), entry=empty,
                         exit=empty.clone(), index=torch.full((batch, rays, 3), -1, dtype=torch.long,
                                                              device=device),
                         entered=torch.zeros(batch, rays, dtype=torch.bool, device=device))
    fn = _raycast_warp if backend == "warp" else _raycast_torch
    hit, entered, entry, exit_, index = fn(occupied, grid, origins.to(torch.float64),
                                           directions.to(torch.float64), float(max_distance))
    return VoxelHits(hit=hit, entry=entry.to(dtype), exit=exit_.to(dtype), index=index, entered=entered)


def _validate(occupied, grid, origins, directions, max_distance, backend) -> None:
    if backend not in ("warp", "torch"):
        raise ValueError(f"backend must be 'warp' or 'torch', got {backend!r}")
    if not isinstance(grid, GridSpec):
        raise TypeError(f"grid must be a volrender.GridSpec, got {type(grid).__name__}")
    for name, value in (("occupied", occupied), ("origins", origins), ("directions", directions)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if occupied.dtype != torch.bool:
        raise ValueError(f"occupied must be a bool tensor, got {occupied.dtype}")
    if occupied.ndim != 4 or tuple(occupied.shape[1:]) != grid.cells:
        raise ValueError(f"occupied must have shape [B, {', '.join(map(str, grid.cells))}] "
                         f"(B, grid.cells), got {tuple(occupied.shape)}")
    if origins.ndim != 3 or origins.shape[-1] != 3 or origins.shape[0] != occupied.shape[0]:
        raise ValueError(f"origins must have shape [B, R, 3] with B = {occupied.shape[0]} "
                         f"(occupied's batch), got {tuple(origins.shape)}")
    if directions.shape != origins.shape:
        raise ValueError(f"directions must have the shape of origins {tuple(origins.shape)}, "
                         f"got {tuple(directions.shape)}")
    if origins.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"origins must be float32 or float64, got {origins.dtype}")
    if directions.dtype != origins.dtype:
        raise ValueError(f"directions must have the dtype of origins ({origins.dtype}), "
                         f"got {directions.dtype}")
    if occupied.device != origins.device or directions.device != origins.device:
        raise ValueError(f"occupied, origins and directions must be on one device, got {occupied.device}, "
                         f"{origins.device} and {directions.device}")
    if not bool(torch.isfinite(origins).all()):
        raise ValueError("origins must be finite (found NaN or inf)")
    if not bool(torch.isfinite(directions).all()):
        raise ValueError("directions must be finite (found NaN or inf)")
    if directions.numel() and not bool(((directions.to(torch.float64).norm(dim=-1) - 1).abs() <= 1e-4).all()):
        raise ValueError("directions must be unit vectors (norm within 1e-4 of 1)")
    if isinstance(max_distance, bool) or not isinstance(max_distance, int | float):
        raise TypeError(f"max_distance must be a float, got {type(max_distance).__name__}")
    if math.isnan(max_distance) or max_distance <= 0:
        raise ValueError(f"max_distance must be > 0, got {max_distance}")


# ------------------------------------------------------------------------------------ warp
@functools.cache
def _warp():
    """Import and initialise Warp once (lazily, on the first Warp launch)."""
    import warp as wp

    wp.config.log_level = wp.LOG_WARNING
    wp.init()
    from ._kernels import raycast

    return wp, raycast


def _raycast_warp(occupied, grid, origins, directions, max_distance):
    wp, kernels = _warp()
    batch, rays = origins.shape[:2]
    n = batch * rays
    device = origins.device
    occ = occupied.contiguous().view(torch.uint8)
    o = origins.reshape(n, 3).contiguous()
    d = directions.reshape(n, 3).contiguous()
    hit = torch.empty(n, dtype=torch.uint8, device=device)
    entered = torch.empty(n, dtype=torch.uint8, device=device)
    entry = torch.empty(n, dtype=torch.float64, device=device)
    exit_ = torch.empty(n, dtype=torch.float64, device=device)
    index = torch.empty(n, 3, dtype=torch.int32, device=device)
    wp_device = wp.device_from_torch(device)
    inputs = [wp.from_torch(occ, dtype=wp.uint8), wp.from_torch(o, dtype=wp.vec3d),
              wp.from_torch(d, dtype=wp.vec3d), wp.vec3d(*grid.lower), wp.vec3d(*grid.upper),
              wp.vec3d(*_voxel_size(grid)), *grid.cells, rays]
    far = max_distance if math.isfinite(max_distance) else _FAR
    outputs = [wp.from_torch(hit, dtype=wp.uint8), wp.from_torch(entered, dtype=wp.uint8),
               wp.from_torch(entry, dtype=wp.float64), wp.from_torch(exit_, dtype=wp.float64),
               wp.from_torch(index, dtype=wp.int32)]

    def launch(first: int, count: int) -> None:
        wp.launch(kernels.raycast_first_hit, dim=count, inputs=[*inputs, first, far], outputs=outputs,
                  device=wp_device)

    if device.type == "cuda":
        with wp.ScopedStream(wp.stream_from_torch(device)):
            launch(0, n)
    else:
        # Warp's CPU kernels run on one thread; ray ranges go to torch.get_num_threads() threads (the
        # launch releases the GIL). Each thread writes a disjoint slice of the outputs.
        workers = min(torch.get_num_threads(), n // _RAYS_PER_THREAD) if n >= 2 * _RAYS_PER_THREAD else 1
        if workers <= 1:
            launch(0, n)
        else:
            bounds = [n * i // workers for i in range(workers + 1)]
            with ThreadPoolExecutor(workers) as pool:
                spans = zip(bounds[:-1], bounds[1:], strict=True)
                jobs = [pool.submit(launch, lo, hi - lo) for lo, hi in spans]
                for job in jobs:
                    job.result()
    shape = (batch, rays)
    return (hit.view(shape).bool(), entered.view(shape).bool(), entry.view(shape), exit_.view(shape),
            index.view(batch, rays, 3).long())


def _voxel_size(grid: GridSpec) -> tuple[float, float, float]:
    # Unrounded edge lengths (GridSpec.voxel_size rounds to 1e-9 m for display).
    return tuple((u - lo) / n for lo, u, n in zip(grid.lower, grid.upper, grid.cells, strict=True))


# ----------------------------------------------------------------------------- reference
def _raycast_torch(occupied, grid, origins, directions, max_distance):
    """Pure-PyTorch twin of the Warp kernel (same float64 operations, vectorised over rays)."""
    batch, rays = origins.shape[:2]
    device = origins.device
    f64 = dict(dtype=torch.float64, device=device)
    o = origins.reshape(-1, 3)
    d = directions.reshape(-1, 3)
    n = o.shape[0]
    lower = torch.tensor(grid.lower, **f64)
    upper = torch.tensor(grid.upper, **f64)
    vs = torch.tensor(_voxel_size(grid), **f64)
    cells = torch.tensor(grid.cells, dtype=torch.long, device=device)
    b_of = torch.arange(n, device=device) // rays
    far = torch.tensor(_FAR, **f64)
    tmax_ray = max_distance if math.isfinite(max_distance) else _FAR

    # Slab test.
    t_near = torch.zeros(n, **f64)
    t_far = torch.full((n,), tmax_ray, **f64)
    for a in range(3):
        flat = d[:, a] == 0
        safe = torch.where(flat, torch.ones_like(d[:, a]), d[:, a])
        ta = (lower[a] - o[:, a]) / safe
        tb = (upper[a] - o[:, a]) / safe
        out = flat & ((o[:, a] < lower[a]) | (o[:, a] > upper[a]))
        t_near = torch.where(flat, t_near, torch.maximum(t_near, torch.minimum(ta, tb)))
        t_far = torch.where(flat, t_far, torch.minimum(t_far, torch.maximum(ta, tb)))
        t_near = torch.where(out, torch.ones_like(t_near), t_near)
        t_far = torch.where(out, torch.zeros_like(t_far), t_far)
    entered = t_near < t_far

    # Start cell and first face crossings.
    p = o + t_near[:, None] * d
    idx = torch.floor((p - lower) / vs).long().clamp(min=torch.zeros_like(cells), max=cells - 1)
    idx_f = idx.to(torch.float64)
    pos = d > 0
    neg = d < 0
    safe_d = torch.where(d == 0, torch.ones_like(d), d)
    t_cross = torch.where(pos, (lower + (idx_f + 1) * vs - o) / safe_d,
                          torch.where(neg, (lower + idx_f * vs - o) / safe_d, far))
    t_delta = torch.where(d == 0, far, vs / torch.where(d == 0, torch.ones_like(d), d.abs()))
    step = torch.where(neg, -1, 1)

    hit = torch.zeros(n, dtype=torch.bool, device=device)
    entry = torch.zeros(n, **f64)
    exit_ = torch.zeros(n, **f64)
    index = torch.full((n, 3), -1, dtype=torch.long, device=device)
    t_in = t_near.clone()
    active = entered.clone()
    occ = occupied
    rows = torch.arange(n, device=device)
    while bool(active.any()):
        ids = rows[active]
        ci = idx[ids]
        is_occ = occ[b_of[ids], ci[:, 0], ci[:, 1], ci[:, 2]]
        tc = t_cross[ids]
        if bool(is_occ.any()):
            h = ids[is_occ]
            hit[h] = True
            entry[h] = t_in[h]
            exit_[h] = tc[is_occ].min(dim=1).values
            index[h] = ci[is_occ]
            active[h] = False
        go = ids[~is_occ]
        if go.numel() == 0:
            continue
        tc = t_cross[go]
        tx, ty, tz = tc[:, 0], tc[:, 1], tc[:, 2]
        axis = torch.where((tx < ty) & (tx < tz), 0, torch.where((ty <= tx) & (ty < tz), 1, 2))
        t_next = tc.gather(1, axis[:, None])[:, 0]
        new_idx = idx[go].clone()
        new_idx[torch.arange(go.numel(), device=device), axis] += step[go].gather(1, axis[:, None])[:, 0]
        new_cross = tc.clone()
        new_cross[torch.arange(go.numel(), device=device), axis] += t_delta[go].gather(1, axis[:, None])[:, 0]
        moved = new_idx.gather(1, axis[:, None])[:, 0]
        outside = (moved < 0) | (moved >= cells[axis])
        stop = outside | (t_next >= tmax_ray)
        s = go[stop]
        t_end = torch.clamp(t_next[stop], max=tmax_ray)
        entry[s] = t_end
        exit_[s] = t_end
        active[s] = False
        idx[go] = new_idx
        t_cross[go] = new_cross
        t_in[go] = t_next
    shape = (batch, rays)
    return (hit.view(shape), entered.view(shape), entry.view(shape), exit_.view(shape),
            index.view(batch, rays, 3))
