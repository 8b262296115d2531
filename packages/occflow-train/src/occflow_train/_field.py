"""The model's output: an SDF grid and a flow grid on the vertices of one :class:`volrender.GridSpec`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from volrender import GridSpec


@dataclass
class SceneField:
    """Signed distance and horizontal flow on the vertices of ``grid``.

    Attributes:
        sdf: ``[B, 1, NX, NY, NZ]`` signed distance (metres; negative inside surfaces) on the
            vertices of ``grid`` (``(NX, NY, NZ) == grid.vertex_shape``).
        flow: ``[B, 2, NX, NY, NZ]`` horizontal displacement (dx, dy) in the ego frame of the
            current time, metres per supervision step (0.5 s on nuScenes keyframes), ego
            motion excluded; ``flow_to_velocity`` turns it into m/s.
        grid: the box and resolution both grids live on (ego frame, metres).
        inv_s: ``[1]`` NeuS sharpness the field was predicted with (1/m), or None. The model
            computes it inside its forward pass, so that under DistributedDataParallel the
            parameter it comes from is used (and its gradient reduced) exactly once per step.
    """

    sdf: torch.Tensor
    flow: torch.Tensor
    grid: GridSpec
    inv_s: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.grid, GridSpec):
            raise TypeError(f"grid must be a volrender.GridSpec, got {type(self.grid).__name__}")
        for name, channels in (("sdf", 1), ("flow", 2)):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            if not value.is_floating_point():
                raise ValueError(f"{name} must be floating point, got {value.dtype}")
            expected = (channels, *self.grid.vertex_shape)
            if value.ndim != 5 or tuple(value.shape[1:]) != expected:
                raise ValueError(
                    f"{name} must have shape [B, {channels}, {', '.join(map(str, self.grid.vertex_shape))}] "
                    f"(the grid's vertex shape), got {tuple(value.shape)}")
        if self.sdf.shape[0] != self.flow.shape[0]:
            raise ValueError(f"sdf and flow must share the batch size, got {self.sdf.shape[0]} and "
                             f"{self.flow.shape[0]}")
        if self.inv_s is not None and (not isinstance(self.inv_s, torch.Tensor) or self.inv_s.numel() != 1):
            raise ValueError(f"inv_s must be None or a one-element tensor, got {self.inv_s!r}")
        if self.sdf.device != self.flow.device:
            raise ValueError(f"sdf and flow must be on one device, got {self.sdf.device} and "
                             f"{self.flow.device}")

    @property
    def batch_size(self) -> int:
        """Number of scenes B."""
        return int(self.sdf.shape[0])

    def detach(self) -> SceneField:
        """A copy whose tensors are cut from the autograd graph."""
        inv_s = None if self.inv_s is None else self.inv_s.detach()
        return SceneField(self.sdf.detach(), self.flow.detach(), self.grid, inv_s)
