"""Ray sampling: small regular ray images per camera (the released "cellular" sampler) and LiDAR rays.

Pixel convention (OpenCV): the centre of pixel column ``i`` / row ``j`` is at ``u = i``, ``v = j``,
and a camera point ``(x, y, z)`` projects to ``(fx x / z + cx, fy y / z + cy)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class CameraRays:
    """Rays through a regular ``h x w`` lattice of pixels of every camera.

    Attributes:
        pixels: ``[B, N, h, w, 2]`` long (column, row) indices of the pixels in the loss image.
        origins: ``[B, N, h, w, 3]`` ray origins (camera centres) in the ego frame, metres.
        directions: ``[B, N, h, w, 3]`` unit ray directions in the ego frame.
    """

    pixels: torch.Tensor
    origins: torch.Tensor
    directions: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, N, h, w)``."""
        return tuple(self.pixels.shape[:4])

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Origins and directions as ``[B, N * h * w, 3]`` (camera-major) for ``volrender``."""
        b = self.origins.shape[0]
        return self.origins.reshape(b, -1, 3), self.directions.reshape(b, -1, 3)


@dataclass
class LidarRays:
    """Rays from the LiDAR origin to sampled LiDAR points.

    Attributes:
        origins: ``[B, R, 3]`` ray origins in the ego frame, metres.
        directions: ``[B, R, 3]`` unit directions.
        ranges: ``[B, R]`` measured distance along the ray, metres.
        valid: ``[B, R]`` bool; False for padding (a scene without usable points).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    ranges: torch.Tensor
    valid: torch.Tensor


def _check_cameras(intrinsics: torch.Tensor, cam_to_ego: torch.Tensor) -> None:
    for name, value, tail in (("intrinsics", intrinsics, (3, 3)), ("cam_to_ego", cam_to_ego, (4, 4))):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim != 4 or tuple(value.shape[2:]) != tail or not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point [B, N, {tail[0]}, {tail[1]}] tensor, got "
                             f"{tuple(value.shape)} {value.dtype}")
    if intrinsics.shape[:2] != cam_to_ego.shape[:2]:
        raise ValueError(f"intrinsics and cam_to_ego must share [B, N], got {tuple(intrinsics.shape[:2])} "
                         f"and {tuple(cam_to_ego.shape[:2])}")


def pixel_lattice(batch: int, cameras: int, image_size: tuple[int, int], ray_shape: tuple[int, int], *,
                  random: bool = True, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Pixel indices of a regular ``h x w`` lattice per camera with random stride and offset.

    Each (scene, camera) draws one integer stride ``s`` uniformly from ``1 .. s_max`` with
    ``s_max = min((W - 1) // (w - 1), (H - 1) // (h - 1))`` (the same along both axes, so the
    lattice has square cells) and an offset uniformly among the positions that keep the lattice
    inside the image. ``random=False`` takes ``s_max`` and centres the lattice (evaluation).

    Args:
        batch, cameras: B and N.
        image_size: ``(H, W)`` of the loss image, pixels.
        ray_shape: ``(h, w)`` of the ray image, with ``2 <= h <= H`` and ``2 <= w <= W``.
        random: draw stride and offset (training) or use the fixed centred lattice.
        generator: CPU generator for the draws (reproducibility).
        device: device of the result.

    Returns:
        ``[B, N, h, w, 2]`` long (column, row) pixel indices.
    """
    H, W = (int(v) for v in image_size)
    h, w = (int(v) for v in ray_shape)
    if not (2 <= h <= H and 2 <= w <= W):
        raise ValueError(f"ray_shape must satisfy 2 <= h <= H and 2 <= w <= W for image_size {(H, W)}, "
                         f"got {(h, w)}")
    s_max = min((W - 1) // (w - 1), (H - 1) // (h - 1))
    if random:
        stride = torch.randint(1, s_max + 1, (batch, cameras), generator=generator)
        u = torch.rand((batch, cameras, 2), generator=generator)
    else:
        stride = torch.full((batch, cameras), s_max)
        u = torch.full((batch, cameras, 2), 0.5)
    span_x = (W - 1) - stride * (w - 1)
    span_y = (H - 1) - stride * (h - 1)
    off_x = torch.floor(u[..., 0] * (span_x + 1)).clamp(max=span_x).long()
    off_y = torch.floor(u[..., 1] * (span_y + 1)).clamp(max=span_y).long()
    cols = off_x[..., None] + stride[..., None] * torch.arange(w)
    rows = off_y[..., None] + stride[..., None] * torch.arange(h)
    grid = torch.stack(torch.broadcast_tensors(cols[:, :, None, :], rows[:, :, :, None]), dim=-1)
    return grid.to(device)


def pixel_rays(pixels: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ego-frame rays through pixels.

    Args:
        pixels: ``[B, N, ..., 2]`` (u, v) pixel coordinates (long or float).
        intrinsics: ``[B, N, 3, 3]``.
        cam_to_ego: ``[B, N, 4, 4]`` OpenCV camera (x right, y down, z forward) to ego.

    Returns:
        ``(origins, directions)``, each ``[B, N, ..., 3]``; directions are unit length.
    """
    _check_cameras(intrinsics, cam_to_ego)
    if pixels.shape[:2] != intrinsics.shape[:2] or pixels.shape[-1] != 2:
        raise ValueError(f"pixels must have shape [B, N, ..., 2] with [B, N] = "
                         f"{tuple(intrinsics.shape[:2])}, got {tuple(pixels.shape)}")
    dtype = intrinsics.dtype
    b, n = pixels.shape[:2]
    extra = pixels.shape[2:-1]
    uv = pixels.to(dtype).reshape(b, n, -1, 2)
    homog = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)
    cam_dirs = homog @ torch.linalg.inv(intrinsics).transpose(-1, -2)
    dirs = cam_dirs @ cam_to_ego[..., :3, :3].to(dtype).transpose(-1, -2)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = cam_to_ego[..., None, :3, 3].to(dtype).expand_as(dirs)
    return origins.reshape(b, n, *extra, 3), dirs.reshape(b, n, *extra, 3)


