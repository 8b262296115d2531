"""Ego-motion alignment: resample past feature volumes onto the current frame's voxel grid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["align_history", "cell_centres", "relative_poses"]

PaddingMode = Literal["border", "zeros"]

# Tolerance, in fractions of a voxel, for a sample point to count as inside the history box.
_INSIDE_TOL = 1e-6


def _check_extents(lower: object, upper: object) -> tuple[tuple[float, ...], tuple[float, ...]]:
    out = []
    for name, v in (("lower", lower), ("upper", upper)):
        try:
            vals = tuple(float(x) for x in v)  # type: ignore[union-attr]
        except TypeError as err:
            raise TypeError(f"{name} must be a sequence of 3 floats (x, y, z) in metres, got {v!r}") from err
        if len(vals) != 3 or not all(math.isfinite(x) for x in vals):
            raise ValueError(f"{name} must be 3 finite floats (x, y, z) in metres, got {v!r}")
        out.append(vals)
    lo, up = out
    if not all(u > l for l, u in zip(lo, up, strict=True)):
        raise ValueError(f"upper must exceed lower on every axis, got lower={lo} upper={up}")
    return lo, up


def _check_poses(name: str, poses: object, leading: tuple[int, ...]) -> Tensor:
    if not isinstance(poses, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(poses).__name__}")
    expected = (*leading, 4, 4)
    if tuple(poses.shape) != expected:
        raise ValueError(f"{name} must have shape {list(expected)}, got {list(poses.shape)}")
    if not poses.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {poses.dtype}")
    if poses.numel() and not bool(torch.isfinite(poses).all()):
        raise ValueError(f"{name} must be finite")
    if poses.numel():
        last = poses[..., 3, :].double()
        ref = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=poses.device)
        if not bool(torch.allclose(last, ref.expand_as(last), atol=1e-6)):
            raise ValueError(f"{name} must be homogeneous 4x4 transforms (last row 0 0 0 1)")
    return poses


def cell_centres(lower: Sequence[float], upper: Sequence[float], shape: Sequence[int], *,
                 dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """Centres of the cells of an axis-aligned grid.

    Cell ``(i, j, k)`` of a box ``[lower, upper]`` split into ``shape`` cells is centred at
    ``lower + (i + 0.5, j + 0.5, k + 0.5) * voxel_size``.

    Args:
        lower: (x, y, z) lower corner of the box, metres.
        upper: (x, y, z) upper corner of the box, metres.
        shape: (X, Y, Z) number of cells per axis.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        [X, Y, Z, 3] cell-centre coordinates (x, y, z), metres.

    >>> cell_centres((0, 0, 0), (2, 1, 1), (2, 1, 1))[:, 0, 0]
    tensor([[0.5000, 0.5000, 0.5000],
            [1.5000, 0.5000, 0.5000]], dtype=torch.float64)
    """
    lo, up = _check_extents(lower, upper)
    dims = tuple(shape)
    if len(dims) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in dims):
        raise ValueError(f"shape must be 3 positive ints (X, Y, Z), got {shape!r}")
    axes = [l + (torch.arange(n, dtype=torch.float64, device=device) + 0.5) * ((u - l) / n)
            for l, u, n in zip(lo, up, dims, strict=True)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return grid.to(dtype)


def relative_poses(ego_to_global: Tensor) -> Tensor:
    """Transforms from each past ego frame to the current (last) ego frame.

    ``current_from_past[:, t] = inv(ego_to_global[:, -1]) @ ego_to_global[:, t]``, computed in
    float64 and returned in the input's dtype.

    Args:
        ego_to_global: [B, T, 4, 4] ego-to-global poses of the T frames, oldest first and the
            current frame last (ego frame: x forward, y left, z up; metres).

    Returns:
        [B, T - 1, 4, 4] ``current_from_past`` of the T - 1 history frames, oldest first: a
        point ``p`` in the past ego frame is ``current_from_past @ p`` in the current one.
    """
    if not isinstance(ego_to_global, Tensor):
        raise TypeError(f"ego_to_global must be a torch.Tensor, got {type(ego_to_global).__name__}")
    if ego_to_global.dim() != 4 or ego_to_global.shape[1] < 1 or tuple(ego_to_global.shape[2:]) != (4, 4):
        raise ValueError(f"ego_to_global must be [B, T >= 1, 4, 4], got {list(ego_to_global.shape)}")
    _check_poses("ego_to_global", ego_to_global, tuple(ego_to_global.shape[:2]))
    poses = ego_to_global.double()
    current_inv = torch.linalg.inv(poses[:, -1:])
    return (current_inv @ poses[:, :-1]).to(ego_to_global.dtype)


def align_history(volumes: Tensor | Sequence[Tensor], current_from_past: Tensor,
                  lower: Sequence[float], upper: Sequence[float], *,
                  padding_mode: PaddingMode = "border") -> tuple[Tensor, Tensor]:
    """Warp past feature volumes into the current ego frame (eq. 4 of the paper).

    Every past volume lives on the same box ``[lower, upper]`` as the current one, but in its
    own ego frame. For each cell centre ``p`` of the current grid the point
    ``inv(current_from_past) @ p`` in the past ego frame is sampled trilinearly from the past
    volume (``F.grid_sample``, ``align_corners=False``). With ``align_corners=False`` the
    normalised coordinates -1 and +1 are the outer faces of the box, so the normalised
    coordinate ``2 (q - lower) / (upper - lower) - 1`` puts every cell centre exactly on its
    cell: a translation by a whole number of voxels is an exact shift, a 90-degree rotation
    about z of a grid symmetric about the origin is an exact permutation. The sampling grid is
    computed in float64; sampling runs in float64 for float64 volumes and in float32 otherwise
    (half-precision volumes are upcast and the result cast back).

    Border handling: ``padding_mode="border"`` (what the released code uses) repeats the outer
    cells for points outside the past grid; ``"zeros"`` reads zeros there (and blends towards
    zero in the outer half-voxel rim). Either way ``valid`` marks the points that fall inside
    the past grid's box (faces included, up to 1e-6 voxel), so callers can tell real history
    from padding.

    Args:
        volumes: [B, T, C, X, Y, Z] past feature volumes, or a sequence of T tensors
            [B, C, X, Y, Z]; the grid is indexed [X, Y, Z] along the ego x (forward), y (left),
            z (up) axes.
        current_from_past: [B, T, 4, 4] rigid transforms from each past ego frame to the current
            ego frame (``inv(ego_to_global_now) @ ego_to_global_past``, see
            :func:`relative_poses`), metres. Any device; moved to the volumes' device.
        lower: (x, y, z) lower corner of the grid box in the ego frame, metres.
        upper: (x, y, z) upper corner of the grid box, metres.
        padding_mode: ``"border"`` or ``"zeros"`` (see above).

    Returns:
        aligned: [B, T, C, X, Y, Z] the past volumes resampled on the current grid.
        valid: [B, T, 1, X, Y, Z] bool, True where the sample point lies inside the past grid.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: shapes, dtypes or devices do not fit, poses are not finite 4x4 transforms.
    """
    if isinstance(volumes, (list, tuple)):
        if not volumes:
            raise ValueError("volumes must hold at least one [B, C, X, Y, Z] tensor")
        for i, v in enumerate(volumes):
            if not isinstance(v, Tensor):
                raise TypeError(f"volumes[{i}] must be a torch.Tensor, got {type(v).__name__}")
            if v.dim() != 5 or v.shape != volumes[0].shape:
                raise ValueError(f"volumes[{i}] must be [B, C, X, Y, Z] like volumes[0] "
                                 f"{list(volumes[0].shape)}, got {list(v.shape)}")
        volumes = torch.stack(list(volumes), dim=1)
    if not isinstance(volumes, Tensor):
        raise TypeError(f"volumes must be a torch.Tensor or a list of tensors, got {type(volumes).__name__}")
    if volumes.dim() != 6:
        raise ValueError(f"volumes must be [B, T, C, X, Y, Z], got {list(volumes.shape)}")
    if not volumes.is_floating_point():
        raise ValueError(f"volumes must be a floating-point tensor, got dtype {volumes.dtype}")
    if padding_mode not in ("border", "zeros"):
        raise ValueError(f"padding_mode must be 'border' or 'zeros', got {padding_mode!r}")
    lo, up = _check_extents(lower, upper)
    B, T, C, X, Y, Z = volumes.shape
    _check_poses("current_from_past", current_from_past, (B, T))
    if B == 0 or T == 0:
        return volumes, volumes.new_ones((B, T, 1, X, Y, Z), dtype=torch.bool)

    device = volumes.device
    past_from_current = torch.linalg.inv(current_from_past.to(device=device, dtype=torch.float64))
    centres = cell_centres(lo, up, (X, Y, Z), device=device)  # [X, Y, Z, 3]
    rot = past_from_current[:, :, :3, :3]  # [B, T, 3, 3]
    trans = past_from_current[:, :, None, None, None, :3, 3]  # [B, T, 1, 1, 1, 3]
    # [B, T, X, Y, Z, 3] = R @ p + t for every cell centre p.
    points = torch.einsum("btij,xyzj->btxyzi", rot, centres) + trans
    lo_t = torch.tensor(lo, dtype=torch.float64, device=device)
    size = torch.tensor(up, dtype=torch.float64, device=device) - lo_t
    normalised = 2.0 * (points - lo_t) / size - 1.0
    tol = 2.0 * _INSIDE_TOL / torch.tensor((X, Y, Z), dtype=torch.float64, device=device)
    valid = ((normalised >= -1.0 - tol) & (normalised <= 1.0 + tol)).all(-1)

    # grid_sample on [N, C, D=X, H=Y, W=Z] takes grid[..., 0] along W (z), [..., 1] along H (y),
    # [..., 2] along D (x).
    # Half-precision sampling coordinates cannot address a 100-cell axis (bfloat16 resolves 1/128
    # of the box), so sampling runs in float32 (float64 for float64 volumes).
    work = torch.float64 if volumes.dtype == torch.float64 else torch.float32
    grid = normalised.flip(-1).reshape(B * T, X, Y, Z, 3).to(work)
    sampled = F.grid_sample(volumes.reshape(B * T, C, X, Y, Z).to(work), grid, mode="bilinear",
                            padding_mode=padding_mode, align_corners=False)
    return sampled.to(volumes.dtype).reshape(B, T, C, X, Y, Z), valid.reshape(B, T, 1, X, Y, Z)
