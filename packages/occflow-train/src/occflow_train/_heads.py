"""The SDF and flow MLP decoders, evaluated once per grid vertex (as 1 x 1 x 1 convolutions)."""

from __future__ import annotations

import torch
from torch import nn


class PointwiseMLP(nn.Module):
    """An MLP applied independently at every voxel of a ``[B, C, X, Y, Z]`` volume.

    Layout: ``Softplus -> Linear(C, H) -> (Softplus -> Linear(H, H)) x (hidden_layers - 1) ->
    Softplus -> Linear(H, out)``, as the released decoders (Softplus before every linear layer,
    ``beta`` = 1). With ``last_init_std`` the last layer's weights are drawn from
    ``N(0, last_init_std^2)`` and its bias is zero (the flow head: near-zero flow at the start).

    Args:
        in_channels: C.
        hidden: H.
        out_channels: outputs per voxel.
        hidden_layers: number of hidden layers (>= 1).
        last_init_std: std of the last layer's initial weights, or None for PyTorch's default.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, hidden_layers: int = 1,
                 last_init_std: float | None = None) -> None:
        super().__init__()
        if hidden_layers < 1:
            raise ValueError(f"hidden_layers must be >= 1, got {hidden_layers}")
        layers: list[nn.Module] = []
        cin = in_channels
        for _ in range(hidden_layers):
            layers += [nn.Softplus(), nn.Conv3d(cin, hidden, 1)]
            cin = hidden
        layers += [nn.Softplus(), nn.Conv3d(cin, out_channels, 1)]
        self.net = nn.Sequential(*layers)
        if last_init_std is not None:
            last = self.net[-1]
            nn.init.normal_(last.weight, 0.0, last_init_std)
            nn.init.zeros_(last.bias)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """``[B, C, X, Y, Z]`` -> ``[B, out_channels, X, Y, Z]``."""
        return self.net(volume)


def sdf_head(in_channels: int = 96, hidden: int = 96) -> PointwiseMLP:
    """The SDF decoder: Softplus-Linear(96, 96)-Softplus-Linear(96, 1)."""
    return PointwiseMLP(in_channels, hidden, 1, hidden_layers=1)


def flow_head(in_channels: int = 96, hidden: int = 96, hidden_layers: int = 2,
              last_init_std: float = 1e-2) -> PointwiseMLP:
    """The flow decoder: two hidden layers -> (dx, dy); last layer N(0, 1e-2), bias 0."""
    return PointwiseMLP(in_channels, hidden, 2, hidden_layers=hidden_layers, last_init_std=last_init_std)
