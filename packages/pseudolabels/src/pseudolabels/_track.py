"""Tracking flow between keyframes through the intermediate sweeps (flow chaining)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from ._checks import check_flow, check_image, check_mask
from ._flow import FlowEstimator, pixel_grid, sample_bilinear

__all__ = ["ChainedFlowTracker", "KeyframeTracker", "chain_flows"]


def chain_flows(
    flows: Sequence[Tensor], valids: Sequence[Tensor], *, min_valid: float = 0.999
) -> tuple[Tensor, Tensor]:
    """Compose per-step flows into one flow from the first to the last image.

    A pixel x of image 0 is carried along: p_0 = x, p_{k+1} = p_k + f_k(p_k), with f_k looked up
    bilinearly at the sub-pixel position p_k. It stays valid while every step is valid at its
    position (the bilinear average of the step's validity >= ``min_valid``, i.e. all four
    neighbours with non-zero weight valid) and p_k stays inside the image.

    Args:
        flows: T tensors [2, H, W] px, flow k maps image k to image k+1.
        valids: T tensors [H, W] bool.
        min_valid: the bilinear validity an intermediate lookup needs.

    Returns:
        flow [2, H, W] float32 px from image 0 to image T, valid [H, W] bool.
    """
    if len(flows) == 0 or len(flows) != len(valids):
        raise ValueError(
            f"flows, valids: expected the same non-zero length, got {len(flows)} and {len(valids)}"
        )
    if not 0 < min_valid <= 1:
        raise ValueError(f"min_valid: expected in (0, 1], got {min_valid}")
    first = check_flow(flows[0], "flows[0]")
    h, w = first.shape[-2:]
    for k, (f, v) in enumerate(zip(flows, valids, strict=True)):
        check_flow(f, f"flows[{k}]")
        if f.shape != first.shape:
            raise ValueError(f"flows[{k}]: expected shape {list(first.shape)}, got {list(f.shape)}")
        check_mask(v, f"valids[{k}]", (h, w))
    grid = pixel_grid(h, w, first.device)
    pos = grid + first.float()
    valid = valids[0].clone()
    for f, v in zip(flows[1:], valids[1:], strict=True):
        valid &= (pos[0] >= 0) & (pos[0] <= w - 1) & (pos[1] >= 0) & (pos[1] <= h - 1)
        step = sample_bilinear(f.float(), pos)
        step_valid = sample_bilinear(v[None].float(), pos)[0] >= min_valid
        valid &= step_valid
        pos = pos + step
    valid &= (pos[0] >= 0) & (pos[0] <= w - 1) & (pos[1] >= 0) & (pos[1] <= h - 1)
    flow = pos - grid
    return flow, valid


@runtime_checkable
class KeyframeTracker(Protocol):
    """Anything that tracks every pixel of the first image of a short video to the last one.

    ``track(images [T+1, 3, H, W] float in [0, 1]) -> (flow [2, H, W] px image 0 -> image T,
    valid [H, W] bool)``. :class:`ChainedFlowTracker` is the weight-free implementation; a
    point tracker such as CoTracker (the released Let Occ Flow code uses CoTracker v2 queried on
    a stride-10 grid) plugs in by implementing this protocol around a model loaded from local
    weights (e.g. with :func:`pseudolabels.load_weights`), returning the tracks' end points minus
    their start points densified to the image (and ``valid`` = visible at the end).
    """

    name: str

    def track(self, images: Tensor) -> tuple[Tensor, Tensor]: ...

    def settings(self) -> dict[str, Any]: ...


class ChainedFlowTracker:
    """Tracking flow by chaining an estimator's per-step flows (see :func:`chain_flows`).

    Args:
        estimator: the pairwise :class:`FlowEstimator` run on consecutive images.
        min_valid: see :func:`chain_flows`.
    """

    def __init__(self, estimator: FlowEstimator, *, min_valid: float = 0.999):
        if not isinstance(estimator, FlowEstimator):
            raise TypeError(f"estimator: expected a FlowEstimator, got {type(estimator).__name__}")
        self.estimator = estimator
        self.min_valid = float(min_valid)
        self.name = f"chained-{estimator.name}"

    def track(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Flow from ``images[0]`` to ``images[-1]`` through the images between.

        Args:
            images: [T+1, 3, H, W] float in [0, 1], T >= 1 (keyframe, sweeps..., next keyframe).

        Returns:
            flow [2, H, W] float32 px, valid [H, W] bool.
        """
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] < 2:
            raise ValueError(f"images: expected a tensor [T+1, 3, H, W] with T >= 1, got "
                             f"{list(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
        for k in range(images.shape[0]):
            check_image(images[k], f"images[{k}]")
        flows, valids = [], []
        for k in range(images.shape[0] - 1):
            f, v = self.estimator.estimate(images[k], images[k + 1])
            flows.append(f)
            valids.append(v)
        return chain_flows(flows, valids, min_valid=self.min_valid)

    def settings(self) -> dict[str, Any]:
        return {"min_valid": self.min_valid, "estimator": self.estimator.name,
                "estimator_settings": self.estimator.settings()}