def sample_camera_rays(intrinsics: torch.Tensor, cam_to_ego: torch.Tensor, image_size: tuple[int, int],
                       ray_shape: tuple[int, int], *, random: bool = True,
                       generator: torch.Generator | None = None) -> CameraRays:
    """A small regular ray image per camera (random stride and offset), with ego-frame rays.

    Args:
        intrinsics: ``[B, N, 3, 3]`` intrinsics of the loss images.
        cam_to_ego: ``[B, N, 4, 4]`` OpenCV camera to ego transforms.
        image_size: ``(H, W)`` of the loss images.
        ray_shape: ``(h, w)`` rays per camera (32 x 88 on nuScenes, 44 x 152 on KITTI).
        random: random stride/offset (training) or the fixed centred lattice.
        generator: CPU generator for the draws.

    Returns:
        :class:`CameraRays` with pixels ``[B, N, h, w, 2]`` and rays ``[B, N, h, w, 3]``.
    """
    _check_cameras(intrinsics, cam_to_ego)
    b, n = intrinsics.shape[:2]
    pixels = pixel_lattice(b, n, image_size, ray_shape, random=random, generator=generator,
                           device=intrinsics.device)
    origins, directions = pixel_rays(pixels, intrinsics, cam_to_ego)
    return CameraRays(pixels, origins, directions)


