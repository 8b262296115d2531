"""The 3D refine module: residual 3D CNN, 3D FPN and deconvolution upsampling (FB-OCC style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv3d(cin, cout, kernel, stride, kernel // 2, bias=False),
                               nn.BatchNorm3d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock3D(nn.Module):
    """Two 3 x 3 x 3 convolutions with BatchNorm and a residual connection (ResNet basic block).

    Args:
        cin, cout: input and output channels.
        stride: stride of the first convolution (and of the 1 x 1 x 1 projection shortcut).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride)
        self.conv2 = _conv_bn(cout, cout, 3, 1, relu=False)
        self.shortcut = (nn.Identity() if cin == cout and stride == 1
                         else _conv_bn(cin, cout, 1, stride, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Refine3D(nn.Module):
    """Residual 3D CNN -> 3D FPN -> per-level deconvolution and soft level weighting.

    The released nuScenes setting: stages of ``[1, 2, 4]`` basic blocks with ``[192, 384, 768]``
    channels and strides ``[1, 2, 2]``; a 3-level FPN (BatchNorm3d, 192 channels, top-down with
    trilinear upsampling); each level deconvolved (``ConvTranspose3d``, kernel = stride) to the
    output resolution with ``out_channels`` channels and the levels blended by per-voxel softmax
    weights predicted from all of them.

    Args:
        in_channels: channels of the fused volume.
        blocks: basic blocks per stage.
        channels: channels per stage.
        strides: stride of the first block of each stage.
        fpn_channels: FPN width.
        out_channels: channels of the refined volume (96).
        upsample: output resolution / input resolution (2: a 100 x 100 x 10 volume -> 200 x 200 x 20).
    """

    def __init__(self, in_channels: int, blocks: tuple[int, ...] = (1, 2, 4),
                 channels: tuple[int, ...] = (192, 384, 768), strides: tuple[int, ...] = (1, 2, 2),
                 fpn_channels: int = 192, out_channels: int = 96, upsample: int = 2) -> None:
        super().__init__()
        if not (len(blocks) == len(channels) == len(strides) >= 1):
            raise ValueError(f"blocks, channels and strides must have the same length >= 1, got {blocks}, "
                             f"{channels}, {strides}")
        if upsample < 1:
            raise ValueError(f"upsample must be >= 1, got {upsample}")
        self.upsample = upsample
        stages = []
        cin = in_channels
        for n, c, s in zip(blocks, channels, strides, strict=True):
            stages.append(nn.Sequential(BasicBlock3D(cin, c, s), *[BasicBlock3D(c, c) for _ in range(n - 1)]))
            cin = c
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(_conv_bn(c, fpn_channels, 1, relu=False) for c in channels)
        self.smooth = nn.ModuleList(_conv_bn(fpn_channels, fpn_channels, 3) for _ in channels)
        total = 1
        self.level_scale = []
        for s in strides:
            total *= s
            self.level_scale.append(total)
        self.deconv = nn.ModuleList()
        for scale in self.level_scale:
            factor = upsample * scale
            self.deconv.append(nn.Sequential(
                nn.ConvTranspose3d(fpn_channels, out_channels, factor, factor, bias=False) if factor > 1
                else nn.Conv3d(fpn_channels, out_channels, 1, bias=False),
                nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)))
        self.level_logits = nn.Conv3d(out_channels * len(channels), len(channels), 1)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """Refine and upsample a fused volume.

        Args:
            volume: ``[B, C_in, X, Y, Z]`` fused feature volume.

        Returns:
            ``[B, out_channels, u X, u Y, u Z]`` refined volume (``u = upsample``).
        """
        if volume.ndim != 5:
            raise ValueError(f"volume must be [B, C, X, Y, Z], got {tuple(volume.shape)}")
        size = tuple(n * self.upsample for n in volume.shape[2:])
        feats = []
        x = volume
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        laterals = [lat(f) for lat, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(laterals) - 2, -1, -1):
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[2:],
                                                      mode="trilinear", align_corners=False)
        levels = []
        for smooth, deconv, lat in zip(self.smooth, self.deconv, laterals, strict=True):
            up = deconv(smooth(lat))
            if tuple(up.shape[2:]) != size:   # odd sizes: strided levels round up; crop (or pad) to size
                up = up[:, :, :size[0], :size[1], :size[2]]
                pad = [0, size[2] - up.shape[4], 0, size[1] - up.shape[3], 0, size[0] - up.shape[2]]
                if any(pad):
                    up = F.pad(up, pad, mode="replicate")
            levels.append(up)
        weights = torch.softmax(self.level_logits(torch.cat(levels, dim=1)), dim=1)
        return sum(weights[:, i:i + 1] * lvl for i, lvl in enumerate(levels))


def cells_to_vertices(volume: torch.Tensor) -> torch.Tensor:
    """Trilinear resampling of a cell-centred volume onto the grid's vertices.

    A vertex is the centre of its 8 neighbouring cells, so its value is their mean; outside the
    box the outer cells are repeated (border padding).

    Args:
        volume: ``[B, C, X, Y, Z]`` values at cell centres.

    Returns:
        ``[B, C, X + 1, Y + 1, Z + 1]`` values at the vertices.
    """
    if volume.ndim != 5:
        raise ValueError(f"volume must be [B, C, X, Y, Z], got {tuple(volume.shape)}")
    return F.avg_pool3d(F.pad(volume, (1, 1, 1, 1, 1, 1), mode="replicate"), 2, stride=1)
