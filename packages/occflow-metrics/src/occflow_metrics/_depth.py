"""Monocular depth metrics with monodepth2's definitions (per-image values averaged over images)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import _checks as check

#: Names of the depth metrics, in the order of :attr:`DepthAccumulator.sums`.
DEPTH_METRICS: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


@dataclass
class DepthAccumulator:
    """Sums of per-image depth metrics and the number of images; merge with ``+``.

    The dataset value of each metric is the mean of the per-image values (monodepth2's protocol).

    Attributes:
        sums: ``[7]`` float64, per-image metric values summed (order :data:`DEPTH_METRICS`).
        images: ``[]`` long, number of images with at least one valid pixel.
        ratios: ``[]`` float64, sum of the median-scaling ratios (0 when scaling is off).
    """

    sums: torch.Tensor = field(default=None)
    images: torch.Tensor = field(default=None)
    ratios: torch.Tensor = field(default=None)

    def __post_init__(self) -> None:
        if self.sums is None:
            self.sums = torch.zeros(len(DEPTH_METRICS), dtype=torch.float64)
        if self.images is None:
            self.images = torch.zeros((), dtype=torch.long)
        if self.ratios is None:
            self.ratios = torch.zeros((), dtype=torch.float64)

    def merge(self, other: DepthAccumulator) -> DepthAccumulator:
        """A new accumulator holding the sums of both."""
        if not isinstance(other, DepthAccumulator):
            raise TypeError(f"can only merge DepthAccumulator, got {type(other).__name__}")
        return DepthAccumulator(self.sums + other.sums, self.images + other.images,
                                self.ratios + other.ratios)

    __add__ = merge

    def __radd__(self, other):
        return self if isinstance(other, int) and other == 0 else self.merge(other)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The sums as plain tensors."""
        return {"sums": self.sums.clone(), "images": self.images.clone(), "ratios": self.ratios.clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> DepthAccumulator:
        """An accumulator with the sums in ``state``."""
        return cls(state["sums"].cpu().double(), state["images"].cpu().long(), state["ratios"].cpu().double())

    def compute(self) -> dict[str, float]:
        """Mean of each metric over the images (NaN without images), ``"images"``, and the mean
        median-scaling ratio ``"ratio_mean"`` (0 when scaling was off)."""
        n = int(self.images)
        out = {name: float(self.sums[i]) / n if n else math.nan for i, name in enumerate(DEPTH_METRICS)}
        out["images"] = n
        out["ratio_mean"] = float(self.ratios) / n if n else math.nan
        return out


def depth_metrics(pred: torch.Tensor, gt: torch.Tensor, *, min_depth: float = 1e-3, max_depth: float = 80.0,
                  median_scaling: bool = False, clamp_pred: bool = True) -> DepthAccumulator:
    """Depth metrics of one image (or one set of LiDAR points), monodepth2's definitions.

    Valid pixels: ``min_depth < gt < max_depth`` (strict; pixels without GT hold 0). Let Occ Flow's
    paper states the range 0.1-80 m (``min_depth=0.1``); monodepth2's default is 1e-3 < gt < 80.
    With ``median_scaling``, ``pred`` is multiplied by ``median(gt) / median(pred)`` over the valid
    pixels (numpy's median: the mean of the two middle values for an even count).
    Then, if ``clamp_pred``, ``pred`` is clamped to ``[min_depth, max_depth]`` (monodepth2).
    With ``t = max(gt / pred, pred / gt)``:

    - ``abs_rel = mean(|gt - pred| / gt)``, ``sq_rel = mean((gt - pred)^2 / gt)``
    - ``rmse = sqrt(mean((gt - pred)^2))``, ``rmse_log = sqrt(mean((log gt - log pred)^2))``
    - ``a1, a2, a3 = mean(t < 1.25), mean(t < 1.25^2), mean(t < 1.25^3)`` (strict)

    Args:
        pred: ``[...]`` predicted depth, metres (> 0 where valid when ``clamp_pred`` is False).
        gt: ``[...]`` GT depth, same shape, metres (0 or out of range = no GT).
        min_depth: lower bound of the valid GT range (exclusive), metres.
        max_depth: upper bound (exclusive), metres.
        median_scaling: scale the prediction by the median ratio first.
        clamp_pred: clamp the prediction to ``[min_depth, max_depth]`` (monodepth2 does).

    Returns:
        A :class:`DepthAccumulator` of one image (``images = 0`` when no pixel is valid).
    """
    check.floating(pred, "pred")
    check.floating(gt, "gt")
    check.shape(pred, "pred", gt.shape, "gt.shape")
    check.same_device(pred=pred, gt=gt)
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth} and {max_depth}")
    gt = gt.double().flatten()
    pred = pred.double().flatten()
    valid = (gt > min_depth) & (gt < max_depth)
    if not bool(valid.any()):
        return DepthAccumulator()
    gt, pred = gt[valid], pred[valid]
    check.finite(pred, "pred (at valid pixels)")
    ratio = torch.zeros((), dtype=torch.float64)
    if median_scaling:
        ratio = (_median(gt) / _median(pred)).cpu()
        pred = pred * ratio.to(pred.device)
    if clamp_pred:
        pred = pred.clamp(min_depth, max_depth)
    if not bool((pred > 0).all()):
        raise ValueError("pred must be > 0 at valid pixels (or use clamp_pred=True)")
    thresh = torch.maximum(gt / pred, pred / gt)
    diff = gt - pred
    values = torch.stack([
        (diff.abs() / gt).mean(),
        (diff ** 2 / gt).mean(),
        (diff ** 2).mean().sqrt(),
        ((gt.log() - pred.log()) ** 2).mean().sqrt(),
        (thresh < 1.25).double().mean(),
        (thresh < 1.25 ** 2).double().mean(),
        (thresh < 1.25 ** 3).double().mean(),
    ]).cpu()
    return DepthAccumulator(values, torch.ones((), dtype=torch.long), ratio)


def _median(x: torch.Tensor) -> torch.Tensor:
    s = x.sort().values
    n = s.numel()
    return (s[(n - 1) // 2] + s[n // 2]) / 2
