"""Camera geometry: LiDAR depth maps, rigid flow from depth and ego-motion, disparity, boxes."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from ._checks import check_hw, check_matrix, check_tensor
from ._flow import pixel_grid

__all__ = [
    "KITTI_BASELINE_M",
    "box_corners",
    "camera_motion",
    "densify_depth",
    "depth_to_disparity",
    "lidar_depth_map",
    "project_boxes_mask",
    "rigid_flow",
]

KITTI_BASELINE_M = 0.5327
"""Stereo baseline the released Let Occ Flow code uses for KITTI disparity labels (metres)."""


def camera_motion(cam_to_ego_t: Tensor, ego_to_global_t: Tensor, cam_to_ego_t1: Tensor,
                  ego_to_global_t1: Tensor) -> Tensor:
    """Transform [4, 4] float64 taking points from camera t coordinates to camera t+1 coordinates.

    ``(ego_to_global_t1 @ cam_to_ego_t1)^-1 @ ego_to_global_t @ cam_to_ego_t``; every input is
    a [4, 4] rigid transform (OpenCV camera frame).
    """
    mats = []
    for name, m in (("cam_to_ego_t", cam_to_ego_t), ("ego_to_global_t", ego_to_global_t),
                    ("cam_to_ego_t1", cam_to_ego_t1), ("ego_to_global_t1", ego_to_global_t1)):
        mats.append(check_matrix(m, name, 4).double().cpu())
    a, b, c, d = mats
    return torch.linalg.inv(d @ c) @ b @ a


def rigid_flow(depth: Tensor, intrinsics: Tensor, cam_t_to_t1: Tensor) -> tuple[Tensor, Tensor]:
    """Optical flow of a static scene seen from a moving camera (eq. 10's static flow f^s).

    Args:
        depth: [H, W] z-depth along the optical axis, metres (0 or less = unknown).
        intrinsics: [3, 3] pinhole matrix of both images.
        cam_t_to_t1: [4, 4] transform from camera t to camera t+1 coordinates
            (:func:`camera_motion`).

    Returns:
        flow [2, H, W] float32 px, valid [H, W] bool (known depth, in front of camera t+1).
    """
    check_tensor(depth, "depth", dim=2, floating=True)
    k = check_matrix(intrinsics, "intrinsics", 3).double().cpu()
    m = check_matrix(cam_t_to_t1, "cam_t_to_t1", 4).double().cpu()
    h, w = depth.shape
    grid = pixel_grid(h, w).double()
    pix = torch.cat([grid, torch.ones(1, h, w, dtype=torch.float64)]).reshape(3, -1)
    z = depth.double().cpu().reshape(1, -1)
    pts = torch.linalg.inv(k) @ pix * z
    pts1 = m[:3, :3] @ pts + m[:3, 3:]
    proj = k @ pts1
    z1 = proj[2:3]
    safe = torch.where(z1.abs() > 1e-9, z1, torch.ones_like(z1))
    uv1 = proj[:2] / safe
    flow = (uv1 - pix[:2]).reshape(2, h, w)
    valid = (z.reshape(h, w) > 0) & (pts1[2].reshape(h, w) > 1e-3)
    flow = torch.where(valid[None], flow, torch.zeros_like(flow))
    return flow.float(), valid


def lidar_depth_map(points: Tensor, intrinsics: Tensor, cam_to_ego: Tensor, image_hw: tuple[int, int], *,
                    min_depth: float = 0.1, max_depth: float = float("inf")) -> Tensor:
    """Sparse depth map of LiDAR points: the nearest return per pixel.

    Pixel centres are at integer coordinates (the OpenCV convention of the intrinsics), so a
    point projecting to (u, v) lands in pixel (round(v), round(u)).

    Args:
        points: [P, 3] points in the ego frame of ``cam_to_ego``, metres (compensate the ego
            motion between the LiDAR and camera timestamps before calling).
        intrinsics: [3, 3].
        cam_to_ego: [4, 4] camera-to-ego transform (OpenCV camera: x right, y down, z forward).
        image_hw: (H, W) of the image.
        min_depth: drop points nearer than this z, metres.
        max_depth: drop points farther than this z, metres.

    Returns:
        [H, W] float32 z-depth along the optical axis, metres; 0 where no point projects.
    """
    check_tensor(points, "points", dim=2, floating=True)
    if points.shape[1] != 3:
        raise ValueError(f"points: expected shape [P, 3], got {list(points.shape)}")
    k = check_matrix(intrinsics, "intrinsics", 3).double().cpu()
    c2e = check_matrix(cam_to_ego, "cam_to_ego", 4).double().cpu()
    h, w = check_hw(image_hw)
    if not 0 <= min_depth < max_depth:
        raise ValueError(
            f"min_depth, max_depth: expected 0 <= min_depth < max_depth, got {min_depth}, {max_depth}"
        )
    e2c = torch.linalg.inv(c2e)
    p = points.double().cpu()
    cam = p @ e2c[:3, :3].T + e2c[:3, 3]
    z = cam[:, 2]
    keep = (z > min_depth) & (z < max_depth)
    cam, z = cam[keep], z[keep]
    uv = cam @ k.T
    u = torch.round(uv[:, 0] / z).long()
    v = torch.round(uv[:, 1] / z).long()
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    flat = (v * w + u)[inside]
    depth = torch.full((h * w,), float("inf"), dtype=torch.float32)
    depth.scatter_reduce_(0, flat, z[inside].float(), reduce="amin")
    depth[torch.isinf(depth)] = 0
    return depth.reshape(h, w)


def densify_depth(depth: Tensor, max_distance: float = 8.0, *, mode: str = "nearest", max_gap: int = 40,
                  max_jump: float = 0.25) -> Tensor:
    """Fill a sparse depth map.

    ``"nearest"`` gives every pixel the depth of the nearest measured pixel. ``"columns"`` first
    interpolates linearly in inverse depth along each image column between the measured pixels
    above and below (at most ``max_gap`` rows apart, inverse depths within a relative
    ``max_jump`` of each other, i.e. the same surface: exact for planes, whose inverse depth is
    affine in the pixel coordinates), then fills what is left by nearest neighbour. LiDAR returns
    form rows, so ``"columns"`` follows the ground and walls between the beams far better.

    Args:
        depth: [H, W] metres, 0 = none.
        max_distance: leave pixels farther than this from every (interpolated) pixel at 0, px.
        mode: ``"nearest"`` or ``"columns"``.
        max_gap: ``"columns"``: largest row gap bridged, px.
        max_jump: ``"columns"``: largest relative inverse-depth difference bridged.

    Returns:
        [H, W] float32 metres (0 where still unknown).
    """
    check_tensor(depth, "depth", dim=2, floating=True)
    if max_distance < 0:
        raise ValueError(f"max_distance: expected >= 0, got {max_distance}")
    if mode not in ("nearest", "columns"):
        raise ValueError(f"mode: expected 'nearest' or 'columns', got {mode!r}")
    d = depth.detach().float().cpu().numpy().copy()
    known = d > 0
    if not known.any():
        return torch.zeros(d.shape, dtype=torch.float32)
    if mode == "columns":
        h = d.shape[0]
        rows = np.arange(h)[:, None].repeat(d.shape[1], 1)
        above = np.maximum.accumulate(np.where(known, rows, -1), axis=0)
        below = np.minimum.accumulate(np.where(known, rows, h)[::-1], axis=0)[::-1]
        ok = (above >= 0) & (below < h) & (below - above <= max_gap) & ~known
        cols = np.arange(d.shape[1])[None].repeat(h, 0)
        inv_a = 1.0 / np.where(ok, d[np.clip(above, 0, h - 1), cols], 1.0)
        inv_b = 1.0 / np.where(ok, d[np.clip(below, 0, h - 1), cols], 1.0)
        ok &= np.abs(inv_a - inv_b) <= max_jump * np.maximum(inv_a, inv_b)
        t = np.where(ok, (rows - above) / np.maximum(below - above, 1), 0.0)
        inv = inv_a + t * (inv_b - inv_a)
        d = np.where(ok, 1.0 / inv, d).astype(np.float32)
        known = d > 0
    src = np.where(known, 0, 255).astype(np.uint8)
    dist, labels = cv2.distanceTransformWithLabels(src, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(int(labels.max()) + 1, dtype=np.float32)
    lut[labels[known]] = d[known]
    out = lut[labels]
    out[dist > max_distance] = 0
    return torch.from_numpy(out)


def depth_to_disparity(depth: Tensor, fx: float, baseline: float = KITTI_BASELINE_M) -> Tensor:
    """Stereo disparity ``fx * baseline / depth`` (appendix C.3 labels); 0 where depth is 0.

    Args:
        depth: [..., H, W] z-depth, metres (0 = none).
        fx: focal length, px.
        baseline: stereo baseline, metres (the released code uses 0.5327 for KITTI).

    Returns:
        Disparity of the same shape, px, float32.
    """
    check_tensor(depth, "depth", floating=True)
    if not (fx > 0 and baseline > 0):
        raise ValueError(f"fx, baseline: expected > 0, got {fx}, {baseline}")
    if (depth < 0).any():
        raise ValueError("depth: expected values >= 0")
    d = depth.float()
    return torch.where(d > 0, fx * baseline / d.clamp_min(1e-6), torch.zeros_like(d))


def box_corners(center: Tensor, size: Tensor, rotation: Tensor) -> Tensor:
    """The 8 corners [M, 8, 3] of boxes.

    Args:
        center: [M, 3] box centres.
        size: [M, 3] extents along the box's own x, y, z axes (full lengths).
        rotation: [M, 3, 3] box-to-frame rotations.
    """
    check_tensor(center, "center", dim=2, floating=True)
    m = center.shape[0]
    if center.shape[1] != 3 or tuple(size.shape) != (m, 3) or tuple(rotation.shape) != (m, 3, 3):
        raise ValueError(f"center, size, rotation: expected [M, 3], [M, 3], [M, 3, 3], got "
                         f"{list(center.shape)}, "
                         f"{list(size.shape)}, {list(rotation.shape)}")
    signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                         dtype=center.dtype, device=center.device) * 0.5
    local = signs[None] * size[:, None, :].to(center.dtype)
    return torch.einsum("mij,mkj->mki", rotation.to(center.dtype), local) + center[:, None, :]


_BOX_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def project_boxes_mask(corners: Tensor, intrinsics: Tensor, cam_to_ego: Tensor, image_hw: tuple[int, int], *,
                       near: float = 0.1) -> Tensor:
    """Pixels covered by the image of 3-D boxes (the convex hull of each projected box).

    Boxes crossing the plane z = ``near`` in front of the camera are clipped to it, so boxes
    partly behind the camera are drawn correctly.

    Args:
        corners: [M, 8, 3] box corners in the ego frame (:func:`box_corners`), metres.
        intrinsics: [3, 3].
        cam_to_ego: [4, 4].
        image_hw: (H, W).
        near: clipping plane, metres.

    Returns:
        [H, W] bool.
    """
    check_tensor(corners, "corners", dim=3, floating=True)
    if corners.shape[1:] != (8, 3):
        raise ValueError(f"corners: expected shape [M, 8, 3], got {list(corners.shape)}")
    k = check_matrix(intrinsics, "intrinsics", 3).double().cpu().numpy()
    e2c = torch.linalg.inv(check_matrix(cam_to_ego, "cam_to_ego", 4).double().cpu()).numpy()
    h, w = check_hw(image_hw)
    canvas = np.zeros((h, w), dtype=np.uint8)
    for box in corners.double().cpu().numpy():
        cam = box @ e2c[:3, :3].T + e2c[:3, 3]
        pts = [cam[i] for i in range(8) if cam[i, 2] >= near]
        for a, b in _BOX_EDGES:
            za, zb = cam[a, 2], cam[b, 2]
            if (za - near) * (zb - near) < 0:
                t = (near - za) / (zb - za)
                pts.append(cam[a] + t * (cam[b] - cam[a]))
        if len(pts) < 3:
            continue
        p = np.stack(pts)
        uv = (p @ k.T)[:, :2] / p[:, 2:3]
        # keep the polygon within a generous frame so int32 conversion cannot overflow
        uv = np.clip(uv, -4 * w - 1, 4 * w + 1) if w >= h else np.clip(uv, -4 * h - 1, 4 * h + 1)
        hull = cv2.convexHull(np.round(uv).astype(np.int32))
        cv2.fillConvexPoly(canvas, hull, 1)
    return torch.from_numpy(canvas.astype(bool))
