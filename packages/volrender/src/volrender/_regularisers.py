"""Regularisers of SDF vertex grids: finite-difference gradient, eikonal and Hessian losses.

Vectorised PyTorch (a few fused elementwise passes over the grid; autograd gives the gradients).
"""

from __future__ import annotations

import torch

from . import _checks as C
from . import _reference as ref
from ._grid import GridSpec


def sdf_gradient(sdf: torch.Tensor, grid: GridSpec) -> torch.Tensor:
    """Spatial gradient of a vertex field by finite differences, per metre.

    Central differences ``(f[i+1] - f[i-1]) / (2 h)`` at interior vertices and one-sided
    differences on the box's faces, with the grid's own spacing ``h`` along each axis.

    Args:
        sdf: ``[B, 1, NX + 1, NY + 1, NZ + 1]`` vertex field (float32/float64), metres.
        grid: its :class:`GridSpec`.

    Returns:
        ``[B, 3, NX + 1, NY + 1, NZ + 1]`` gradient (d/dx, d/dy, d/dz), dimensionless for an SDF.
    """
    grid = C.check_grid(grid)
    sdf = C.check_vertex_field(sdf, "sdf", grid, channels=1)
    return ref.sdf_gradient(sdf, grid)


def eikonal_loss(sdf: torch.Tensor, grid: GridSpec, points: torch.Tensor | None = None, *,
                 reduction: str = "mean") -> torch.Tensor:
    """Eikonal penalty ``(|grad sdf| - 1)^2`` on every vertex or at given points.

    The gradient is :func:`sdf_gradient`; at ``points`` it is trilinearly interpolated from the
    vertex gradients (as the released Let Occ Flow code does for ray samples). Points outside the
    box are clamped onto it.

    Args:
        sdf: ``[B, 1, NX + 1, NY + 1, NZ + 1]`` vertex SDF, metres.
        grid: its :class:`GridSpec`.
        points: None (every vertex) or ``[B, P, 3]`` positions in the grid's frame, metres, with
            the dtype and device of ``sdf``.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (``[B, NX + 1, NY + 1, NZ + 1]`` or ``[B, P]``).

    Returns:
        The loss (dimensionless).
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    g = sdf_gradient(sdf, grid)
    if points is None:
        pen = (torch.linalg.vector_norm(g, dim=1) - 1.0).square()
    else:
        C.check_float_tensor(points, "points", ndim=3, like=sdf)
        if points.shape[0] != sdf.shape[0] or points.shape[2] != 3:
            raise ValueError(f"points must have shape [B={sdf.shape[0]}, P, 3], got {tuple(points.shape)}")
        gp = ref.trilinear(g, points.detach(), grid)                          # [B, P, 3]
        pen = (torch.linalg.vector_norm(gp, dim=-1) - 1.0).square()
    return pen.mean() if reduction == "mean" else pen


def hessian_loss(sdf: torch.Tensor, grid: GridSpec, *, in_voxel_units: bool = False) -> torch.Tensor:
    """Mean absolute second difference of the SDF along x, y and z (a curvature penalty).

    For each axis, ``|f[i+1] - 2 f[i] + f[i-1]| / h^2`` at the interior vertices; the result is the
    mean over all these terms of the three axes (1/m). With ``in_voxel_units=True`` the
    differences are not divided by ``h^2`` (metres), which makes the weight independent of the
    voxel size.

    Args:
        sdf: ``[B, 1, NX + 1, NY + 1, NZ + 1]`` vertex SDF, metres.
        grid: its :class:`GridSpec`.
        in_voxel_units: see above.

    Returns:
        A scalar tensor.
    """
    grid = C.check_grid(grid)
    sdf = C.check_vertex_field(sdf, "sdf", grid, channels=1)
    if not isinstance(in_voxel_units, bool):
        raise TypeError(f"in_voxel_units must be a bool, got {type(in_voxel_units).__name__}")
    f = sdf[:, 0]
    total = f.new_zeros(())
    count = 0
    for axis in range(3):
        dim = axis + 1
        n = f.shape[dim]
        if n < 3:
            continue
        h = (grid.upper[axis] - grid.lower[axis]) / grid.cells[axis]
        d2 = f.narrow(dim, 2, n - 2) - 2.0 * f.narrow(dim, 1, n - 2) + f.narrow(dim, 0, n - 2)
        if not in_voxel_units:
            d2 = d2 / (h * h)
        total = total + d2.abs().sum()
        count += d2.numel()
    return total / max(count, 1)
