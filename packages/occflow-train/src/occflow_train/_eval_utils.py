"""Turning a :class:`SceneField` into evaluation outputs (occupancy, velocity) as the released code does."""

from __future__ import annotations

import torch

from volrender import GridSpec

#: Seconds of one supervision step (the model's flow is displacement per step) per dataset:
#: nuScenes keyframes at 2 Hz, KITTI frames at 10 Hz.
STEP_SECONDS = {"synthetic": 0.5, "nuscenes": 0.5, "kitti-odometry": 0.1, "kitti-mot": 0.1}


def vertices_to_cells(values: torch.Tensor) -> torch.Tensor:
    """Trilinear value at every voxel centre of a vertex grid (the mean of the 8 corners).

    Args:
        values: ``[B, C, NX + 1, NY + 1, NZ + 1]`` floating-point vertex values.

    Returns:
        ``[B, C, NX, NY, NZ]`` values at the cell centres.
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a torch.Tensor, got {type(values).__name__}")
    if values.ndim != 5 or min(values.shape[2:]) < 2 or not values.is_floating_point():
        raise ValueError(f"values must be a floating-point [B, C, NX+1, NY+1, NZ+1] vertex grid with at "
                         f"least 2 vertices per axis, got {tuple(values.shape)} {values.dtype}")
    v = values
    v = 0.5 * (v[:, :, 1:] + v[:, :, :-1])
    v = 0.5 * (v[:, :, :, 1:] + v[:, :, :, :-1])
    return 0.5 * (v[..., 1:] + v[..., :-1])


def occupancy_from_sdf(sdf: torch.Tensor, grid: GridSpec, threshold: float = 0.1,
                       border: int = 6) -> torch.Tensor:
    """Binary occupancy at voxel centres, as the released Let Occ Flow evaluation computes it.

    A voxel is occupied when the SDF interpolated at its centre is ``<= threshold`` metres, and
    the outermost ``border`` voxels along x and y are cleared (free).

    Args:
        sdf: ``[B, 1, NX + 1, NY + 1, NZ + 1]`` SDF on the vertices of ``grid``, metres.
        grid: the grid ``sdf`` lives on.
        threshold: SDF level (metres) at or below which a voxel counts as occupied.
        border: number of voxels cleared at each x and y edge (0 keeps all).

    Returns:
        ``[B, NX, NY, NZ]`` bool occupancy on the cells of ``grid``.

    >>> g = GridSpec((0.0, 0.0, 0.0), (4.0, 4.0, 2.0), (4, 4, 2))
    >>> sdf = g.points("vertex")[..., 2].reshape(1, 1, 5, 5, 3) - 0.9  # ground at z = 0.9 m
    >>> occupancy_from_sdf(sdf, g, border=0)[0, 0, 0].tolist()
    [True, False]
    """
    if not isinstance(grid, GridSpec):
        raise TypeError(f"grid must be a volrender.GridSpec, got {type(grid).__name__}")
    if not isinstance(sdf, torch.Tensor):
        raise TypeError(f"sdf must be a torch.Tensor, got {type(sdf).__name__}")
    if sdf.ndim != 5 or tuple(sdf.shape[1:]) != (1, *grid.vertex_shape):
        raise ValueError(f"sdf must have shape [B, 1, {grid.vertex_shape}] (the grid's vertices), got "
                         f"{tuple(sdf.shape)}")
    if not isinstance(border, int) or border < 0 or 2 * border >= min(grid.cells[:2]):
        raise ValueError(f"border must be an int in [0, {min(grid.cells[:2]) // 2}), got {border!r}")
    occupied = vertices_to_cells(sdf.detach())[:, 0] <= float(threshold)
    if border:
        occupied[:, :border] = False
        occupied[:, -border:] = False
        occupied[:, :, :border] = False
        occupied[:, :, -border:] = False
    return occupied


def flow_to_velocity(flow: torch.Tensor, step_seconds: float = 0.5) -> torch.Tensor:
    """Per-step displacement to velocity (the OpenOcc / RayIoU-mAVE convention, m/s).

    The model predicts displacement per supervision step (one keyframe interval, 0.5 s on
    nuScenes), so the released evaluation multiplies it by 2.

    Args:
        flow: ``[...]`` displacement in metres per step, any shape (e.g. ``[B, 2, X, Y, Z]``).
        step_seconds: duration of one step, seconds (> 0).

    Returns:
        ``flow / step_seconds``, same shape, metres per second.
    """
    if not isinstance(flow, torch.Tensor):
        raise TypeError(f"flow must be a torch.Tensor, got {type(flow).__name__}")
    if not flow.is_floating_point():
        raise ValueError(f"flow must be floating point, got {flow.dtype}")
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
    return flow / float(step_seconds)
