"""Pure-PyTorch twins of the Warp kernels (``backend="torch"``).

Everything here is vectorised torch and differentiable by autograd. The functions assume inputs
that the public functions in ``_render.py`` have already validated. They are the ground truth
the Warp kernels are tested against, so they favour clarity over speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._grid import GridSpec


# ---------------------------------------------------------------------------------------------- rays
def ray_box_interval(origins: torch.Tensor, directions: torch.Tensor, grid: GridSpec,
                     near: torch.Tensor, far: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test: where each ray enters and leaves the grid's box, clipped to ``[near, far]``.

    Args:
        origins, directions: ``[B, R, 3]`` (directions unit length; zero components allowed).
        near, far: ``[B, R]`` distances along the ray, metres.

    Returns:
        ``(t0, t1)``, each ``[B, R]``: the ray's segment inside the box; ``t1 <= t0`` means a miss.
    """
    lower = torch.tensor(grid.lower, dtype=origins.dtype, device=origins.device)
    upper = torch.tensor(grid.upper, dtype=origins.dtype, device=origins.device)
    zero = directions == 0
    safe = torch.where(zero, torch.ones_like(directions), directions)
    ta = (lower - origins) / safe
    tb = (upper - origins) / safe
    inside = (origins >= lower) & (origins <= upper)
    inf = torch.full_like(ta, float("inf"))
    t_lo = torch.where(zero, torch.where(inside, -inf, inf), torch.minimum(ta, tb))
    t_hi = torch.where(zero, torch.where(inside, inf, -inf), torch.maximum(ta, tb))
    t0 = torch.maximum(t_lo.amax(dim=-1), near)
    t1 = torch.minimum(t_hi.amin(dim=-1), far)
    return t0, t1


def stratified_edges(shape: tuple[int, int], n_samples: int, generator: torch.Generator | None,
                     dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Jittered interval boundaries ``[B, R, S + 1]`` in units of the interval length.

    Boundary ``k`` is drawn uniformly in ``[k - 1/2, k + 1/2]`` (``[0, 1/2]`` for the first,
    ``[S - 1/2, S]`` for the last), so boundaries stay ordered and the ray's whole segment is
    covered. Without jitter boundary ``k`` is at ``k``.
    """
    gen_device = generator.device if generator is not None else device
    u = torch.rand((*shape, n_samples + 1), generator=generator, dtype=dtype, device=gen_device)
    u = u.to(device)
    k = torch.arange(n_samples + 1, dtype=dtype, device=device)
    lo = (k - 0.5).clamp(min=0.0)
    hi = (k + 0.5).clamp(max=float(n_samples))
    return lo + (hi - lo) * u


def sample_boundaries(t0: torch.Tensor, t1: torch.Tensor, n_samples: int,
                      edges: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval boundaries ``[B, R, S + 1]`` and a hit mask ``[B, R]``.

    ``t_k = t0 + e_k * (t1 - t0) / S`` with ``e_k = k`` or the jittered ``edges``. Missed rays get
    an empty segment (all boundaries 0).
    """
    hit = t1 > t0
    t0 = torch.where(hit, t0, torch.zeros_like(t0))
    dt = torch.where(hit, (t1 - t0) / n_samples, torch.zeros_like(t0))
    if edges is None:
        edges = torch.arange(n_samples + 1, dtype=t0.dtype, device=t0.device)
    return t0[..., None] + edges * dt[..., None], hit


# ------------------------------------------------------------------------------------- interpolation
def to_grid_sample_coords(points: torch.Tensor, grid: GridSpec) -> torch.Tensor:
    """World points ``[B, ..., 3]`` to ``grid_sample`` coordinates for a vertex grid ``[B, C, X, Y, Z]``.

    ``grid_sample`` wants (w, h, d) = (z, y, x) in [-1, 1] with ``align_corners=True``.
    """
    lower = torch.tensor(grid.lower, dtype=points.dtype, device=points.device)
    upper = torch.tensor(grid.upper, dtype=points.dtype, device=points.device)
    cells = torch.tensor(grid.cells, dtype=points.dtype, device=points.device)
    u = (points - lower) / ((upper - lower) / cells)          # continuous vertex index
    u = torch.minimum(torch.clamp(u, min=0.0), cells)
    g = 2.0 * u / cells - 1.0
    return g.flip(-1)


def trilinear(field: torch.Tensor, points: torch.Tensor, grid: GridSpec) -> torch.Tensor:
    """Trilinear interpolation of a vertex field ``[B, C, X, Y, Z]`` at points ``[B, P, 3]`` -> ``[B, P, C]``.

    Points outside the box are clamped onto it.
    """
    b, p = points.shape[:2]
    g = to_grid_sample_coords(points, grid).reshape(b, p, 1, 1, 3)
    out = F.grid_sample(field, g, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(b, field.shape[1], p).transpose(1, 2)


# ------------------------------------------------------------------------------------------- NeuS
def neus_alpha(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """NeuS opacity ``clamp((Phi(a) - Phi(b)) / Phi(a), 0, 1)`` with ``Phi = sigmoid``, cancellation-free.

    ``a = inv_s * sdf_i`` and ``b = inv_s * sdf_{i+1}``. Algebraically
    ``(Phi(a) - Phi(b)) / Phi(a) = (1 - exp(b - a)) * sigmoid(-b)``, which never divides by an
    underflowed sigmoid and is exactly 0 where ``b >= a``.
    """
    return -torch.expm1(torch.clamp(b - a, max=0.0)) * torch.sigmoid(-b)


def weights_from_alpha(alpha: torch.Tensor, threshold: float) -> torch.Tensor:
    """``w_i = T_i alpha_i`` with ``T_i = prod_{j<i} (1 - alpha_j)``; samples with ``T_i < threshold``
    get weight 0 (early ray termination, the same rule as the Warp kernels)."""
    one_minus = 1.0 - alpha
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), one_minus[..., :-1]], dim=-1), dim=-1)
    w = trans * alpha
    if threshold > 0.0:
        w = torch.where(trans >= threshold, w, torch.zeros_like(w))
    return w


