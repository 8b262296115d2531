"""The temporal fusion module: alignment, then one of the four fusions of Table 4."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._align import align_history
from ._attention import BackwardForwardAttention
from ._bev import BEVVolumeFusion, slices_to_volume, volume_to_bev
from ._config import TemporalFusionConfig

__all__ = ["ConcatConvFusion", "TemporalFusion"]


class ConcatConvFusion(nn.Module):
    """Concatenation + 3D convolution (Table 4, first row; the RenderOcc-style fusion).

    The aligned volumes are concatenated along channels (oldest first, current last) and go
    through one 3D residual block, as the concatenated volume enters the 3D encoder's first
    residual block in BEVDet/RenderOcc: ``conv3(TC->C)-BN-ReLU-conv3(C->C)-BN`` plus a
    ``conv1(TC->C)-BN`` projection shortcut (3x3x3 and 1x1x1 kernels, no biases, no final
    ReLU so the output stays signed like the input features).

    Args:
        channels: C, channels of each volume and of the output.
        num_frames: T, volumes concatenated (history + current).
    """

    def __init__(self, channels: int, num_frames: int) -> None:
        super().__init__()
        for name, v in (("channels", channels), ("num_frames", num_frames)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.channels = channels
        self.num_frames = num_frames
        cin = channels * num_frames
        self.conv1 = nn.Conv3d(cin, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(channels)
        self.shortcut = nn.Conv3d(cin, channels, 1, bias=False)
        self.bn_shortcut = nn.BatchNorm3d(channels)

    def forward(self, stacked: Tensor) -> Tensor:
        """Fuse [B, T*C, X, Y, Z] concatenated volumes into [B, C, X, Y, Z]."""
        if not isinstance(stacked, Tensor):
            raise TypeError(f"stacked must be a torch.Tensor, got {type(stacked).__name__}")
        if stacked.dim() != 5 or stacked.shape[1] != self.channels * self.num_frames:
            raise ValueError(f"stacked must be [B, {self.channels * self.num_frames}, X, Y, Z], "
                             f"got {list(stacked.shape)}")
        x = torch.relu(self.bn1(self.conv1(stacked)))
        return self.bn2(self.conv2(x)) + self.bn_shortcut(self.shortcut(stacked))


class TemporalFusion(nn.Module):
    """Fuse the current feature volume with ego-motion-aligned history volumes.

    Pipeline (section 3.2, Figure 3, Algorithm 1 of the paper) for the default variant
    ``"slices_bfam"``:

    1. each history volume is warped into the current ego frame (:func:`align_history`,
       trilinear, border padding as released);
    2. every frame's volume becomes Z horizontal slices plus a global BEV map (mean over z);
    3. the Backward-Forward Attention Module runs on the Z + 1 maps of all frames at once
       (the maps are folded into the batch and share the attention weights);
    4. the fused current slices are stacked back into a volume and the fused global BEV map is
       merged into it by the BEV-volume fusion of eq. 6.

    The other variants (``config.variant``) replace steps 2-4 by Table 4's alternatives; see
    :class:`TemporalFusionConfig`. With no history frames the module is the identity.

    Args:
        config: the settings (see :class:`TemporalFusionConfig` and ``PRESETS``).

    >>> from temporal_fusion import PRESETS
    >>> fusion = TemporalFusion(PRESETS["tiny"])
    >>> volumes = torch.zeros(1, 3, 16, 8, 8, 4)  # [B, T, C, X, Y, Z]: oldest first, current last
    >>> poses = torch.eye(4).expand(1, 2, 4, 4)  # current_from_past of the 2 history frames
    >>> fusion(volumes, poses).shape
    torch.Size([1, 16, 8, 8, 4])
    """

    def __init__(self, config: TemporalFusionConfig) -> None:
        super().__init__()
        if not isinstance(config, TemporalFusionConfig):
            raise TypeError(f"config must be a TemporalFusionConfig, got {type(config).__name__}")
        self.config = config
        c, k = config.channels, config.num_history
        self.concat: ConcatConvFusion | None = None
        self.bfam: BackwardForwardAttention | None = None
        self.merge: BEVVolumeFusion | None = None
        if k == 0:
            return
        if config.variant == "concat_conv":
            self.concat = ConcatConvFusion(c, k + 1)
        else:
            self.bfam = BackwardForwardAttention(c, config.num_heads, config.num_points, k,
                                                 forward_only=config.variant == "bev_forward",
                                                 beta_init=config.beta_init, checkpoint=config.checkpoint,
                                                 checkpoint_chunk=config.checkpoint_chunk)
            self.merge = BEVVolumeFusion(c)

    def _check_inputs(self, volumes: object, poses: object) -> tuple[Tensor, Tensor | None]:
        cfg = self.config
        if isinstance(volumes, (list, tuple)):
            if not volumes:
                raise ValueError("volumes must hold at least the current frame's volume")
            for i, v in enumerate(volumes):
                if not isinstance(v, Tensor):
                    raise TypeError(f"volumes[{i}] must be a torch.Tensor, got {type(v).__name__}")
                if v.dim() != 5 or v.shape != volumes[0].shape:
                    raise ValueError(f"volumes[{i}] must be [B, C, X, Y, Z] like volumes[0] "
                                     f"{list(volumes[0].shape)}, got {list(v.shape)}")
            volumes = torch.stack(list(volumes), dim=1)
        if not isinstance(volumes, Tensor):
            raise TypeError(f"volumes must be a torch.Tensor or a list of tensors, "
                            f"got {type(volumes).__name__}")
        if volumes.dim() != 6:
            raise ValueError(f"volumes must be [B, T, C, X, Y, Z] (T frames, oldest first, current last), "
                             f"got {list(volumes.shape)}")
        if not volumes.is_floating_point():
            raise ValueError(f"volumes must be a floating-point tensor, got dtype {volumes.dtype}")
        B, T, C = volumes.shape[:3]
        if C != cfg.channels:
            raise ValueError(f"volumes must have C={cfg.channels} channels (config.channels), "
                             f"got {list(volumes.shape)}")
        if T < 1 or any(n < 1 for n in volumes.shape[3:]):
            raise ValueError(f"volumes must hold T >= 1 frames of a non-empty grid, "
                             f"got {list(volumes.shape)}")
        h = T - 1
        if h > cfg.num_history:
            raise ValueError(f"volumes holds {h} history frames but the module was built for at most "
                             f"config.num_history={cfg.num_history}")
        if cfg.variant == "concat_conv" and h not in (0, cfg.num_history):
            raise ValueError(f"variant 'concat_conv' needs exactly config.num_history={cfg.num_history} "
                             f"history frames (or none), got {h}")
        if h == 0:
            if poses is not None and (not isinstance(poses, Tensor) or tuple(poses.shape) != (B, 0, 4, 4)):
                raise ValueError(f"poses must be None or [B, 0, 4, 4] without history frames, got "
                                 f"{getattr(poses, 'shape', type(poses).__name__)}")
            return volumes, None
        if poses is None:
            raise ValueError(f"poses must be [B={B}, T-1={h}, 4, 4] current_from_past transforms, got None")
        if not isinstance(poses, Tensor):
            raise TypeError(f"poses must be a torch.Tensor, got {type(poses).__name__}")
        if tuple(poses.shape) != (B, h, 4, 4):
            raise ValueError(f"poses must be [B={B}, T-1={h}, 4, 4] (one current_from_past per history "
                             f"frame, oldest first), got {list(poses.shape)}")
        return volumes, poses

    def forward(self, volumes: Tensor | Sequence[Tensor], poses: Tensor | None = None) -> Tensor:
        """Fuse the history into the current frame's volume.

        Args:
            volumes: [B, T, C, X, Y, Z] feature volumes of T frames, **oldest first and the
                current frame last** (or a list of T tensors [B, C, X, Y, Z] in that order), all
                on the grid box ``[config.lower, config.upper]`` of their own ego frame,
                indexed [X, Y, Z] along ego x (forward), y (left), z (up).
                ``T - 1 <= config.num_history`` (exactly ``num_history`` or 0 for
                ``concat_conv``).
            poses: [B, T - 1, 4, 4] ``current_from_past`` of the history frames in the same
                order (``inv(ego_to_global_current) @ ego_to_global_past``; see
                :func:`relative_poses`). None (or [B, 0, 4, 4]) when T == 1.

        Returns:
            [B, C, X, Y, Z] the fused current volume. With T == 1 it is ``volumes[:, 0]``
            itself (the identity path).

        Raises:
            TypeError: an argument has the wrong type.
            ValueError: shapes do not match the config or each other; poses are not finite
                homogeneous transforms.
        """
        volumes, poses = self._check_inputs(volumes, poses)
        cfg = self.config
        current = volumes[:, -1]
        if poses is None:
            return current
        history = volumes[:, :-1]
        if not cfg.history_grad:
            history = history.detach()
        aligned, valid = align_history(history, poses, cfg.lower, cfg.upper, padding_mode=cfg.padding_mode)
        if cfg.zero_invalid:
            aligned = aligned * valid.to(aligned.dtype)
        frames = [*aligned.unbind(1), current]

        if self.concat is not None:
            return self.concat(torch.cat(frames, dim=1))

        B, C, X, Y, _ = current.shape
        mode = "slices" if cfg.variant == "slices_bfam" else "global"
        maps = [volume_to_bev(f, mode) for f in frames]  # each [B, M, C, X, Y]
        M = maps[0].shape[1]
        fused = self.bfam([m.reshape(B * M, C, X, Y) for m in maps]).reshape(B, M, C, X, Y)
        if mode == "slices":
            volume, bev = slices_to_volume(fused)
            return self.merge(volume, bev)
        return self.merge(current, fused[:, 0])
