"""Camera projection of ego-frame points (OpenCV cameras) and input validation of calibration."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_calibration", "project_to_cameras"]


def check_calibration(intrinsics: object, cam_to_ego: object, batch: int | None = None,
                      cameras: int | None = None) -> tuple[int, int]:
    """Validate ``intrinsics`` [B, N, 3, 3] and ``cam_to_ego`` [B, N, 4, 4]; return (B, N).

    Raises:
        TypeError: not tensors.
        ValueError: wrong shapes, non-floating dtype, non-finite values, or (B, N) different from
            ``batch``/``cameras`` when those are given.
    """
    for name, t, tail in (("intrinsics", intrinsics, (3, 3)), ("cam_to_ego", cam_to_ego, (4, 4))):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4 or tuple(t.shape[2:]) != tail:
            raise ValueError(f"{name} must be [B, N, {tail[0]}, {tail[1]}], got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {t.dtype}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} has non-finite values")
    if intrinsics.shape[:2] != cam_to_ego.shape[:2]:
        raise ValueError(f"intrinsics {tuple(intrinsics.shape)} and cam_to_ego {tuple(cam_to_ego.shape)} "
                         "disagree on [B, N]")
    B, N = int(intrinsics.shape[0]), int(intrinsics.shape[1])
    if batch is not None and B != batch or cameras is not None and N != cameras:
        raise ValueError(f"calibration is for [B, N] = [{B}, {N}] but the images are [{batch}, {cameras}]")
    return B, N


def project_to_cameras(points: Tensor, intrinsics: Tensor, cam_to_ego: Tensor, image_size: tuple[int, int],
                       min_depth: float = 1e-5) -> tuple[Tensor, Tensor, Tensor]:
    """Project ego-frame points into every camera of each sample.

    Cameras follow OpenCV (x right, y down, z forward); pixel (u, v) = (0, 0) is the centre of the
    top-left pixel, so the image covers u in [-0.5, W - 0.5] and v in [-0.5, H - 0.5].

    Args:
        points: [B, P, 3] points in the ego frame (x forward, y left, z up), metres.
        intrinsics: [B, N, 3, 3] camera matrices at the resolution of ``image_size``.
        cam_to_ego: [B, N, 4, 4] camera-to-ego rigid transforms.
        image_size: (H, W) of the images, pixels.
        min_depth: points with camera depth <= this (metres) are behind the camera.

    Returns:
        uv: [B, N, P, 2] pixel coordinates (u right, v down); meaningless where not visible.
        depth: [B, N, P] camera-frame z, metres.
        visible: [B, N, P] bool, depth > ``min_depth`` and inside the image.
    """
    if not isinstance(points, Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be [B, P, 3], got shape {tuple(points.shape)}")
    B, _ = check_calibration(intrinsics, cam_to_ego)
    if points.shape[0] != B:
        raise ValueError(f"points have batch {points.shape[0]} but the calibration has {B}")
    if len(tuple(image_size)) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (H, W) with positive entries, got {image_size!r}")
    H, W = image_size
    ego_to_cam = torch.linalg.inv(cam_to_ego.to(points.dtype))  # [B, N, 4, 4]
    rot, trans = ego_to_cam[..., :3, :3], ego_to_cam[..., :3, 3]
    cam = torch.einsum("bnij,bpj->bnpi", rot, points) + trans[:, :, None, :]  # [B, N, P, 3]
    pix = torch.einsum("bnij,bnpj->bnpi", intrinsics.to(points.dtype), cam)
    depth = cam[..., 2]
    uv = pix[..., :2] / depth.clamp_min(min_depth)[..., None]
    visible = ((depth > min_depth) & (uv[..., 0] >= -0.5) & (uv[..., 0] <= W - 0.5)
               & (uv[..., 1] >= -0.5) & (uv[..., 1] <= H - 0.5))
    return uv, depth, visible
