"""Configuration of the temporal fusion module and named presets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["PRESETS", "VARIANTS", "TemporalFusionConfig", "Variant"]

Variant = Literal["concat_conv", "bev_forward", "bev_bfam", "slices_bfam"]

#: The four temporal fusion modules of the paper's Table 4, in its row order.
VARIANTS: tuple[str, ...] = ("concat_conv", "bev_forward", "bev_bfam", "slices_bfam")


@dataclass(frozen=True)
class TemporalFusionConfig:
    """Settings of :class:`temporal_fusion.TemporalFusion`.

    Attributes:
        channels: C, channels of the feature volumes (192 in the paper).
        num_history: k, the number of history frames the module is built for (2 in the
            paper: Q = 3 frames). 0 builds the identity module. The attention variants also
            accept fewer history frames at run time; ``concat_conv`` needs exactly k (or 0).
        variant: which fusion of Table 4:
            ``"concat_conv"`` concatenation of the aligned volumes + a 3D residual conv block;
            ``"bev_forward"`` global BEV (mean over Z) + forward-only deformable attention;
            ``"bev_bfam"`` global BEV + the Backward-Forward Attention Module;
            ``"slices_bfam"`` Z slices + global BEV + BFAM (the paper's module, default).
        num_heads: attention heads of each deformable attention (6 as released).
        num_points: sampling points per head and per map (8 as released; 1 level).
        beta_init: initial value of the learnable scale beta of eq. 5 (1 in the paper).
        lower: (x, y, z) lower corner of the volume's box in the ego frame, metres.
        upper: (x, y, z) upper corner of the volume's box, metres.
        padding_mode: how alignment reads outside a past grid: ``"border"`` (released) repeats
            the outer cells, ``"zeros"`` reads zeros.
        zero_invalid: multiply each aligned history volume by its validity mask (zero where
            the point came from outside the past grid). Off as released.
        history_grad: let gradients flow into the history volumes. Off as released (the
            released code computes past volumes without gradient; the module detaches them).
        checkpoint: run each attention step in chunks of ``checkpoint_chunk`` BEV maps and
            recompute them during the backward pass (activation checkpointing) to save memory
            in training; results are unchanged.
        checkpoint_chunk: BEV maps (batch x slices) per checkpointed chunk.
    """

    channels: int = 192
    num_history: int = 2
    variant: Variant = "slices_bfam"
    num_heads: int = 6
    num_points: int = 8
    beta_init: float = 1.0
    lower: tuple[float, float, float] = (-40.0, -40.0, -1.0)
    upper: tuple[float, float, float] = (40.0, 40.0, 5.4)
    padding_mode: Literal["border", "zeros"] = "border"
    zero_invalid: bool = False
    history_grad: bool = False
    checkpoint: bool = False
    checkpoint_chunk: int = 1

    def __post_init__(self) -> None:
        for name in ("channels", "num_heads", "num_points", "checkpoint_chunk"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TemporalFusionConfig.{name} must be a positive int, got {v!r}")
        k = self.num_history
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ValueError(f"TemporalFusionConfig.num_history must be an int >= 0, got {k!r}")
        if self.channels % self.num_heads:
            raise ValueError(f"TemporalFusionConfig.channels ({self.channels}) must be divisible by "
                             f"num_heads ({self.num_heads})")
        if self.variant not in VARIANTS:
            raise ValueError(f"TemporalFusionConfig.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.padding_mode not in ("border", "zeros"):
            raise ValueError(f"TemporalFusionConfig.padding_mode must be 'border' or 'zeros', "
                             f"got {self.padding_mode!r}")
        if not math.isfinite(float(self.beta_init)):
            raise ValueError(f"TemporalFusionConfig.beta_init must be finite, got {self.beta_init!r}")
        for name in ("lower", "upper"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 3 or not all(math.isfinite(x) for x in v):
                raise ValueError(f"TemporalFusionConfig.{name} must be 3 finite floats, "
                                 f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, v)
        if not all(u > l for l, u in zip(self.lower, self.upper, strict=True)):
            raise ValueError(f"TemporalFusionConfig.upper must exceed lower on every axis, got "
                             f"lower={self.lower} upper={self.upper}")


#: Named configurations. ``letoccflow_nuscenes``: the released nuScenes setting (192 channels,
#: 2 history frames, 6 heads, 8 points, TPV box [-40, 40]^2 x [-1, 5.4] m on a 100x100x10 grid).
#: ``letoccflow_kitti``: the KITTI box (x in [-25.6, 25.6], y in [0, 51.2], z in [-2, 4.4] m,
#: 128x128x16 grid). ``tiny``: 16 channels and 2 heads for CPU tests and examples.
PRESETS: MappingProxyType[str, TemporalFusionConfig] = MappingProxyType({
    "letoccflow_nuscenes": TemporalFusionConfig(),
    "letoccflow_kitti": TemporalFusionConfig(lower=(-25.6, 0.0, -2.0), upper=(25.6, 51.2, 4.4)),
    "tiny": TemporalFusionConfig(channels=16, num_heads=2, num_points=4, lower=(-4.0, -4.0, -1.0),
                                 upper=(4.0, 4.0, 1.0)),
})