def sample_mask_pixels(mask: torch.Tensor, count: int, *,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``count`` pixels per camera uniformly (with replacement) from where ``mask`` is True.

    Used to add rays on movable objects, which cover a few percent of an image and so get only a
    handful of the regular lattice's rays.

    Args:
        mask: ``[B, N, H, W]`` bool mask of the loss image.
        count: pixels per camera (>= 1).
        generator: CPU generator for the draws.

    Returns:
        ``(pixels [B, N, 1, count, 2] long (column, row), valid [B, N, 1, count] bool)``; a camera
        whose mask is empty gets pixel (0, 0) and ``valid = False`` everywhere. The pixels form a
        ``1 x count`` "ray image", the shape :func:`gather_pixels` and :func:`pixel_rays` take.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.ndim != 4:
        raise ValueError(f"mask must be a bool [B, N, H, W] tensor, got "
                         f"{getattr(mask, 'shape', type(mask))} {getattr(mask, 'dtype', '')}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    b, n, H, W = mask.shape
    flat = mask.reshape(b * n, H * W).cpu()
    has_any = flat.any(dim=1)
    probs = torch.where(has_any[:, None], flat.float(), torch.ones_like(flat, dtype=torch.float32))
    idx = torch.multinomial(probs, count, replacement=True, generator=generator)
    pixels = torch.stack([idx % W, idx // W], dim=-1).reshape(b, n, 1, count, 2)
    valid = has_any[:, None].expand(b * n, count).reshape(b, n, 1, count)
    return pixels.to(mask.device), valid.to(mask.device)


def gather_pixels(image: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Values of per-camera images at integer pixels.

    Args:
        image: ``[B, N, C, H, W]`` (or ``[B, N, H, W]``, treated as C = 1 and returned without it).
        pixels: ``[B, N, h, w, 2]`` long (column, row) indices inside the image.

    Returns:
        ``[B, N, h, w, C]`` (or ``[B, N, h, w]``) values.
    """
    if not isinstance(image, torch.Tensor) or image.ndim not in (4, 5):
        raise ValueError(f"image must be a [B, N, C, H, W] or [B, N, H, W] tensor, got "
                         f"{getattr(image, 'shape', type(image))}")
    squeeze = image.ndim == 4
    if squeeze:
        image = image[:, :, None]
    b, n, c, H, W = image.shape
    if pixels.ndim != 5 or pixels.shape[:2] != (b, n) or pixels.shape[-1] != 2 or pixels.is_floating_point():
        raise ValueError(f"pixels must be a long [B, N, h, w, 2] tensor with [B, N] = {(b, n)}, got "
                         f"{tuple(pixels.shape)} {pixels.dtype}")
    h, w = pixels.shape[2:4]
    flat = (pixels[..., 1] * W + pixels[..., 0]).reshape(b, n, 1, h * w).expand(b, n, c, h * w)
    out = image.reshape(b, n, c, H * W).gather(3, flat).reshape(b, n, c, h, w).permute(0, 1, 3, 4, 2)
    return out[..., 0] if squeeze else out


def project_points(points: torch.Tensor, intrinsics: torch.Tensor, world_to_cam: torch.Tensor,
                   min_depth: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Project points into per-camera images.

    Args:
        points: ``[B, N, ..., 3]`` points in the frame ``world_to_cam`` maps from, metres.
        intrinsics: ``[B, N, 3, 3]``.
        world_to_cam: ``[B, N, 4, 4]`` from the points' frame to OpenCV camera coordinates.
        min_depth: camera z below which a point counts as behind the camera.

    Returns:
        ``(uv [B, N, ..., 2], in_front [B, N, ...] bool)``; uv is finite everywhere (points behind
        the camera are divided by ``min_depth``).
    """
    b, n = points.shape[:2]
    extra = points.shape[2:-1]
    p = points.reshape(b, n, -1, 3)
    cam = p @ world_to_cam[..., :3, :3].transpose(-1, -2) + world_to_cam[..., None, :3, 3]
    z = cam[..., 2:3]
    in_front = z[..., 0] > min_depth
    pix = (cam / z.clamp(min=min_depth)) @ intrinsics.transpose(-1, -2)
    return pix[..., :2].reshape(b, n, *extra, 2), in_front.reshape(b, n, *extra)


def sample_lidar_rays(points: torch.Tensor, n_rays: int, *, mask: torch.Tensor | None = None,
                      origin: torch.Tensor | None = None, min_range: float = 0.5,
                      range_power: float = 0.0, generator: torch.Generator | None = None) -> LidarRays:
    """Draw ``n_rays`` LiDAR points per scene (with replacement) and make rays to them.

    Args:
        points: ``[B, P, 3]`` ego-frame LiDAR points, metres (padding allowed, see ``mask``).
        n_rays: rays per scene (4,096 in the released nuScenes setting).
        mask: ``[B, P]`` bool, True for real points; None = all real.
        origin: ``[B, 3]`` ray origin (the sensor position in the ego frame); None = ego origin.
        min_range: points closer than this to the origin are ignored, metres.
        range_power: a point is drawn with probability proportional to ``range ** range_power``
            (0 = uniformly over the usable points; 1 = proportional to the range).
        generator: CPU generator for the draws.

    Returns:
        :class:`LidarRays` with ``[B, n_rays]`` entries; scenes without usable points get
        ``valid = False`` everywhere.
    """
    if not isinstance(points, torch.Tensor) or points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be a [B, P, 3] tensor, got {getattr(points, 'shape', type(points))}")
    if not isinstance(n_rays, int) or n_rays < 1:
        raise ValueError(f"n_rays must be a positive int, got {n_rays!r}")
    if isinstance(range_power, bool) or not isinstance(range_power, (int, float)) \
            or not math.isfinite(range_power) or range_power < 0:
        raise ValueError(f"range_power must be a finite number >= 0, got {range_power!r}")
    b, p, _ = points.shape
    if mask is None:
        mask = torch.ones(b, p, dtype=torch.bool, device=points.device)
    elif mask.shape != (b, p) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool [B, P] = {(b, p)} tensor, got {tuple(mask.shape)} "
                         f"{mask.dtype}")
    if origin is None:
        origin = points.new_zeros(b, 3)
    elif origin.shape != (b, 3):
        raise ValueError(f"origin must have shape [B, 3] = {(b, 3)}, got {tuple(origin.shape)}")
    offsets = points - origin[:, None]
    ranges = offsets.norm(dim=-1)
    usable = mask & (ranges > min_range) & torch.isfinite(ranges)
    has_any = usable.any(dim=1)
    weight = usable.float()
    if range_power:
        weight = weight * torch.where(usable, ranges, torch.ones_like(ranges)).float() ** range_power
    probs = torch.where(has_any[:, None], weight, torch.ones_like(ranges)).cpu()
    if p == 0:
        idx = torch.zeros(b, n_rays, dtype=torch.long)
        points = points.new_zeros(b, 1, 3)
        offsets, ranges = points.clone(), points.new_ones(b, 1)
        usable = torch.zeros(b, 1, dtype=torch.bool, device=points.device)
    else:
        idx = torch.multinomial(probs, n_rays, replacement=True, generator=generator)
    idx = idx.to(points.device)
    sel_off = offsets.gather(1, idx[..., None].expand(b, n_rays, 3))
    sel_range = ranges.gather(1, idx)
    valid = usable.gather(1, idx)
    directions = sel_off / sel_range.clamp(min=1e-6)[..., None]
    directions = torch.where(valid[..., None], directions, directions.new_tensor([1.0, 0.0, 0.0]))
    return LidarRays(origin[:, None].expand(b, n_rays, 3).contiguous(), directions,
                     torch.where(valid, sel_range, torch.zeros_like(sel_range)), valid)
