"""KITTI scene-flow metrics: disparity and optical-flow errors and D1 / D2 / Fl / SF outlier rates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from . import _checks as check

#: KITTI 2015's outlier test: error > 3 px AND error > 5 % of the GT magnitude.
KITTI_THRESHOLDS: tuple[tuple[float, float], ...] = ((3.0, 0.05),)
#: Let Occ Flow's (paper and released code): D_5% uses (4 px, 5 %), FL_10% and SF_10% use (8 px, 10 %).
PAPER_THRESHOLDS: tuple[tuple[float, float], ...] = ((4.0, 0.05), (8.0, 0.10))
#: KITTI stereo baseline (left and right colour cameras), metres.
KITTI_BASELINE: float = 0.5327
_KINDS = ("D1", "D2", "Fl", "SF")
_REGIONS = ("all", "fg")


def disparity_from_depth(depth: torch.Tensor, focal_px: float | torch.Tensor,
                         baseline_m: float = KITTI_BASELINE) -> torch.Tensor:
    """Stereo disparity ``focal_px * baseline_m / depth`` in pixels; 0 where depth <= 0 or is not finite.

    Args:
        depth: ``[...]`` depth along the optical axis, metres (0 = no value).
        focal_px: horizontal focal length fx, pixels (a float or a tensor broadcastable to depth).
        baseline_m: stereo baseline, metres (KITTI: 0.5327 m, as Let Occ Flow's code uses).

    Returns:
        ``[...]`` disparity, pixels, dtype of ``depth``.
    """
    check.floating(depth, "depth")
    if not baseline_m > 0:
        raise ValueError(f"baseline_m must be > 0, got {baseline_m}")
    ok = torch.isfinite(depth) & (depth > 0)
    safe = torch.where(ok, depth, torch.ones_like(depth))
    return torch.where(ok, focal_px * baseline_m / safe, torch.zeros_like(depth))


@dataclass
class SceneFlowAccumulator:
    """Counts and sums of the scene-flow metrics over frames, for K threshold pairs; merge with ``+``.

    Index conventions: region r in ("all", "fg"), kind k in ("D1", "D2", "Fl", "SF"), threshold t.

    Attributes:
        thresholds: ``((px, rel), ...)``; a pixel is an outlier when its error > px AND > rel * |GT|.
        outliers: ``[2, 4, K]`` long outlier pixels (pooled over frames).
        valid: ``[2, 4]`` long valid pixels.
        err_sum: ``[2, 2]`` float64 sums of the disparity error (DE) and flow end-point error (EPE), px.
        frame_rate_sum: ``[2, 4, K]`` float64 sums of per-frame outlier rates.
        frame_err_sum: ``[2, 2]`` float64 sums of per-frame mean DE and EPE.
        frames: ``[2, 4]`` long frames with at least one valid pixel of that region and kind.
    """

    thresholds: tuple[tuple[float, float], ...] = KITTI_THRESHOLDS
    outliers: torch.Tensor = field(default=None)
    valid: torch.Tensor = field(default=None)
    err_sum: torch.Tensor = field(default=None)
    frame_rate_sum: torch.Tensor = field(default=None)
    frame_err_sum: torch.Tensor = field(default=None)
    frames: torch.Tensor = field(default=None)

    def __post_init__(self) -> None:
        self.thresholds = _check_thresholds(self.thresholds)
        k = len(self.thresholds)
        shapes = {"outliers": ((2, 4, k), torch.long), "valid": ((2, 4), torch.long),
                  "err_sum": ((2, 2), torch.float64), "frame_rate_sum": ((2, 4, k), torch.float64),
                  "frame_err_sum": ((2, 2), torch.float64), "frames": ((2, 4), torch.long)}
        for name, (shp, dtype) in shapes.items():
            if getattr(self, name) is None:
                setattr(self, name, torch.zeros(shp, dtype=dtype))

    def merge(self, other: SceneFlowAccumulator) -> SceneFlowAccumulator:
        """A new accumulator holding the counts of both."""
        if not isinstance(other, SceneFlowAccumulator):
            raise TypeError(f"can only merge SceneFlowAccumulator, got {type(other).__name__}")
        if other.thresholds != self.thresholds:
            raise ValueError(f"thresholds differ: {self.thresholds} vs {other.thresholds}")
        return SceneFlowAccumulator(self.thresholds,
                                    **{k: getattr(self, k) + getattr(other, k) for k in _FIELDS})

    __add__ = merge

    def __radd__(self, other):
        return self if isinstance(other, int) and other == 0 else self.merge(other)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The counts as plain tensors."""
        return {k: getattr(self, k).clone() for k in _FIELDS}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> SceneFlowAccumulator:
        """A new accumulator with these thresholds and the counts in ``state``."""
        return SceneFlowAccumulator(self.thresholds, **{k: state[k].cpu().to(getattr(self, k).dtype)
                                                        for k in _FIELDS})

    def compute(self, average: Literal["pooled", "frame"] = "pooled") -> dict[str, float]:
        """The metrics as a flat dict.

        ``average="pooled"`` (default, the KITTI devkit): outlier rate = outlier pixels / valid
        pixels over the whole dataset, DE / EPE = error sums / valid pixels. ``average="frame"``
        (Let Occ Flow's released code): the mean over frames of each frame's rate or mean error.

        Keys: ``DE``, ``EPE``, ``DE_FG``, ``EPE_FG``, and for each threshold pair
        ``"{kind}@{px}px/{rel%}"`` and ``"{kind}_FG@..."`` for kind in D1, D2, Fl, SF (e.g.
        ``"D1@3px/5%"``), values in [0, 1]; NaN where nothing was valid.
        """
        if average not in ("pooled", "frame"):
            raise ValueError(f"average must be 'pooled' or 'frame', got {average!r}")
        out: dict[str, float] = {}
        for r, suffix in enumerate(("", "_FG")):
            for e, (name, kind) in enumerate((("DE", 0), ("EPE", 2))):
                if average == "pooled":
                    out[name + suffix] = _ratio(self.err_sum[r, e], self.valid[r, kind])
                else:
                    out[name + suffix] = _ratio(self.frame_err_sum[r, e], self.frames[r, kind])
            for k, kind in enumerate(_KINDS):
                for t, (px, rel) in enumerate(self.thresholds):
                    key = f"{kind}{suffix}@{px:g}px/{rel * 100:g}%"
                    if average == "pooled":
                        out[key] = _ratio(self.outliers[r, k, t], self.valid[r, k])
                    else:
                        out[key] = _ratio(self.frame_rate_sum[r, k, t], self.frames[r, k])
        return out


_FIELDS = ("outliers", "valid", "err_sum", "frame_rate_sum", "frame_err_sum", "frames")


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    return float(num) / float(den) if float(den) > 0 else math.nan


def _check_thresholds(thresholds) -> tuple[tuple[float, float], ...]:
    try:
        pairs = tuple((float(px), float(rel)) for px, rel in thresholds)
    except (TypeError, ValueError):
        raise ValueError(f"thresholds must be a sequence of (px, rel) pairs, got {thresholds!r}") from None
    if not pairs or any(px < 0 or rel < 0 for px, rel in pairs):
        raise ValueError(f"thresholds must be a non-empty sequence of non-negative (px, rel), "
                         f"got {thresholds!r}")
    return pairs


def scene_flow_metrics(pred_disp: torch.Tensor, gt_disp: torch.Tensor, pred_flow: torch.Tensor,
                       gt_flow: torch.Tensor, gt_flow_valid: torch.Tensor | None = None, *,
                       pred_disp2: torch.Tensor | None = None, gt_disp2: torch.Tensor | None = None,
                       foreground: torch.Tensor | None = None,
                       thresholds=KITTI_THRESHOLDS) -> SceneFlowAccumulator:
    """KITTI scene-flow counts of one frame.

    Outlier test (KITTI devkit, and Let Occ Flow's code): a pixel is an outlier when its error is
    greater than ``px`` AND greater than ``rel`` times the GT magnitude (disparity: ``|d_gt|``; flow:
    ``||f_gt||``). D1 = first-frame disparity, D2 = second-frame disparity (only when given), Fl =
    optical flow (end-point error), SF = outlier in any of them, on pixels valid for all of them.
    DE = mean ``|d_pred - d_gt|``, EPE = mean ``||f_pred - f_gt||`` (pixels). ``_FG`` variants use
    only pixels where ``foreground`` is True.

    Args:
        pred_disp: ``[H, W]`` predicted disparity, pixels.
        gt_disp: ``[H, W]`` GT disparity, pixels; valid where > 0 (see :func:`disparity_from_depth`).
        pred_flow: ``[2, H, W]`` predicted optical flow (u, v), pixels.
        gt_flow: ``[2, H, W]`` GT flow, pixels.
        gt_flow_valid: ``[H, W]`` bool validity of the GT flow (KITTI: non-occluded pixels), or None
            for every pixel with a finite GT flow.
        pred_disp2: ``[H, W]`` predicted second-frame disparity, or None (then no D2 and SF = D1 or Fl).
        gt_disp2: ``[H, W]`` GT second-frame disparity (> 0 valid), given together with pred_disp2.
        foreground: ``[H, W]`` bool foreground mask for the ``_FG`` metrics, or None.
        thresholds: ``((px, rel), ...)``; :data:`KITTI_THRESHOLDS` (default) or :data:`PAPER_THRESHOLDS`.

    Returns:
        A :class:`SceneFlowAccumulator` of one frame.
    """
    thresholds = _check_thresholds(thresholds)
    check.floating(gt_disp, "gt_disp")
    if gt_disp.ndim != 2:
        raise ValueError(f"gt_disp must have shape [H, W], got {list(gt_disp.shape)}")
    hw = tuple(gt_disp.shape)
    check.shape(check.floating(pred_disp, "pred_disp"), "pred_disp", hw, "[H, W]")
    check.shape(check.floating(pred_flow, "pred_flow"), "pred_flow", (2, *hw), "[2, H, W]")
    check.shape(check.floating(gt_flow, "gt_flow"), "gt_flow", (2, *hw), "[2, H, W]")
    if (pred_disp2 is None) != (gt_disp2 is None):
        raise ValueError("pred_disp2 and gt_disp2 must be given together")
    for name, value in (("gt_flow_valid", gt_flow_valid), ("foreground", foreground)):
        if value is not None:
            check.tensor(value, name)
            if value.dtype != torch.bool:
                raise ValueError(f"{name} must be a bool tensor, got {value.dtype}")
            check.shape(value, name, hw, "[H, W]")
    if pred_disp2 is not None:
        check.shape(check.floating(pred_disp2, "pred_disp2"), "pred_disp2", hw, "[H, W]")
        check.shape(check.floating(gt_disp2, "gt_disp2"), "gt_disp2", hw, "[H, W]")
    check.same_device(pred_disp=pred_disp, gt_disp=gt_disp, pred_flow=pred_flow, gt_flow=gt_flow,
                      gt_flow_valid=gt_flow_valid, foreground=foreground, pred_disp2=pred_disp2,
                      gt_disp2=gt_disp2)

    d_gt = gt_disp.double()
    f_gt = gt_flow.double()
    d_valid = torch.isfinite(d_gt) & (d_gt > 0)
    f_valid = torch.isfinite(f_gt).all(0)
    if gt_flow_valid is not None:
        f_valid &= gt_flow_valid
    d_err = (pred_disp.double() - d_gt).abs()
    f_err = (pred_flow.double() - f_gt).norm(dim=0)
    f_mag = f_gt.norm(dim=0)
    for name, err, ok in (("pred_disp", d_err, d_valid), ("pred_flow", f_err, f_valid)):
        if not bool(torch.isfinite(err[ok]).all()):
            raise ValueError(f"{name} must be finite where the GT is valid")
    k = len(thresholds)
    d1_out = torch.stack([(d_err > px) & (d_err > rel * d_gt.abs()) for px, rel in thresholds])
    fl_out = torch.stack([(f_err > px) & (f_err > rel * f_mag) for px, rel in thresholds])
    if pred_disp2 is not None:
        d2_gt = gt_disp2.double()
        d2_valid = torch.isfinite(d2_gt) & (d2_gt > 0)
        d2_err = (pred_disp2.double() - d2_gt).abs()
        if not bool(torch.isfinite(d2_err[d2_valid]).all()):
            raise ValueError("pred_disp2 must be finite where the GT is valid")
        d2_out = torch.stack([(d2_err > px) & (d2_err > rel * d2_gt.abs()) for px, rel in thresholds])
        sf_valid = d_valid & f_valid & d2_valid
        sf_out = d1_out | fl_out | d2_out
    else:
        d2_valid = torch.zeros_like(d_valid)
        d2_out = torch.zeros_like(d1_out)
        sf_valid = d_valid & f_valid
        sf_out = d1_out | fl_out
    acc = SceneFlowAccumulator(thresholds)
    regions = [torch.ones_like(d_valid), foreground if foreground is not None else torch.zeros_like(d_valid)]
    for r, region in enumerate(regions):
        for kind, (valid, out) in enumerate(((d_valid, d1_out), (d2_valid, d2_out), (f_valid, fl_out),
                                             (sf_valid, sf_out))):
            m = valid & region
            n = int(m.sum())
            acc.valid[r, kind] = n
            if n == 0:
                continue
            counts = out[:, m].sum(dim=1).cpu()
            acc.outliers[r, kind] = counts
            acc.frame_rate_sum[r, kind] = counts.double() / n
            acc.frames[r, kind] = 1
        for e, (err, valid) in enumerate(((d_err, d_valid), (f_err, f_valid))):
            m = valid & region
            if bool(m.any()):
                s = err[m].sum().cpu()
                acc.err_sum[r, e] = s
                acc.frame_err_sum[r, e] = s / int(m.sum())
    assert acc.outliers.shape[-1] == k
    return acc
