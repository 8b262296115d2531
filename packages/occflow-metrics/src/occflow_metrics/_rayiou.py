"""RayIoU (SparseOcc), its class-agnostic "geo" variant, mAVE and OccScore."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from volrender import GridSpec, raycast_voxels

from . import _checks as check
from ._classes import FREE_LABEL, MOVING_CLASSES, OCC3D_CLASSES

Variant = Literal["semantic", "geo"]
#: Distance thresholds of RayIoU, metres.
RAYIOU_THRESHOLDS: tuple[float, ...] = (1.0, 2.0, 4.0)
#: The Occ3D-nuScenes evaluation box: lower corner, voxel edge (metres) and cells.
_OCC3D_LOWER = (-40.0, -40.0, -1.0)
_OCC3D_VOXEL = 0.4


@dataclass(frozen=True)
class RayCast:
    """Per-ray result of :func:`cast_rayiou_rays` (SparseOcc's conventions).

    Attributes:
        distance: ``[R]`` float32 metres: the EXIT distance of the first occupied voxel; without a
            hit, the distance at which the ray leaves the grid; -0.4 for a ray that never enters.
        label: ``[R]`` long label of that voxel; free (17) without a hit; for a ray that never
            enters the grid, the label of voxel (0, 0, 0) (SparseOcc leaves its index at 0).
        index: ``[R, 3]`` long index of the first occupied voxel; (0, 0, 0) without a hit.
    """

    distance: torch.Tensor
    label: torch.Tensor
    index: torch.Tensor


def cast_rayiou_rays(labels: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor, *,
                     voxel_size: float = _OCC3D_VOXEL, lower: tuple[float, float, float] = _OCC3D_LOWER,
                     free_label: int = FREE_LABEL, backend: Literal["warp", "torch"] = "warp") -> RayCast:
    """Cast RayIoU rays through a label grid with SparseOcc's conventions, batched over grids.

    The cast runs in voxel units (a grid of unit cells with its lower corner at 0) like SparseOcc's
    caster, through :func:`volrender.raycast_voxels`; distances are then scaled by ``voxel_size``.
    A voxel is occupied when its label is not ``free_label``.

    Args:
        labels: ``[G, NX, NY, NZ]`` integer labels (G grids cast with the same rays, e.g. GT and
            prediction together).
        origins: ``[G, R, 3]`` or ``[R, 3]`` ray origins in metres in the grid's ego frame.
        directions: ``[R, 3]`` or ``[G, R, 3]`` unit directions.
        voxel_size: cubic voxel edge, metres.
        lower: the grid's lower corner, metres.
        free_label: label value of free space.
        backend: ray-casting backend of :func:`volrender.raycast_voxels`.

    Returns:
        :class:`RayCast` with ``[G, R]`` / ``[G, R, 3]`` fields.
    """
    check.tensor(labels, "labels")
    if labels.ndim != 4:
        raise ValueError(f"labels must have shape [G, NX, NY, NZ], got {list(labels.shape)}")
    g = labels.shape[0]
    origins = check.floating(origins, "origins")
    directions = check.floating(directions, "directions")
    if origins.ndim == 2:
        origins = origins.expand(g, *origins.shape)
    if directions.ndim == 2:
        directions = directions.expand(g, *directions.shape)
    if origins.ndim != 3 or origins.shape[0] != g or origins.shape[-1] != 3:
        raise ValueError(f"origins must have shape [R, 3] or [G={g}, R, 3], got {list(origins.shape)}")
    if directions.shape != origins.shape:
        raise ValueError(f"directions must have shape {list(origins.shape[1:])} or {list(origins.shape)}, "
                         f"got {list(directions.shape)}")
    cells = tuple(int(n) for n in labels.shape[1:])
    unit = GridSpec((0.0, 0.0, 0.0), tuple(float(n) for n in cells), cells)
    device = labels.device
    # Voxel units in float32, as SparseOcc converts its origins.
    lower_t = torch.tensor(lower, dtype=torch.float32, device=device)
    o = ((origins.to(device, torch.float32) - lower_t) / torch.tensor(voxel_size, dtype=torch.float32))
    d = directions.to(device, torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    hits = raycast_voxels(labels != free_label, unit, o.to(torch.float64).contiguous(), d.contiguous(),
                          math.inf, backend=backend)
    dist_vox = torch.where(hits.entered, hits.exit, torch.full_like(hits.exit, -1.0))
    index = torch.where(hits.hit[..., None], hits.index, torch.zeros_like(hits.index))
    gi = torch.arange(g, device=device)[:, None].expand_as(hits.hit)
    label = labels[gi, index[..., 0], index[..., 1], index[..., 2]].long()
    label = torch.where(hits.hit | ~hits.entered, label, torch.full_like(label, free_label))
    return RayCast(distance=(dist_vox * voxel_size).to(torch.float32), label=label, index=index)


@dataclass
class RayIoUAccumulator:
    """Counts of RayIoU (and the sums of mAVE) over any number of samples; merge with ``+``.

    IoU per class and threshold is ``tp / (gt + pred - tp)`` on the summed counts; the counts of
    several processes or shards add up exactly, so merged accumulators give the one-pass result.

    Attributes:
        variant: "semantic" or "geo".
        thresholds: distance thresholds (metres) of the ``tp`` rows.
        gt: ``[C]`` long, scored rays whose GT label is class c.
        pred: ``[C]`` long, scored rays whose predicted label is class c.
        tp: ``[T, C]`` long, rays with both labels c and ``|d_pred - d_gt| < thresholds[t]``.
        ave_sum: ``[C]`` float64, sum over TP rays at ``ave_threshold`` of the flow error (m/s).
        ave_count: ``[C]`` long, number of those rays with flow available.
        ave_threshold: distance threshold of the rays mAVE uses, metres.
    """

    variant: Variant = "semantic"
    thresholds: tuple[float, ...] = RAYIOU_THRESHOLDS
    num_classes: int = len(OCC3D_CLASSES)
    ave_threshold: float = 2.0
    gt: torch.Tensor = field(default=None)
    pred: torch.Tensor = field(default=None)
    tp: torch.Tensor = field(default=None)
    ave_sum: torch.Tensor = field(default=None)
    ave_count: torch.Tensor = field(default=None)

    def __post_init__(self) -> None:
        if self.variant not in ("semantic", "geo"):
            raise ValueError(f"variant must be 'semantic' or 'geo', got {self.variant!r}")
        self.thresholds = tuple(float(t) for t in self.thresholds)
        c, t = self.num_classes, len(self.thresholds)
        zeros = {"gt": (c,), "pred": (c,), "tp": (t, c), "ave_count": (c,)}
        for name, shp in zeros.items():
            if getattr(self, name) is None:
                setattr(self, name, torch.zeros(shp, dtype=torch.long))
        if self.ave_sum is None:
            self.ave_sum = torch.zeros(c, dtype=torch.float64)

    # ------------------------------------------------------------------ merging
    def _check_compatible(self, other: RayIoUAccumulator) -> None:
        if not isinstance(other, RayIoUAccumulator):
            raise TypeError(f"can only merge RayIoUAccumulator, got {type(other).__name__}")
        mine = (self.variant, self.thresholds, self.num_classes, self.ave_threshold)
        theirs = (other.variant, other.thresholds, other.num_classes, other.ave_threshold)
        if mine != theirs:
            raise ValueError(f"cannot merge accumulators with different settings: {mine} vs {theirs}")

    def merge(self, other: RayIoUAccumulator) -> RayIoUAccumulator:
        """A new accumulator holding the counts of both."""
        self._check_compatible(other)
        return RayIoUAccumulator(self.variant, self.thresholds, self.num_classes, self.ave_threshold,
                                 **{k: getattr(self, k).cpu() + getattr(other, k).cpu() for k in _COUNTS})

    __add__ = merge

    def __radd__(self, other):
        return self if isinstance(other, int) and other == 0 else self.merge(other)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The counts as plain tensors (sum them across processes, e.g. after ``gather``)."""
        return {k: getattr(self, k).clone() for k in _COUNTS}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> RayIoUAccumulator:
        """A new accumulator with these settings and the counts in ``state``."""
        return RayIoUAccumulator(self.variant, self.thresholds, self.num_classes, self.ave_threshold,
                                 **{k: state[k].cpu().to(getattr(self, k).dtype) for k in _COUNTS})

    # ------------------------------------------------------------------ results
    def iou(self) -> torch.Tensor:
        """``[T, C-1]`` float64 IoU per threshold and class (free excluded); NaN where a class is
        absent from both GT and prediction."""
        gt, pred, tp = self.gt.double(), self.pred.double(), self.tp.double()
        with torch.no_grad():
            iou = tp / (gt + pred - tp)            # 0/0 -> NaN, as in SparseOcc
        return iou[:, : self.num_classes - 1]

    def ave(self) -> torch.Tensor:
        """``[8]`` float64 mean flow error (m/s) per moving class (:data:`MOVING_CLASSES` order); NaN
        where a class has no TP ray with flow."""
        idx = torch.tensor(MOVING_CLASSES)
        return self.ave_sum[idx] / self.ave_count[idx].double()

    def compute(self) -> dict[str, float | list]:
        """RayIoU, RayIoU@t, per-class IoU, mAVE per class and mean, OccScore.

        Returns:
            A dict with ``"RayIoU"`` (nanmean over classes and thresholds), ``"RayIoU@<t>"``
            (nanmean over classes), ``"per_class"`` ({class name: [IoU at each threshold]}),
            ``"mAVE"`` (nanmean of the per-class AVE; NaN if no moving-class TP ray has flow),
            ``"AVE_per_class"`` and ``"OccScore"`` = 0.9 RayIoU + 0.1 max(1 - mAVE, 0) (NaN when
            mAVE is NaN), plus ``"variant"`` and ``"rays"`` (number of scored rays).
        """
        iou = self.iou()
        out: dict[str, float | list | dict | str] = {"variant": self.variant}
        out["RayIoU"] = _nanmean(iou)
        for j, t in enumerate(self.thresholds):
            out[f"RayIoU@{t:g}"] = _nanmean(iou[j])
        out["per_class"] = {OCC3D_CLASSES[c] if self.num_classes == len(OCC3D_CLASSES) else str(c):
                            [float(v) for v in iou[:, c]] for c in range(self.num_classes - 1)}
        ave = self.ave()
        out["mAVE"] = _nanmean(ave)
        out["AVE_per_class"] = {OCC3D_CLASSES[c]: float(v) for c, v in zip(MOVING_CLASSES, ave, strict=True)}
        out["OccScore"] = occ_score(out["RayIoU"], out["mAVE"])
        out["rays"] = int(self.gt.sum())
        return out


_COUNTS = ("gt", "pred", "tp", "ave_sum", "ave_count")


def _nanmean(x: torch.Tensor) -> float:
    x = x.flatten()
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else math.nan


def occ_score(rayiou: float, mave: float) -> float:
    """OccScore of the CVPR 2024 occupancy-and-flow challenge: ``0.9 RayIoU + 0.1 max(1 - mAVE, 0)``."""
    return 0.9 * rayiou + 0.1 * max(1.0 - mave, 0.0) if not math.isnan(mave) else math.nan


def rayiou_counts(pred_labels: torch.Tensor, gt_labels: torch.Tensor, origins: torch.Tensor, *,
                  pred_flow: torch.Tensor | None = None, gt_flow: torch.Tensor | None = None,
                  variant: Variant = "semantic", directions: torch.Tensor | None = None,
                  thresholds: tuple[float, ...] = RAYIOU_THRESHOLDS, ave_threshold: float = 2.0,
                  backend: Literal["warp", "torch"] = "warp") -> RayIoUAccumulator:
    """RayIoU counts (and mAVE sums) of one sample, following SparseOcc and OpenOcc exactly.

    For every origin the 14,040 rays of :func:`lidar_ray_directions` are cast through the GT and the
    predicted grid (:func:`cast_rayiou_rays`: exit distance of the first occupied voxel, voxel-unit
    traversal). Only rays whose GT label is not free are scored. Per class c and threshold t:
    ``gt[c]`` += rays with GT label c, ``pred[c]`` += rays with predicted label c,
    ``tp[t, c]`` += rays with both labels c and ``|d_pred - d_gt| < t`` (strict).
    ``variant="geo"`` (Let Occ Flow's class-agnostic RayIoU) first copies the GT label onto every
    predicted ray that hit something (predicted label not free), so only geometry is scored.
    mAVE sums: for rays that are TP at ``ave_threshold`` (2 m) with a GT label among the eight
    moving classes, the L2 norm of (predicted flow at the predicted hit voxel - GT flow at the GT
    hit voxel), in m/s, summed per GT class (only when both flows are given).

    Args:
        pred_labels: ``[X, Y, Z]`` integer labels 0..17 (17 = free), Occ3D grid 200 x 200 x 16.
        gt_labels: ``[X, Y, Z]`` integer GT labels, same shape.
        origins: ``[T, 3]`` ray origins in the ego frame, metres (:func:`ray_origins`).
        pred_flow: ``[X, Y, Z, 2]`` predicted horizontal flow, m/s, or None.
        gt_flow: ``[X, Y, Z, 2]`` GT flow, m/s, or None.
        variant: "semantic" or "geo".
        directions: ``[R, 3]`` unit ray directions; default :func:`lidar_ray_directions`.
        thresholds: distance thresholds, metres.
        ave_threshold: distance threshold of the rays used by mAVE, metres.
        backend: ray-casting backend ("warp" or the "torch" reference).

    Returns:
        A :class:`RayIoUAccumulator` holding this sample's counts (on the CPU).
    """
    from ._rays import lidar_ray_directions

    num_classes = len(OCC3D_CLASSES)
    check.labels(pred_labels, "pred_labels", num_classes)
    check.labels(gt_labels, "gt_labels", num_classes)
    if gt_labels.ndim != 3:
        raise ValueError(f"gt_labels must have shape [X, Y, Z], got {list(gt_labels.shape)}")
    check.shape(pred_labels, "pred_labels", gt_labels.shape, "gt_labels.shape")
    check.floating(origins, "origins")
    if origins.ndim != 2 or origins.shape[-1] != 3 or origins.shape[0] == 0:
        raise ValueError(f"origins must have shape [T, 3] with T >= 1, got {list(origins.shape)}")
    check.finite(origins, "origins")
    if variant not in ("semantic", "geo"):
        raise ValueError(f"variant must be 'semantic' or 'geo', got {variant!r}")
    for name, flow in (("pred_flow", pred_flow), ("gt_flow", gt_flow)):
        if flow is not None:
            check.floating(flow, name)
            check.shape(flow, name, (*gt_labels.shape, 2), "[X, Y, Z, 2]")
            check.finite(flow, name)
    check.same_device(pred_labels=pred_labels, gt_labels=gt_labels, pred_flow=pred_flow, gt_flow=gt_flow)
    device = gt_labels.device
    if directions is None:
        directions = lidar_ray_directions()
    directions = check.floating(directions, "directions").to(device)
    t_count, r_count = origins.shape[0], directions.shape[0]
    o = origins.to(device).repeat_interleave(r_count, dim=0)                        # [T*R, 3]
    d = directions.repeat(t_count, 1)
    cast = cast_rayiou_rays(torch.stack([gt_labels, pred_labels]), o, d, backend=backend)
    flows = {}
    if pred_flow is not None and gt_flow is not None:
        gi, pi = cast.index[0], cast.index[1]
        flows = {"pred_flow": pred_flow[pi[:, 0], pi[:, 1], pi[:, 2]],
                 "gt_flow": gt_flow[gi[:, 0], gi[:, 1], gi[:, 2]]}
    return rayiou_counts_from_rays(cast.label[1], cast.distance[1], cast.label[0], cast.distance[0],
                                   variant=variant, thresholds=thresholds, ave_threshold=ave_threshold,
                                   **flows)


def rayiou_counts_from_rays(pred_label: torch.Tensor, pred_distance: torch.Tensor,
                            gt_label: torch.Tensor, gt_distance: torch.Tensor, *,
                            pred_flow: torch.Tensor | None = None, gt_flow: torch.Tensor | None = None,
                            variant: Variant = "semantic",
                            thresholds: tuple[float, ...] = RAYIOU_THRESHOLDS,
                            ave_threshold: float = 2.0) -> RayIoUAccumulator:
    """RayIoU counts (and mAVE sums) from rays already cast through the GT and predicted grids.

    The scoring half of :func:`rayiou_counts` (see there for the definitions): rays whose GT label
    is free (17) are dropped; the "geo" variant copies the GT label onto every predicted ray whose
    label is not free; TP at t means same label and ``|d_pred - d_gt| < t``.

    Args:
        pred_label: ``[N]`` integer label at the predicted ray's first occupied voxel (17 = none).
        pred_distance: ``[N]`` predicted ray distance, metres.
        gt_label: ``[N]`` integer GT label.
        gt_distance: ``[N]`` GT ray distance, metres.
        pred_flow: ``[N, 2]`` predicted flow at the predicted hit voxel, m/s, or None.
        gt_flow: ``[N, 2]`` GT flow at the GT hit voxel, m/s, or None (mAVE needs both).
        variant: "semantic" or "geo".
        thresholds: distance thresholds, metres.
        ave_threshold: distance threshold of the rays used by mAVE, metres.

    Returns:
        A :class:`RayIoUAccumulator` with these rays' counts (on the CPU).
    """
    num_classes = len(OCC3D_CLASSES)
    check.labels(gt_label, "gt_label", num_classes)
    if gt_label.ndim != 1:
        raise ValueError(f"gt_label must have shape [N], got {list(gt_label.shape)}")
    check.labels(pred_label, "pred_label", num_classes)
    n = gt_label.shape[0]
    check.shape(pred_label, "pred_label", (n,), "[N]")
    check.shape(check.floating(gt_distance, "gt_distance"), "gt_distance", (n,), "[N]")
    check.shape(check.floating(pred_distance, "pred_distance"), "pred_distance", (n,), "[N]")
    if variant not in ("semantic", "geo"):
        raise ValueError(f"variant must be 'semantic' or 'geo', got {variant!r}")
    for name, flow in (("pred_flow", pred_flow), ("gt_flow", gt_flow)):
        if flow is not None:
            check.shape(check.floating(flow, name), name, (n, 2), "[N, 2]")
    device = gt_label.device
    gt_l, pred_l = gt_label.long(), pred_label.long()
    valid = gt_l != FREE_LABEL
    if variant == "geo":
        pred_l = torch.where(pred_l != FREE_LABEL, gt_l, pred_l)
    gt_v, pred_v = gt_l[valid], pred_l[valid]
    err = (pred_distance[valid].double() - gt_distance[valid].double()).abs()
    same = gt_v == pred_v
    acc = RayIoUAccumulator(variant=variant, thresholds=thresholds, ave_threshold=ave_threshold)
    acc.gt += torch.bincount(gt_v, minlength=num_classes).cpu()
    acc.pred += torch.bincount(pred_v, minlength=num_classes).cpu()
    for j, t in enumerate(acc.thresholds):
        acc.tp[j] += torch.bincount(gt_v[same & (err < t)], minlength=num_classes).cpu()
    if pred_flow is not None and gt_flow is not None:
        moving = torch.zeros(num_classes, dtype=torch.bool, device=device)
        moving[list(MOVING_CLASSES)] = True
        use = same & (err < ave_threshold) & moving[gt_v]
        e = (pred_flow[valid][use].double() - gt_flow[valid][use].double()).norm(dim=-1)
        cls = gt_v[use]
        sums = torch.zeros(num_classes, dtype=torch.float64, device=device).index_add_(0, cls, e)
        acc.ave_sum += sums.cpu()
        acc.ave_count += torch.bincount(cls, minlength=num_classes).cpu()
    return acc