def sdf_gradient(sdf: torch.Tensor, grid: GridSpec) -> torch.Tensor:
    """Finite-difference gradient ``[B, 3, X, Y, Z]`` of a vertex field ``[B, 1, X, Y, Z]``, per metre.

    Central differences inside, one-sided differences on the faces of the box.
    """
    vs = [(u - lo) / n for lo, u, n in zip(grid.lower, grid.upper, grid.cells, strict=True)]
    f = sdf[:, 0]
    out = []
    for axis, h in enumerate(vs):
        dim = axis + 1
        n = f.shape[dim]
        fwd = f.narrow(dim, 1, n - 1) - f.narrow(dim, 0, n - 1)            # f[i+1] - f[i], n-1 entries
        inner = (fwd.narrow(dim, 1, n - 2) + fwd.narrow(dim, 0, n - 2)) / (2 * h)
        d = torch.cat([fwd.narrow(dim, 0, 1) / h, inner, fwd.narrow(dim, n - 2, 1) / h], dim=dim)
        out.append(d)
    return torch.stack(out, dim=1)


def render_rays(sdf: torch.Tensor, features: torch.Tensor | None, grid: GridSpec, origins: torch.Tensor,
                directions: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor, n_samples: int,
                inv_s: torch.Tensor, edges: torch.Tensor | None, threshold: float,
                cos_anneal_ratio: float | None) -> dict[str, torch.Tensor]:
    """Reference NeuS renderer. Returns depth, opacity, features (or None), weights, t, hit."""
    origins = origins.detach()
    directions = directions.detach()
    b, r, _ = origins.shape
    s = n_samples
    bounds, hit = sample_boundaries(t0, t1, s, edges)                        # [B, R, S+1]
    mids = 0.5 * (bounds[..., 1:] + bounds[..., :-1])                           # [B, R, S]
    mid_pts = origins[:, :, None, :] + mids[..., None] * directions[:, :, None, :]
    if cos_anneal_ratio is None:
        pts = origins[:, :, None, :] + bounds[..., None] * directions[:, :, None, :]
        vals = trilinear(sdf, pts.reshape(b, r * (s + 1), 3), grid).reshape(b, r, s + 1)
        a = inv_s * vals[..., :-1]
        c = inv_s * vals[..., 1:]
    else:
        both = torch.cat([sdf, sdf_gradient(sdf, grid)], dim=1)
        vals = trilinear(both, mid_pts.reshape(b, r * s, 3), grid).reshape(b, r, s, 4)
        true_cos = (vals[..., 1:] * directions[:, :, None, :]).sum(-1)
        ratio = float(cos_anneal_ratio)
        iter_cos = -(F.relu(-true_cos * 0.5 + 0.5) * (1.0 - ratio) + F.relu(-true_cos) * ratio)
        half = iter_cos * (bounds[..., 1:] - bounds[..., :-1]) * 0.5
        a = inv_s * (vals[..., 0] - half)
        c = inv_s * (vals[..., 0] + half)
    alpha = neus_alpha(a, c) * hit[..., None]
    w = weights_from_alpha(alpha, threshold)
    out = {
        "weights": w,
        "depth": (w * mids).sum(-1),
        "opacity": w.sum(-1),
        "t": mids * hit[..., None],
        "mids": mids,
        "hit": hit,
        "features": None,
    }
    if features is not None:
        f = trilinear(features, mid_pts.reshape(b, r * s, 3), grid).reshape(b, r, s, -1)
        out["features"] = (w[..., None] * f).sum(-2)
    return out


