"""Voxel IoU / mIoU in the style of Occ3D (confusion matrix summed over the dataset)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import _checks as check
from ._classes import OCC3D_CLASSES


@dataclass
class VoxelIoUAccumulator:
    """A ``[C, C]`` confusion matrix (rows: GT, columns: prediction) summed over samples.

    Attributes:
        num_classes: number of labels C (18 for Occ3D, the last one free).
        confusion: ``[C, C]`` long voxel counts.
    """

    num_classes: int = len(OCC3D_CLASSES)
    confusion: torch.Tensor = field(default=None)

    def __post_init__(self) -> None:
        if self.confusion is None:
            self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)

    def merge(self, other: VoxelIoUAccumulator) -> VoxelIoUAccumulator:
        """A new accumulator holding the counts of both."""
        if not isinstance(other, VoxelIoUAccumulator):
            raise TypeError(f"can only merge VoxelIoUAccumulator, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(f"num_classes differ: {self.num_classes} vs {other.num_classes}")
        return VoxelIoUAccumulator(self.num_classes, self.confusion.cpu() + other.confusion.cpu())

    __add__ = merge

    def __radd__(self, other):
        return self if isinstance(other, int) and other == 0 else self.merge(other)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The counts as plain tensors."""
        return {"confusion": self.confusion.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> VoxelIoUAccumulator:
        """A new accumulator with these settings and the counts in ``state``."""
        return VoxelIoUAccumulator(self.num_classes, state["confusion"].cpu().long())

    def iou(self) -> torch.Tensor:
        """``[C]`` float64 IoU per class: ``tp / (tp + fp + fn)``; NaN where the class is absent from
        both GT and prediction."""
        cm = self.confusion.double()
        tp = cm.diagonal()
        return tp / (cm.sum(0) + cm.sum(1) - tp)

    def compute(self) -> dict:
        """``"mIoU"`` (nanmean of the per-class IoU over the C-1 non-free classes, as Occ3D),
        ``"per_class"`` and ``"IoU_geo"`` (occupied vs free: a voxel is occupied when its label is not
        the last class)."""
        iou = self.iou()
        non_free = iou[: self.num_classes - 1]
        keep = non_free[~torch.isnan(non_free)]
        cm = self.confusion
        occ_tp = cm[:-1, :-1].sum()
        occ_gt = cm[:-1, :].sum()
        occ_pred = cm[:, :-1].sum()
        denom = int(occ_gt + occ_pred - occ_tp)
        names = OCC3D_CLASSES if self.num_classes == len(OCC3D_CLASSES) else [str(c) for c in
                                                                              range(self.num_classes)]
        return {"mIoU": float(keep.mean()) if keep.numel() else math.nan,
                "IoU_geo": float(occ_tp) / denom if denom else math.nan,
                "per_class": {names[c]: float(iou[c]) for c in range(self.num_classes - 1)},
                "voxels": int(cm.sum())}


def voxel_confusion(pred_labels: torch.Tensor, gt_labels: torch.Tensor, mask: torch.Tensor | None = None, *,
                    num_classes: int = len(OCC3D_CLASSES)) -> VoxelIoUAccumulator:
    """Confusion counts of one sample (Occ3D's voxel mIoU protocol).

    Args:
        pred_labels: ``[X, Y, Z]`` integer labels in ``[0, num_classes)``, the last = free.
        gt_labels: ``[X, Y, Z]`` integer GT labels, same shape.
        mask: ``[X, Y, Z]`` bool, voxels to score (Occ3D's ``mask_camera`` for the camera-visible
            protocol, or ``mask_lidar``), or None for every voxel.
        num_classes: number of labels (18 for Occ3D).

    Returns:
        A :class:`VoxelIoUAccumulator` with this sample's counts (on the CPU).
    """
    check.labels(pred_labels, "pred_labels", num_classes)
    check.labels(gt_labels, "gt_labels", num_classes)
    check.shape(pred_labels, "pred_labels", gt_labels.shape, "gt_labels.shape")
    gt = gt_labels.long().flatten()
    pred = pred_labels.long().flatten()
    if mask is not None:
        check.tensor(mask, "mask")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
        check.shape(mask, "mask", gt_labels.shape, "gt_labels.shape")
        check.same_device(mask=mask, gt_labels=gt_labels)
        keep = mask.flatten()
        gt, pred = gt[keep], pred[keep]
    check.same_device(pred_labels=pred_labels, gt_labels=gt_labels)
    cm = torch.bincount(gt * num_classes + pred, minlength=num_classes * num_classes)
    return VoxelIoUAccumulator(num_classes, cm.view(num_classes, num_classes).cpu())

