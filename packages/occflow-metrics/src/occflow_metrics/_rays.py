"""The RayIoU ray pattern and ray origins (SparseOcc's protocol and Let Occ Flow's window variant)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

#: Position of the nuScenes LIDAR_TOP sensor in the ego frame, metres (the RayIoU origins are LiDAR
#: positions; SparseOcc reads them from each sample's lidar2ego translation).
NUSCENES_LIDAR_OFFSET: tuple[float, float, float] = (0.985793, 0.0, 1.84019)


def lidar_ray_directions() -> torch.Tensor:
    """The LiDAR-like ray pattern of SparseOcc's RayIoU: 39 pitches x 360 azimuths = 14,040 rays.

    Pitches: ``-(pi/2 - atan(k + 1))`` for ``k = 0..9``, then extended by the last step until the
    pitch reaches 0.21 rad (the top of the nuScenes LiDAR's field of view). Azimuths: 0..359
    degrees in 1-degree steps. Pitch-major order (all azimuths of the lowest pitch first).

    Returns:
        ``[14040, 3]`` float32 unit directions ``(cos p cos a, cos p sin a, sin p)`` in the ego
        frame (x forward, y left, z up).
    """
    pitches = [-(math.pi / 2 - math.atan(k + 1)) for k in range(10)]
    while pitches[-1] < 0.21:
        pitches.append(pitches[-1] + (pitches[-1] - pitches[-2]))
    pitch = np.asarray(pitches, dtype=np.float64)[:, None]
    azimuth = np.deg2rad(np.arange(0, 360, 1, dtype=np.float64))[None, :]
    dirs = np.stack(np.broadcast_arrays(np.cos(pitch) * np.cos(azimuth), np.cos(pitch) * np.sin(azimuth),
                                        np.sin(pitch) + 0 * azimuth), axis=-1).reshape(-1, 3)
    return torch.from_numpy(dirs.astype(np.float32))


def ray_origins(ego_to_global: torch.Tensor, ref_index: int, *,
                mode: Literal["scene", "window"] = "scene",
                sensor_offset: tuple[float, float, float] = NUSCENES_LIDAR_OFFSET,
                xy_limit: float = 39.0, max_origins: int = 8,
                window: tuple[int, int] = (-3, 2)) -> torch.Tensor:
    """Ray origins for one reference keyframe, in the reference ego frame.

    SparseOcc's protocol (``mode="scene"``): the LiDAR position (``sensor_offset`` in each
    keyframe's ego frame) of every keyframe of the scene, past and future, expressed in the
    reference keyframe's ego frame; kept where ``|x| < xy_limit`` and ``|y| < xy_limit``; if more
    than ``max_origins`` remain, ``max_origins`` are picked evenly by
    ``round(linspace(0, n - 1, max_origins))`` (numpy's round-half-to-even, as the original).
    Let Occ Flow's variant (``mode="window"``): only keyframes ``ref + window[0] .. ref + window[1]``
    (inclusive, clipped to the scene; at most 6), with the same filter.

    Args:
        ego_to_global: ``[N, 4, 4]`` ego-to-global poses of the scene's keyframes in time order.
        ref_index: index of the reference keyframe in ``ego_to_global``.
        mode: "scene" (SparseOcc) or "window" (Let Occ Flow).
        sensor_offset: ray origin in each keyframe's ego frame, metres.
        xy_limit: origins with ``|x|`` or ``|y|`` at or beyond this (metres) are dropped.
        max_origins: at most this many origins ("scene" mode).
        window: first and last keyframe offset of the "window" mode.

    Returns:
        ``[T, 3]`` float64 origins (``1 <= T``; the reference keyframe's own origin always passes
        the filter for any sensor offset inside the limit).
    """
    poses = torch.as_tensor(ego_to_global, dtype=torch.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or poses.shape[0] == 0:
        raise ValueError(f"ego_to_global must have shape [N, 4, 4] with N >= 1, got {list(poses.shape)}")
    n = poses.shape[0]
    if not isinstance(ref_index, int) or not 0 <= ref_index < n:
        raise ValueError(f"ref_index must be an int in [0, {n - 1}], got {ref_index!r}")
    if mode not in ("scene", "window"):
        raise ValueError(f"mode must be 'scene' or 'window', got {mode!r}")
    if max_origins < 1:
        raise ValueError(f"max_origins must be >= 1, got {max_origins}")
    if mode == "window":
        frames = range(max(0, ref_index + window[0]), min(n, ref_index + window[1] + 1))
    else:
        frames = range(n)
    offset = torch.tensor([*sensor_offset, 1.0], dtype=torch.float64)
    ref_from_global = torch.linalg.inv(poses[ref_index])
    kept = []
    for i in frames:
        origin = offset[:3].clone() if i == ref_index else (ref_from_global @ poses[i] @ offset)[:3]
        if abs(origin[0].item()) < xy_limit and abs(origin[1].item()) < xy_limit:
            kept.append(origin)
    if not kept:
        raise ValueError("no ray origin passes the |x|, |y| < xy_limit filter (sensor_offset outside it?)")
    if mode == "scene" and len(kept) > max_origins:
        pick = np.round(np.linspace(0, len(kept) - 1, max_origins)).astype(np.int64)
        kept = [kept[i] for i in pick]
    return torch.stack(kept)
