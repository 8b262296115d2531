"""Axis-aligned voxel grids: the box, its resolution, and where values live."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Location = Literal["vertex", "cell"]


@dataclass(frozen=True)
class GridSpec:
    """An axis-aligned box in metres split into ``cells`` voxels along x, y, z.

    One box serves two kinds of values:

    - **vertex** values (SDF and flow fields) live on the ``cells + 1`` corners of the voxels,
      so a field tensor is ``[B, C, NX + 1, NY + 1, NZ + 1]``; vertex ``(i, j, k)`` sits at
      ``lower + (i, j, k) * voxel_size``.
    - **cell** values (occupancy labels) live at voxel centres, so a label grid is
      ``[NX, NY, NZ]``; cell ``(i, j, k)`` is centred at ``lower + (i + 0.5, ...) * voxel_size``.

    Grids are indexed ``[X, Y, Z]`` in the ego frame (x forward, y left, z up).

    Args:
        lower: (x, y, z) of the box's lower corner, metres.
        upper: (x, y, z) of the box's upper corner, metres; each must exceed ``lower``.
        cells: number of voxels along x, y, z (positive integers).

    >>> g = GridSpec((-40.0, -40.0, -1.0), (40.0, 40.0, 5.4), (200, 200, 16))
    >>> g.voxel_size
    (0.4, 0.4, 0.4)
    >>> g.vertex_shape
    (201, 201, 17)
    """

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    cells: tuple[int, int, int]

    def __post_init__(self) -> None:
        for name in ("lower", "upper", "cells"):
            value = getattr(self, name)
            if len(tuple(value)) != 3:
                raise ValueError(f"GridSpec.{name} must have 3 entries (x, y, z), got {value!r}")
        lower = tuple(float(v) for v in self.lower)
        upper = tuple(float(v) for v in self.upper)
        if not all(math.isfinite(v) for v in lower + upper):
            raise ValueError(f"GridSpec corners must be finite, got lower={lower} upper={upper}")
        if not all(u > lo for lo, u in zip(lower, upper, strict=True)):
            raise ValueError(
                f"GridSpec.upper must exceed GridSpec.lower on every axis, got lower={lower} "
                f"upper={upper}")
        cells = tuple(self.cells)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in cells):
            raise ValueError(f"GridSpec.cells must be three positive ints, got {self.cells!r}")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "cells", cells)

    # ------------------------------------------------------------------ sizes
    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Edge lengths (x, y, z) of one voxel, metres (rounded to 1e-9 m)."""
        return tuple(round((u - lo) / n, 9)
                     for lo, u, n in zip(self.lower, self.upper, self.cells, strict=True))

    @property
    def vertex_shape(self) -> tuple[int, int, int]:
        """Shape ``(NX + 1, NY + 1, NZ + 1)`` of a vertex-valued field."""
        return tuple(n + 1 for n in self.cells)

    @property
    def cell_shape(self) -> tuple[int, int, int]:
        """Shape ``(NX, NY, NZ)`` of a cell-valued grid (same as ``cells``)."""
        return self.cells

    def shape(self, location: Location) -> tuple[int, int, int]:
        """Value-grid shape for ``location`` ("vertex" or "cell")."""
        return self.vertex_shape if _check_location(location) == "vertex" else self.cell_shape

    # -------------------------------------------------------------- transforms
    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lower = torch.tensor(self.lower, dtype=like.dtype, device=like.device)
        size = (torch.tensor(self.upper, dtype=like.dtype, device=like.device) - lower) / \
            torch.tensor(self.cells, dtype=like.dtype, device=like.device)
        return lower, size

    def world_to_grid(self, points: torch.Tensor, location: Location = "vertex") -> torch.Tensor:
        """Continuous grid index of world points.

        Args:
            points: ``[..., 3]`` floating-point positions in the grid's frame, metres.
            location: "vertex": index 0 is the lower corner and ``cells`` the upper one;
                "cell": integer ``i`` is the centre of cell ``i`` (the lower corner is -0.5).

        Returns:
            ``[..., 3]`` continuous indices, same dtype and device as ``points``.
        """
        _check_points(points, "points")
        lower, size = self._tensors(points)
        index = (points - lower) / size
        return index - 0.5 if _check_location(location) == "cell" else index

    def grid_to_world(self, index: torch.Tensor, location: Location = "vertex") -> torch.Tensor:
        """Inverse of :meth:`world_to_grid`: ``[..., 3]`` continuous indices to metres."""
        _check_points(index, "index")
        lower, size = self._tensors(index)
        if _check_location(location) == "cell":
            index = index + 0.5
        return lower + index * size

    def contains(self, points: torch.Tensor) -> torch.Tensor:
        """``[...]`` bool: whether each ``[..., 3]`` point lies in the closed box."""
        _check_points(points, "points")
        lower = torch.tensor(self.lower, dtype=points.dtype, device=points.device)
        upper = torch.tensor(self.upper, dtype=points.dtype, device=points.device)
        return ((points >= lower) & (points <= upper)).all(dim=-1)

    def points(self, location: Location = "cell", *, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """World positions of every vertex or cell centre: ``[NX(+1), NY(+1), NZ(+1), 3]``."""
        shape = self.shape(location)
        axes = [torch.arange(n, dtype=dtype, device=device) for n in shape]
        index = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
        return self.grid_to_world(index, location)


def _check_location(location: str) -> str:
    if location not in ("vertex", "cell"):
        raise ValueError(f"location must be 'vertex' or 'cell', got {location!r}")
    return location


def _check_points(points: torch.Tensor, name: str) -> None:
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(points).__name__}")
    if points.ndim < 1 or points.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [..., 3], got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {points.dtype}")


#: Occ3D-nuScenes evaluation grid: 200 x 200 x 16 voxels of 0.4 m, x, y in [-40, 40], z in [-1, 5.4].
OCC3D_NUSCENES = GridSpec((-40.0, -40.0, -1.0), (40.0, 40.0, 5.4), (200, 200, 16))
#: Let Occ Flow's nuScenes field grid: 200 x 200 x 20 cells (201 x 201 x 21 vertices, 0.4/0.32 m).
LETOCCFLOW_NUSCENES = GridSpec((-40.0, -40.0, -1.0), (40.0, 40.0, 5.4), (200, 200, 20))
#: SemanticKITTI voxel grid: 256 x 256 x 32 voxels of 0.2 m in front of the car.
SEMANTIC_KITTI = GridSpec((0.0, -25.6, -2.0), (51.2, 25.6, 4.4), (256, 256, 32))