def render_reprojection(sdf: torch.Tensor, flow: torch.Tensor | None, grid: GridSpec, origins: torch.Tensor,
                        directions: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor, n_samples: int,
                        inv_s: torch.Tensor, edges: torch.Tensor | None, threshold: float,
                        source: torch.Tensor, images: torch.Tensor, intrinsics: torch.Tensor,
                        target_from_grid: torch.Tensor, flow_scale: torch.Tensor,
                        zmin: float = 1e-3) -> dict[str, torch.Tensor]:
    """Reference of the fused reprojection: weighted sums over samples (see ``_kernels/reproject.py``).

    Returns ``opacity [B, R]``, ``col [B, R, K, CH]``, ``err [B, R, K]``, ``cov [B, R, K]``.
    Memory is O(B R K S): this is the slow twin the kernels are tested against.
    """
    out = render_rays(sdf, None, grid, origins, directions, t0, t1, n_samples, inv_s, edges, threshold, None)
    w = out["weights"]                                                            # [B, R, S]
    b, r, s = w.shape
    k, ch, h, wd = images.shape[1:]
    pts = origins.detach()[:, :, None, :] + out["mids"][..., None] * directions.detach()[:, :, None, :]
    if flow is not None:
        f = trilinear(flow, pts.reshape(b, r * s, 3), grid).reshape(b, r, s, -1)
        if f.shape[-1] == 2:
            f = torch.cat([f, torch.zeros_like(f[..., :1])], dim=-1)
        q = pts[:, :, None] + flow_scale[:, None, :, None, None] * f[:, :, None]    # [B, R, K, S, 3]
    else:
        q = pts[:, :, None].expand(b, r, k, s, 3)
    rot = target_from_grid[..., :3, :3]
    cam = torch.einsum("bkij,brksj->brksi", rot, q) + target_from_grid[:, None, :, None, :3, 3]
    hh = torch.einsum("bkij,brksj->brksi", intrinsics, cam)
    z = hh[..., 2]
    front = z > zmin
    zs = torch.where(front, z, torch.ones_like(z))
    u = hh[..., 0] / zs
    v = hh[..., 1] / zs
    inside = front & (u >= 0) & (u <= wd - 1) & (v >= 0) & (v <= h - 1)
    u = torch.where(inside, u, torch.zeros_like(u))
    v = torch.where(inside, v, torch.zeros_like(v))
    g = torch.stack([2.0 * u / (wd - 1) - 1.0, 2.0 * v / (h - 1) - 1.0], dim=-1)    # [B, R, K, S, 2]
    g = g.permute(0, 2, 1, 3, 4).reshape(b * k, r * s, 1, 2)
    c = F.grid_sample(images.reshape(b * k, ch, h, wd), g, mode="bilinear", padding_mode="zeros",
                      align_corners=True)                                          # [B K, CH, R S, 1]
    c = c.reshape(b, k, ch, r, s).permute(0, 3, 1, 4, 2)                           # [B, R, K, S, CH]
    e = (c - source.detach()[:, :, None, None, :]).abs().mean(-1)                  # [B, R, K, S]
    wm = w[:, :, None, :] * inside
    return {"opacity": out["opacity"], "col": (wm[..., None] * c).sum(-2), "err": (wm * e).sum(-1),
            "cov": wm.sum(-1)}
