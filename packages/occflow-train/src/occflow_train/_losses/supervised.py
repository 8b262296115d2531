"""The 3-D-supervised losses: the model trained from ground-truth occupancy and flow.

Not part of Let Occ Flow (which never sees 3-D labels): this is the instrument that separates
"the network cannot represent or optimise the scene" from "the self-supervised signal does not
teach it". Trained with the same model and schedule as the self-supervised run, its score is the
ceiling every self-supervised number is read against.

Terms (weights in :class:`OccupancyLossConfig`):

- ``occ_sdf`` (both stages): L1 between the predicted SDF and the truncated signed distance of
  the ground-truth occupancy (:func:`occupancy_sdf`), at every vertex of the predicted field.
  Under uncertainty L1 predicts the median, so a vertex is called occupied only where the
  network believes it more likely occupied than free: a ray-based metric such as RayIoU loses a
  ray to every false positive in front of a surface, and the median rule keeps those rare.
- ``occ_flow`` (stage 2): L1 between the predicted flow and the ground-truth flow (converted to
  displacement per supervision step) at the centres of the occupied ground-truth cells, the mean
  over moving cells plus the mean over static ones (moving objects are a small share of the cells).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from occflow_data import FREE_LABEL, Batch, GroundTruthBatch, Sample, collate_samples
from volrender import GridSpec, sample_vertex_field

from .._field import SceneField

__all__ = ["OccupancyLossConfig", "occupancy_losses", "occupancy_sdf"]


@dataclass(frozen=True)
class OccupancyLossConfig:
    """Weights and settings of the 3-D-supervised losses (``TrainConfig.supervision="occupancy"``).

    Attributes:
        sdf: weight of ``occ_sdf``, the L1 to the truncated SDF of the ground truth (both stages).
        flow: weight of ``occ_flow``, the L1 to the ground-truth flow (stage 2).
        truncation: the SDF target and the prediction are clipped to ``[-truncation,
            truncation]`` metres before the L1 (far from any surface only the sign matters).
        moving_speed: a ground-truth cell moves when its speed exceeds this, m/s.
    """

    sdf: float = 1.0
    flow: float = 1.0
    truncation: float = 2.0
    moving_speed: float = 0.1

    def __post_init__(self) -> None:
        for name in ("sdf", "flow", "moving_speed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"OccupancyLossConfig.{name} must be a finite number >= 0, got {value!r}")
        t = self.truncation
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"OccupancyLossConfig.truncation must be a finite number > 0, got {t!r}")


def occupancy_sdf(labels: torch.Tensor, grid: GridSpec, truncation: float = 2.0,
                  free_label: int = FREE_LABEL) -> torch.Tensor:
    """Truncated signed distance of an occupancy grid at its cell centres.

    Outside the occupied cells: the Euclidean distance from the cell centre to the nearest
    occupied cell centre minus half the smallest voxel edge; inside: minus the distance to the
    nearest free cell centre, plus the same half edge (so the zero level lies between the centres
    of an occupied and a free cell, as the occupancy boundary does, to within half a voxel on
    diagonals). Distances use the grid's voxel size per axis (anisotropic voxels are fine).
    A grid without any occupied (or any free) cell is at ``+truncation`` (``-truncation``).

    Args:
        labels: ``[B, X, Y, Z]`` integer labels on the cells of ``grid`` (``free_label`` = free).
        grid: the grid the labels live on.
        truncation: the result is clipped to ``[-truncation, truncation]``, metres (> 0).
        free_label: the label of free space (17 in Occ3D / OpenOcc).

    Returns:
        ``[B, X, Y, Z]`` float32 signed distance, metres, on ``labels``' device.

    >>> g = GridSpec((0.0, 0.0, 0.0), (4.0, 1.0, 1.0), (4, 1, 1))
    >>> labels = torch.tensor([[[[0]], [[17]], [[17]], [[17]]]])      # the first cell occupied
    >>> occupancy_sdf(labels, g, truncation=10.0)[0, :, 0, 0].tolist()
    [-0.5, 0.5, 1.5, 2.5]
    """
    from scipy.ndimage import distance_transform_edt

    if not isinstance(grid, GridSpec):
        raise TypeError(f"grid must be a volrender.GridSpec, got {type(grid).__name__}")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.ndim != 4:
        raise ValueError(f"labels must be an integer tensor [B, X, Y, Z], got "
                         f"{getattr(labels, 'dtype', type(labels))} {tuple(getattr(labels, 'shape', ()))}")
    if tuple(labels.shape[1:]) != tuple(grid.cells):
        raise ValueError(f"labels must have the grid's cells {tuple(grid.cells)} after the batch axis, got "
                         f"{tuple(labels.shape)}")
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not truncation > 0 \
            or not math.isfinite(truncation):
        raise ValueError(f"truncation must be a finite number > 0, got {truncation!r}")
    occupied = (labels != free_label).cpu().numpy()
    spacing = tuple(float(v) for v in grid.voxel_size)
    half = 0.5 * min(spacing)
    out = np.empty(occupied.shape, dtype=np.float32)
    for b, occ in enumerate(occupied):
        if not occ.any() or occ.all():
            out[b] = truncation if not occ.any() else -truncation
            continue
        outside = distance_transform_edt(~occ, sampling=spacing) - half
        inside = distance_transform_edt(occ, sampling=spacing) - half
        out[b] = np.where(occ, -inside, outside)
    return torch.from_numpy(np.clip(out, -truncation, truncation)).to(labels.device)


def _centres_as_vertices(grid: GridSpec) -> GridSpec:
    """The grid whose vertices are ``grid``'s cell centres (one cell fewer per axis)."""
    half = [0.5 * v for v in grid.voxel_size]
    return GridSpec(tuple(lo + h for lo, h in zip(grid.lower, half, strict=True)),
                    tuple(hi - h for hi, h in zip(grid.upper, half, strict=True)),
                    tuple(n - 1 for n in grid.cells))


