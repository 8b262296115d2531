"""Movable-object masks: geometric (flow vs rigid flow), 2-D segmentation, ground truth."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_flow, check_image, check_mask, check_tensor
from ._flow import load_weights
from ._geometry import densify_depth, rigid_flow

__all__ = [
    "GEOMETRIC_MASK_THRESHOLD_PX",
    "SegmentationModel",
    "TorchSegmenter",
    "geometric_movable_mask",
    "residual_flow",
]

GEOMETRIC_MASK_THRESHOLD_PX = 2.0
"""Default residual threshold (px) of :func:`geometric_movable_mask` (chosen on the synthetic world,
see the README). The released Let Occ Flow code uses 8 px at its loss resolution for keyframes
0.5 s apart, on rendered depth."""


def residual_flow(
    flow: Tensor, depth: Tensor, intrinsics: Tensor, cam_t_to_t1: Tensor
) -> tuple[Tensor, Tensor]:
    """The dynamic flow of eq. 10: optical flow minus the rigid flow of the depth and ego-motion.

    Args:
        flow: [2, H, W] optical flow t -> t+1, px.
        depth: [H, W] z-depth, metres (0 = unknown).
        intrinsics: [3, 3].
        cam_t_to_t1: [4, 4] camera t -> camera t+1 transform.

    Returns:
        residual [2, H, W] px, valid [H, W] bool (depth known).
    """
    check_flow(flow)
    check_tensor(depth, "depth", dim=2, floating=True)
    if tuple(depth.shape) != tuple(flow.shape[-2:]):
        raise ValueError(f"depth: expected shape {list(flow.shape[-2:])}, got {list(depth.shape)}")
    static, valid = rigid_flow(depth, intrinsics, cam_t_to_t1)
    return flow.float().cpu() - static, valid


def geometric_movable_mask(flow: Tensor, flow_valid: Tensor, depth: Tensor, intrinsics: Tensor,
                           cam_t_to_t1: Tensor, *, threshold_px: float = GEOMETRIC_MASK_THRESHOLD_PX,
                           relative: float = 0.1, fill_distance: float = 30.0, fill_mode: str = "columns",
                           open_px: int = 3, close_px: int = 5) -> Tensor:
    """Pixels that move in the world: |optical flow - rigid flow| above a threshold.

    The sparse LiDAR depth is first filled (:func:`pseudolabels.densify_depth`, by default
    along the image columns, then nearest return up to ``fill_distance`` px), the rigid flow of
    eq. 10 is computed from it and the ego-motion, and a pixel is dynamic when its flow is
    valid, its depth known and ``|f_opt - f_static| > max(threshold_px, relative * |f_static|)``
    (the relative part absorbs the error of a filled depth, which scales with the rigid flow).
    A morphological opening (``open_px``) removes isolated pixels and a closing (``close_px``)
    fills small holes.

    Args:
        flow: [2, H, W] optical flow t -> t+1, px.
        flow_valid: [H, W] bool.
        depth: [H, W] sparse or dense z-depth, metres (0 = none).
        intrinsics: [3, 3].
        cam_t_to_t1: [4, 4] camera t -> t+1 transform (:func:`pseudolabels.camera_motion`).
        threshold_px: absolute residual threshold, px.
        relative: relative residual threshold (fraction of the rigid flow).
        fill_distance: how far the nearest-return fill reaches, px.
        fill_mode: how the sparse depth is filled (:func:`pseudolabels.densify_depth`).
        open_px, close_px: structuring element sizes, px (0 or 1 to skip).

    Returns:
        [H, W] bool.
    """
    check_flow(flow)
    h, w = flow.shape[-2:]
    check_mask(flow_valid, "flow_valid", (h, w))
    if threshold_px < 0 or relative < 0:
        raise ValueError(f"threshold_px, relative: expected >= 0, got {threshold_px}, {relative}")
    dense = densify_depth(check_tensor(depth, "depth", dim=2, floating=True), fill_distance, mode=fill_mode)
    res, known = residual_flow(flow, dense, intrinsics, cam_t_to_t1)
    static_mag = (flow.float().cpu() - res).norm(dim=0)
    bound = torch.clamp(relative * static_mag, min=threshold_px)
    moving = (res.norm(dim=0) > bound) & known & flow_valid.cpu()
    m = moving.numpy().astype(np.uint8)
    for op, size in ((cv2.MORPH_OPEN, open_px), (cv2.MORPH_CLOSE, close_px)):
        if size > 1:
            m = cv2.morphologyEx(m, op, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return torch.from_numpy(m.astype(bool))


@runtime_checkable
class SegmentationModel(Protocol):
    """A 2-D model giving movable-object pixels: ``predict(image [3, H, W] in [0, 1]) -> [H, W] bool``.

    The paper uses Grounded-SAM prompted with movable classes; :class:`TorchSegmenter` loads any
    PyTorch segmentation network from local weights. Combine with the geometric mask by AND
    (the released code's dynamic mask = flow-error mask AND movable segmentation).
    """

    name: str

    def predict(self, image: Tensor) -> Tensor: ...

    def settings(self) -> dict[str, Any]: ...


class TorchSegmenter:
    """A semantic segmentation network from a local weights file; movable = chosen classes.

    Example with torchvision's DeepLabV3 (weights copied by hand; COCO-VOC classes 2, 6, 7, 14,
    15 = bicycle, bus, car, motorbike, person)::

        seg = TorchSegmenter("deeplabv3", lambda: deeplabv3_resnet50(weights=None,
                             weights_backbone=None, aux_loss=True), "deeplabv3.pth",
                             lambda m, x: m(normalise(x))["out"], movable_classes=[2, 6, 7, 14, 15])

    Args:
        name: written to the manifest.
        model_factory: builds the network with random weights.
        weights_path: local state dict, loaded strictly (:func:`pseudolabels.load_weights`).
        forward: ``forward(model, image [1, 3, H, W] in [0, 1]) -> logits [1, C, H, W]``.
        movable_classes: class indices counted as movable.
        device: where the network runs.

    Raises:
        FileNotFoundError: naming the path when the file is absent.
        ValueError: naming the path when the weights do not fit.
    """

    def __init__(self, name: str, model_factory: Callable[[], nn.Module], weights_path: str | os.PathLike,
                 forward: Callable[[nn.Module, Tensor], Tensor], movable_classes: Sequence[int], *,
                 device: str | torch.device = "cpu"):
        if not movable_classes:
            raise ValueError("movable_classes: expected at least one class index")
        self.name = name
        self.weights_path = Path(weights_path)
        self.movable_classes = [int(c) for c in movable_classes]
        self.device = torch.device(device)
        self._forward = forward
        model = model_factory()
        load_weights(model, self.weights_path)
        self.model = model.eval().to(self.device)

    @torch.inference_mode()
    def predict(self, image: Tensor) -> Tensor:
        """Movable pixels [H, W] bool of one image [3, H, W] in [0, 1]."""
        image = check_image(image, "image")
        logits = self._forward(self.model, image[None].float().to(self.device))
        if logits.dim() != 4 or logits.shape[0] != 1 or tuple(logits.shape[-2:]) != tuple(image.shape[-2:]):
            raise ValueError(f"{self.name}: forward must return logits [1, C, H, W] at the image size, "
                             f"got {list(logits.shape)}")
        labels = logits[0].argmax(0).cpu()
        return torch.isin(labels, torch.tensor(self.movable_classes))

    def settings(self) -> dict[str, Any]:
        return {"weights": self.weights_path.name, "movable_classes": self.movable_classes}
