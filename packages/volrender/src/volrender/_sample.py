"""Trilinear reads of vertex fields at arbitrary points (public, differentiable)."""

from __future__ import annotations

import torch

from . import _checks as C
from . import _reference as ref
from ._grid import GridSpec


def sample_vertex_field(values: torch.Tensor, grid: GridSpec, points: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of a vertex field at points; points outside the box are clamped onto it.

    The same interpolation the renderers use for the SDF and the features (``grid_sample`` with
    ``align_corners=True`` on the vertices), differentiable w.r.t. ``values``.

    Args:
        values: ``[B, C, NX + 1, NY + 1, NZ + 1]`` float32/float64 field on the vertices of ``grid``.
        grid: the field's :class:`GridSpec`.
        points: ``[B, ..., 3]`` floating-point points in the grid's frame, metres (cast to the dtype
            of ``values``).

    Returns:
        ``[B, ..., C]`` interpolated values.

    >>> g = GridSpec((0.0, 0.0, 0.0), (2.0, 2.0, 2.0), (2, 2, 2))
    >>> z = g.points("vertex")[..., 2][None, None]          # the field f = z
    >>> sample_vertex_field(z, g, torch.tensor([[[0.3, 1.0, 1.25]]]))
    tensor([[[1.2500]]])
    """
    grid = C.check_grid(grid)
    values = C.check_vertex_field(values, "values", grid)
    points = C.check_float_tensor(points, "points")
    if points.ndim < 2 or points.shape[0] != values.shape[0] or points.shape[-1] != 3:
        raise ValueError(f"points must have shape [B={values.shape[0]}, ..., 3], got {tuple(points.shape)}")
    if points.device != values.device:
        raise ValueError(f"points must be on device {values.device} (like values), got {points.device}")
    b, c = values.shape[:2]
    flat = points.reshape(b, -1, 3).to(values.dtype)
    return ref.trilinear(values, flat, grid).reshape(*points.shape[:-1], c)