def _gt(batch: Sample | Batch | GroundTruthBatch) -> GroundTruthBatch:
    if isinstance(batch, GroundTruthBatch):
        return batch
    if isinstance(batch, Sample):
        batch = collate_samples([batch])
    if not isinstance(batch, Batch):
        raise TypeError(f"batch must be an occflow_data.Batch, Sample or GroundTruthBatch, got "
                        f"{type(batch).__name__}")
    if batch.gt is None:
        raise ValueError("supervision='occupancy' needs ground truth in every training sample (batch.gt is "
                         "None): give the reader an Occ3D / OpenOcc folder (DataConfig.occ_root) or use a "
                         "dataset that ships voxel labels")
    return batch.gt


def occupancy_losses(field: SceneField, batch: Sample | Batch | GroundTruthBatch, stage: int,
                     config: OccupancyLossConfig | None = None, *, step_seconds: float = 0.5
                     ) -> dict[str, torch.Tensor]:
    """The 3-D-supervised terms of one training step and their weighted total.

    Args:
        field: the predicted :class:`SceneField` (B scenes; flow in metres per supervision step).
        batch: an ``occflow_data.Batch`` (or one ``Sample``) with ground truth, or its
            ``GroundTruthBatch``: ``occupancy`` ``[B, X, Y, Z]`` labels and, for the flow term,
            ``flow`` ``[B, X, Y, Z, 2]`` m/s, on the ground truth's own ``grid`` (any box and
            resolution: the target is interpolated onto the field's vertices).
        stage: 1 (geometry: ``occ_sdf``) or 2 (geometry and flow: ``occ_sdf`` + ``occ_flow``).
        config: weights and settings (:class:`OccupancyLossConfig` defaults).
        step_seconds: duration of one supervision step, seconds (the model's flow is displacement
            per step; the ground truth is m/s).

    Returns:
        ``{"total": weighted sum, "occ_sdf": ..., "occ_flow": ...}`` (a term appears when its
        weight is > 0 and, for the flow, when the ground truth has flow), unweighted values; plus
        ``"moving_fraction"`` (stage 2, no gradient): the share of occupied cells that move.

    Raises:
        ValueError: no ground truth, a stage other than 1 or 2, shapes that do not fit, or a
            non-positive ``step_seconds``.
    """
    config = OccupancyLossConfig() if config is None else config
    if not isinstance(config, OccupancyLossConfig):
        raise TypeError(f"config must be an OccupancyLossConfig, got {type(config).__name__}")
    if not isinstance(field, SceneField):
        raise TypeError(f"field must be a SceneField, got {type(field).__name__}")
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
    gt = _gt(batch)
    b = field.batch_size
    if gt.occupancy.shape[0] != b:
        raise ValueError(f"field has batch size {b} but the ground truth has {gt.occupancy.shape[0]}")
    device, dtype = field.sdf.device, field.sdf.dtype
    losses: dict[str, torch.Tensor] = {}
    if config.sdf > 0:
        target = occupancy_sdf(gt.occupancy, gt.grid, config.truncation).to(device, dtype)
        vertices = field.grid.points("vertex", device=device).to(dtype).expand(b, *field.grid.vertex_shape, 3)
        target_v = sample_vertex_field(target[:, None], _centres_as_vertices(gt.grid), vertices)[..., 0]
        t = config.truncation
        losses["occ_sdf"] = (field.sdf[:, 0].clamp(-t, t) - target_v).abs().mean()
    if stage == 2 and config.flow > 0 and gt.flow is not None:
        occupied = gt.occupancy.to(device) != FREE_LABEL                             # [B, X, Y, Z]
        velocity = gt.flow.to(device, dtype)
        moving = occupied & (velocity.norm(dim=-1) > config.moving_speed)
        static = occupied & ~moving
        centres = gt.grid.points("cell", device=device).to(dtype).expand(b, *gt.grid.cells, 3)
        terms = []
        for mask in (moving, static):
            if bool(mask.any()):
                pred = torch.cat([sample_vertex_field(field.flow[i:i + 1], field.grid,
                                                      centres[i][mask[i]][None])[0] for i in range(b)])
                err = (pred - velocity[mask] * step_seconds).abs().sum(dim=-1)
                terms.append(err.mean())
        if terms:
            losses["occ_flow"] = sum(terms)
            losses["moving_fraction"] = (moving.sum() / occupied.sum().clamp_min(1)).to(dtype).detach()
    total = torch.zeros((), dtype=dtype, device=device)
    for name, weight in (("occ_sdf", config.sdf), ("occ_flow", config.flow)):
        if name in losses and weight > 0:
            total = total + weight * losses[name]
    losses["total"] = total
    return losses
