"""Image preprocessing that keeps the camera geometry right.

Every image goes through one :class:`ResizeCrop`: a resize by a scale factor (the output size
is rounded to whole pixels and the *exact* per-axis factors are used), then a crop. The same
plan updates the intrinsics, and resamples cue maps consistently (flow vectors are scaled,
masks stay masks, sparse depth keeps its points).

Pixel convention: OpenCV, the centre of pixel (u, v) is at continuous coordinate (u, v). A
resize from W to W' pixels maps x to (x + 0.5) * W'/W - 0.5 (the half-pixel-centre rule of
``torch.nn.functional.interpolate(align_corners=False)``), a crop at (top, left) maps x to
x - left. The intrinsics follow the same maps, so a 3D point projects onto the same image
content before and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageConfig:
    """Model input and loss resolutions (REFERENCE.md: nuScenes x0.88 -> 512x1408 and
    x0.44 -> 256x704).

    Attributes:
        input_scale: resize factor of the model input images.
        input_size: (H, W) crop of the resized input images, or None for no crop.
        loss_scale: resize factor of the loss (rendering/supervision) images.
        loss_size: (h, w) crop of the resized loss images, or None for no crop.
        crop_anchor: (vertical, horizontal) position of the crop window in [0, 1]: 0 keeps the
            top/left, 1 the bottom/right, 0.5 centres. The default keeps the bottom (drops sky)
            and centres horizontally. With input and loss scales in ratio 2 the two crops cover
            the same part of the original image.
    """

    input_scale: float = 0.88
    input_size: tuple[int, int] | None = (512, 1408)
    loss_scale: float = 0.44
    loss_size: tuple[int, int] | None = (256, 704)
    crop_anchor: tuple[float, float] = (1.0, 0.5)

    def __post_init__(self) -> None:
        for name in ("input_scale", "loss_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"ImageConfig.{name} must be a positive finite float, got {value!r}")
        for name in ("input_size", "loss_size"):
            value = getattr(self, name)
            if value is not None and (len(tuple(value)) != 2 or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
                raise ValueError(f"ImageConfig.{name} must be None or (H, W) positive ints, got {value!r}")
        if len(tuple(self.crop_anchor)) != 2 or not all(0.0 <= float(a) <= 1.0 for a in self.crop_anchor):
            raise ValueError(
                f"ImageConfig.crop_anchor must be two fractions in [0, 1], got {self.crop_anchor!r}")

    def input_plan(self, height: int, width: int) -> ResizeCrop:
        """The :class:`ResizeCrop` from an original ``height x width`` image to the model input."""
        return plan_resize_crop((height, width), self.input_scale, self.input_size, self.crop_anchor)

    def loss_plan(self, height: int, width: int) -> ResizeCrop:
        """The :class:`ResizeCrop` from an original ``height x width`` image to the loss images."""
        return plan_resize_crop((height, width), self.loss_scale, self.loss_size, self.crop_anchor)


#: nuScenes (1600x900 cameras) as in the released Let Occ Flow configuration.
IMAGE_NUSCENES = ImageConfig()
#: KITTI (about 1242x375): 352x1216 input at full scale, loss images at half scale, 176x608.
IMAGE_KITTI = ImageConfig(input_scale=1.0, input_size=(352, 1216), loss_scale=0.5, loss_size=(176, 608))


@dataclass(frozen=True)
class ResizeCrop:
    """A resize from ``source`` to ``resized`` pixels followed by a crop of ``size`` at ``top, left``.

    Attributes:
        source: (H, W) of the original image.
        resized: (H', W') after resizing.
        top: first kept row of the resized image.
        left: first kept column of the resized image.
        size: (h, w) of the output.
    """

    source: tuple[int, int]
    resized: tuple[int, int]
    top: int
    left: int
    size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Exact (sy, sx) resize factors."""
        return self.resized[0] / self.source[0], self.resized[1] / self.source[1]

    def intrinsics(self, k: torch.Tensor) -> torch.Tensor:
        """Intrinsics of the output image: ``[..., 3, 3]`` in, same shape out."""
        return resize_crop_intrinsics(k, self.scale, (self.top, self.left))

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """``[..., C, H, W]`` float images to ``[..., C, h, w]`` (antialiased bilinear)."""
        _check_map(images, "images", self.source, channels=True)
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point, got {images.dtype}")
        out = self._crop(_resize(images, self.resized, antialias=True))
        # The antialiasing filter can overshoot slightly on sharp edges.
        return out.clamp(0.0, 1.0)

    def mask(self, mask: torch.Tensor) -> torch.Tensor:
        """``[..., H, W]`` bool mask to ``[..., h, w]``: True where at least half the area is True."""
        _check_map(mask, "mask", self.source, channels=False)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
        out = _resize(mask.float().unsqueeze(-3), self.resized, antialias=True).squeeze(-3)
        return self._crop(out) >= 0.5

    def flow(self, flow: torch.Tensor, valid: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Resample an optical-flow field and scale its vectors to output pixels.

        Args:
            flow: ``[..., 2, H, W]`` (dx, dy) in source pixels.
            valid: ``[..., H, W]`` bool, or None for all valid (non-finite vectors are invalid).

        Returns:
            ``flow`` ``[..., 2, h, w]`` in output pixels (vectors scaled by (sx, sy)) and
            ``valid`` ``[..., h, w]``: the valid-weighted average of the source vectors under
            the resampling filter; an output pixel is valid when any valid source pixel
            contributes to it (so sparse tracks survive downscaling). Invalid vectors are 0.
        """
        _check_map(flow, "flow", self.source, channels=True)
        if flow.shape[-3] != 2:
            raise ValueError(f"flow must have shape [..., 2, H, W], got {tuple(flow.shape)}")
        if valid is not None:
            _check_map(valid, "valid", self.source, channels=False)
            want = tuple(flow.shape[:-3] + flow.shape[-2:])
            if valid.dtype != torch.bool or tuple(valid.shape) != want:
                raise ValueError(f"valid must be a bool tensor of shape {want}, "
                                 f"got {valid.dtype} {tuple(valid.shape)}")
        if flow.device.type == "cpu":
            return self._flow_numpy(flow, valid)
        return self._flow_torch(flow, valid)

    def _flow_torch(self, flow: torch.Tensor, valid: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`flow` with torch ops (tensors on an accelerator)."""
        finite = torch.isfinite(flow).all(dim=-3)
        valid = finite if valid is None else valid & finite
        w = valid.float().unsqueeze(-3)
        weighted = torch.where(valid.unsqueeze(-3), flow.float(), torch.zeros((), dtype=torch.float32))
        num = _resize(torch.cat([weighted * w, w], dim=-3), self.resized, antialias=True)
        num = self._crop(num)
        weight = num[..., 2:3, :, :]
        out_valid = weight[..., 0, :, :] > 1e-6
        sy, sx = self.scale
        scale = torch.tensor([sx, sy], dtype=torch.float32, device=flow.device).view(2, 1, 1)
        out = torch.where(out_valid.unsqueeze(-3), num[..., :2, :, :] / weight.clamp_min(1e-6) * scale,
                          torch.zeros((), dtype=torch.float32))
        return out, out_valid

    def _flow_numpy(self, flow: torch.Tensor, valid: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`flow` for CPU tensors, single-threaded (numpy + OpenCV)."""
        f = flow.detach().numpy().astype(np.float32, copy=False)
        ok = np.isfinite(f).all(axis=-3)
        if valid is not None:
            ok &= valid.detach().numpy()
        w = ok.astype(np.float32)[..., None, :, :]
        stacked = np.concatenate([np.where(w > 0, f, np.float32(0.0)), w], axis=-3)
        num = self._crop(_resize(torch.from_numpy(stacked), self.resized, antialias=True)).numpy()
        weight = num[..., 2:3, :, :]
        out_valid = weight[..., 0, :, :] > 1e-6
        sy, sx = self.scale
        scale = np.array([sx, sy], dtype=np.float32).reshape(2, 1, 1)
        out = np.where(out_valid[..., None, :, :], num[..., :2, :, :] / np.maximum(weight, 1e-6) * scale,
                       np.float32(0.0)).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(out)), torch.from_numpy(np.ascontiguousarray(out_valid))

    def sparse_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """Resample a sparse depth map (0 = no value) keeping its points.

        Each valid source pixel moves to the output pixel containing its (mapped) centre; when
        several land on one pixel the nearest depth wins. ``[..., H, W]`` -> ``[..., h, w]``.
        """
        _check_map(depth, "depth", self.source, channels=False)
        if not depth.is_floating_point():
            raise ValueError(f"depth must be floating point, got {depth.dtype}")
        lead = depth.shape[:-2]
        flat = depth.detach().cpu().reshape(-1, *self.source).numpy()
        h, w = self.size
        b, v, u = np.nonzero((flat > 0) & np.isfinite(flat))
        sy, sx = self.scale
        uu = np.floor((u + 0.5) * sx - self.left).astype(np.int64)
        vv = np.floor((v + 0.5) * sy - self.top).astype(np.int64)
        keep = (uu >= 0) & (uu < w) & (vv >= 0) & (vv < h)
        index = (b[keep] * h + vv[keep]) * w + uu[keep]
        out = _scatter_min(index, flat[b[keep], v[keep], u[keep]], flat.shape[0] * h * w)
        return torch.from_numpy(out.reshape(*lead, h, w)).to(device=depth.device, dtype=depth.dtype)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.size
        return x[..., self.top:self.top + h, self.left:self.left + w]


def _scatter_min(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """``[size]`` array holding, at each index, the smallest of the values sent there (0 elsewhere)."""
    out = np.zeros(size, dtype=np.float32)
    if index.size:
        order = np.lexsort((values, index))  # by index, then by value
        first = np.ones(order.size, dtype=bool)
        first[1:] = index[order][1:] != index[order][:-1]
        out[index[order][first]] = values[order][first]
    return out


def _check_map(x: torch.Tensor, name: str, source: tuple[int, int], *, channels: bool) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    need = 3 if channels else 2
    if x.ndim < need or tuple(x.shape[-2:]) != tuple(source):
        dims = "[..., C, H, W]" if channels else "[..., H, W]"
        raise ValueError(f"{name} must have shape {dims} with (H, W) = {tuple(source)}, got {tuple(x.shape)}")


def _resize(x: torch.Tensor, size: tuple[int, int], *, antialias: bool) -> torch.Tensor:
    """Resize the last two dims of ``[..., C, H, W]`` (half-pixel centres).

    CPU float32 tensors go through OpenCV (INTER_AREA when shrinking, INTER_LINEAR otherwise):
    single-threaded and fast on a busy machine. Other tensors use torch (antialiased bilinear
    when shrinking). Both keep the geometry of :func:`resize_crop_intrinsics`.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    down = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if flat.device.type == "cpu" and flat.dtype == torch.float32 and flat.numel():
        planes = flat.detach().reshape(-1, *x.shape[-2:]).numpy().transpose(1, 2, 0)
        interp = cv2.INTER_AREA if (down and antialias) else cv2.INTER_LINEAR
        # OpenCV resizes at most 4 channels at once for every interpolation mode
        chunks = [cv2.resize(np.ascontiguousarray(planes[..., i:i + 4]), (size[1], size[0]),
                             interpolation=interp) for i in range(0, planes.shape[-1], 4)]
        chunks = [c[..., None] if c.ndim == 2 else c for c in chunks]
        out = torch.from_numpy(np.ascontiguousarray(np.concatenate(chunks, axis=-1).transpose(2, 0, 1)))
        return out.reshape(*lead, x.shape[-3], *size)
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=antialias and down)
    return out.reshape(*lead, *out.shape[-3:])


def plan_resize_crop(source: tuple[int, int], scale: float, size: tuple[int, int] | None = None,
                     anchor: tuple[float, float] = (1.0, 0.5)) -> ResizeCrop:
    """Plan a resize by ``scale`` then a crop to ``size``.

    Args:
        source: (H, W) of the original image, pixels.
        scale: resize factor (> 0); the resized size is ``round(H * scale), round(W * scale)``.
        size: (h, w) of the crop, or None to keep the whole resized image.
        anchor: (vertical, horizontal) crop position in [0, 1] (0 top/left, 1 bottom/right).

    Returns:
        The :class:`ResizeCrop`.

    Raises:
        ValueError: the crop is larger than the resized image (names both sizes).
    """
    if len(tuple(source)) != 2 or not all(isinstance(v, int) and v > 0 for v in source):
        raise ValueError(f"source must be (H, W) positive ints, got {source!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    resized = (max(1, round(source[0] * scale)), max(1, round(source[1] * scale)))
    if size is None:
        size = resized
    size = (int(size[0]), int(size[1]))
    if size[0] > resized[0] or size[1] > resized[1]:
        raise ValueError(f"crop size {size} is larger than the resized image {resized} "
                         f"(source {tuple(source)} x {scale}); lower the crop size or raise the scale")
    top = round((resized[0] - size[0]) * float(anchor[0]))
    left = round((resized[1] - size[1]) * float(anchor[1]))
    return ResizeCrop(source=tuple(source), resized=resized, top=top, left=left, size=size)


def resize_crop_intrinsics(k: torch.Tensor, scale: tuple[float, float],
                           offset: tuple[float, float]) -> torch.Tensor:
    """Intrinsics after resizing by ``scale`` = (sy, sx) and cropping at ``offset`` = (top, left).

    ``fx' = fx sx``, ``cx' = (cx + 0.5) sx - 0.5 - left`` (same for y), skew scaled by sx.

    Args:
        k: ``[..., 3, 3]`` pinhole intrinsics, pixels.
        scale: (sy, sx) exact resize factors.
        offset: (top, left) crop offset in resized pixels.

    Returns:
        ``[..., 3, 3]`` new intrinsics (same dtype).
    """
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"k must be a torch.Tensor, got {type(k).__name__}")
    if k.ndim < 2 or tuple(k.shape[-2:]) != (3, 3) or not k.is_floating_point():
        raise ValueError(f"k must be a floating-point [..., 3, 3] tensor, got {k.dtype} {tuple(k.shape)}")
    sy, sx = float(scale[0]), float(scale[1])
    top, left = float(offset[0]), float(offset[1])
    out = k.clone()
    out[..., 0, 0] = k[..., 0, 0] * sx
    out[..., 0, 1] = k[..., 0, 1] * sx
    out[..., 0, 2] = (k[..., 0, 2] + 0.5) * sx - 0.5 - left
    out[..., 1, 1] = k[..., 1, 1] * sy
    out[..., 1, 2] = (k[..., 1, 2] + 0.5) * sy - 0.5 - top
    return out


def project_points(points: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ego-frame points into N cameras.

    Args:
        points: ``[P, 3]`` points in the ego frame, metres.
        intrinsics: ``[N, 3, 3]``.
        cam_to_ego: ``[N, 4, 4]`` camera (OpenCV) to ego transforms.

    Returns:
        ``uv`` ``[N, P, 2]`` pixel coordinates (OpenCV centres) and ``depth`` ``[N, P]``, the
        z coordinate in each camera, metres (<= 0 behind the camera).
    """
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape [P, 3], got {tuple(points.shape)}")
    n = intrinsics.shape[0]
    if intrinsics.shape != (n, 3, 3) or cam_to_ego.shape != (n, 4, 4):
        raise ValueError(f"intrinsics must be [N, 3, 3] and cam_to_ego [N, 4, 4], got "
                         f"{tuple(intrinsics.shape)} and {tuple(cam_to_ego.shape)}")
    dtype = torch.promote_types(points.dtype, cam_to_ego.dtype)
    rot = cam_to_ego[:, :3, :3].to(dtype)
    trans = cam_to_ego[:, :3, 3].to(dtype)
    cam = torch.einsum("nji,npj->npi", rot, points.to(dtype).unsqueeze(0) - trans[:, None, :])
    depth = cam[..., 2]
    pix = torch.einsum("nij,npj->npi", intrinsics.to(dtype), cam)
    uv = pix[..., :2] / depth.clamp_min(1e-9).unsqueeze(-1)
    return uv, depth


def lidar_depth_maps(points: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor,
                     size: tuple[int, int], *, min_depth: float = 0.1,
                     max_depth: float = 80.0) -> torch.Tensor:
    """Sparse depth maps from ego-frame LiDAR points (nearest point per pixel).

    Args:
        points: ``[P, 3]`` ego-frame points, metres.
        intrinsics: ``[N, 3, 3]`` intrinsics of the target images.
        cam_to_ego: ``[N, 4, 4]``.
        size: (h, w) of the target images.
        min_depth, max_depth: kept depth range along the camera z axis, metres.

    Returns:
        ``[N, h, w]`` float32 camera-z depth, metres, 0 where no point projects.
    """
    h, w = int(size[0]), int(size[1])
    uv, depth = project_points(points, intrinsics, cam_to_ego)
    uv = uv.detach().cpu().numpy()
    depth = depth.detach().cpu().numpy()
    n = uv.shape[0]
    u = np.floor(uv[..., 0] + 0.5).astype(np.int64)
    v = np.floor(uv[..., 1] + 0.5).astype(np.int64)
    keep = (depth >= min_depth) & (depth <= max_depth) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    cam = np.broadcast_to(np.arange(n)[:, None], u.shape)
    out = _scatter_min(((cam * h + v) * w + u)[keep], depth[keep].astype(np.float32), n * h * w)
    return torch.from_numpy(out.reshape(n, h, w)).to(points.device)
