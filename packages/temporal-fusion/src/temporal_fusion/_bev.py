"""Volumes <-> BEV maps (Z slices plus a global mean-over-Z map) and BEV-volume fusion (eq. 6)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["BEVVolumeFusion", "slices_to_volume", "volume_to_bev"]

BEVMode = Literal["slices", "global"]


def _check_volume(name: str, volume: object) -> Tensor:
    if not isinstance(volume, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(volume).__name__}")
    if volume.dim() != 5:
        raise ValueError(f"{name} must be [B, C, X, Y, Z], got {list(volume.shape)}")
    if not volume.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {volume.dtype}")
    return volume


def volume_to_bev(volume: Tensor, mode: BEVMode = "slices") -> Tensor:
    """Cut a feature volume into BEV maps.

    ``"slices"``: the Z horizontal slices ``volume[..., k]`` followed by the global BEV map
    ``volume.mean(-1)`` (Algorithm 1, line 5): Z + 1 maps. ``"global"``: the global BEV map
    alone (the "BEV pooling" variants of Table 4): 1 map.

    Args:
        volume: [B, C, X, Y, Z] feature volume.
        mode: ``"slices"`` or ``"global"``.

    Returns:
        [B, M, C, X, Y] BEV maps, M = Z + 1 (slices, global last) or 1 (global).
    """
    _check_volume("volume", volume)
    if mode == "slices":
        return torch.cat([volume.permute(0, 4, 1, 2, 3), volume.mean(-1).unsqueeze(1)], dim=1)
    if mode == "global":
        return volume.mean(-1).unsqueeze(1)
    raise ValueError(f"mode must be 'slices' or 'global', got {mode!r}")


def slices_to_volume(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of ``volume_to_bev(volume, "slices")`` (Algorithm 1, line 13).

    Args:
        maps: [B, Z + 1, C, X, Y] Z slices followed by the global BEV map (Z >= 1).

    Returns:
        volume: [B, C, X, Y, Z] the slices stacked along z.
        bev: [B, C, X, Y] the global BEV map.
    """
    if not isinstance(maps, Tensor):
        raise TypeError(f"maps must be a torch.Tensor, got {type(maps).__name__}")
    if maps.dim() != 5 or maps.shape[1] < 2:
        raise ValueError(f"maps must be [B, Z + 1, C, X, Y] with Z >= 1, got {list(maps.shape)}")
    return maps[:, :-1].permute(0, 2, 3, 4, 1), maps[:, -1]


class BEVVolumeFusion(nn.Module):
    """BEV-volume fusion (eq. 6): ``V' = V + sigmoid(conv1x1x1(V)) * unsqueeze(B_g, -1)``.

    The gate is a 1x1x1 convolution from C to C channels (weights and bias), so every voxel
    decides per channel how much of the fused global BEV feature above it to take.

    Args:
        channels: C, channels of the volume and of the BEV map.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.channels = channels
        self.gate = nn.Conv3d(channels, channels, kernel_size=1)

    def forward(self, volume: Tensor, bev: Tensor) -> Tensor:
        """Fuse a global BEV map into a volume.

        Args:
            volume: [B, C, X, Y, Z] fused feature volume.
            bev: [B, C, X, Y] fused global BEV map.

        Returns:
            [B, C, X, Y, Z] ``volume + sigmoid(conv(volume)) * bev[..., None]``.
        """
        _check_volume("volume", volume)
        if volume.shape[1] != self.channels:
            raise ValueError(f"volume must have {self.channels} channels, got {list(volume.shape)}")
        if not isinstance(bev, Tensor):
            raise TypeError(f"bev must be a torch.Tensor, got {type(bev).__name__}")
        if tuple(bev.shape) != tuple(volume.shape[:4]):
            raise ValueError(f"bev must be [B, C, X, Y] = {list(volume.shape[:4])}, got {list(bev.shape)}")
        return volume + torch.sigmoid(self.gate(volume)) * bev.unsqueeze(-1)
