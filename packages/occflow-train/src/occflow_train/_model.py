"""The Let Occ Flow network: TPV encoder -> temporal fusion -> 3D refine -> SDF / flow heads."""

from __future__ import annotations

import torch
from torch import nn

from occflow_data import Batch, FrameBatch, Sample, collate_samples, relative_pose
from temporal_fusion import TemporalFusion
from tpv_encoder import TPVEncoder

from ._config import MODEL_PRESETS, ModelConfig
from ._field import SceneField
from ._heads import flow_head, sdf_head
from ._refine import Refine3D, cells_to_vertices


class OccFlowModel(nn.Module):
    """Multi-camera image sequences to an SDF and flow field (Let Occ Flow, Figure 2).

    1. Every frame (history and current) is encoded by the TPV encoder into a feature volume
       ``[B, C, X, Y, Z]``; history frames as released: without gradient and with the encoder
       in eval mode.
    2. Temporal fusion aligns the history volumes to the current ego frame (``relative_pose``
       of the frames' ego poses) and fuses them (BFAM).
    3. The 3D refine module (residual 3D CNN, 3D FPN, deconvolution) upsamples the fused volume
       to the field resolution; it is resampled onto the grid vertices (mean of the 8 cells
       around each vertex).
    4. The SDF MLP and the flow MLP run once per vertex.

    Args:
        config: a :class:`ModelConfig` or the name of one of ``MODEL_PRESETS`` (``"nuscenes"``,
            ``"kitti"``, ``"synthetic-cpu"``).

    Attributes:
        deviation: the NeuS deviation ``v`` (learnable); :meth:`inv_s` gives ``exp(10 v)``.
    """

    def __init__(self, config: ModelConfig | str) -> None:
        super().__init__()
        if isinstance(config, str):
            if config not in MODEL_PRESETS:
                raise ValueError(f"unknown model preset {config!r}; choose one of {sorted(MODEL_PRESETS)}")
            config = MODEL_PRESETS[config]
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig or a preset name, got {type(config).__name__}")
        self.config = config
        self.grid = config.grid
        self.encoder = TPVEncoder(config.encoder)
        self.fusion = TemporalFusion(config.fusion)
        r = config.refine
        self.refine = Refine3D(config.encoder.embed_dim, r.blocks, r.channels, r.strides, r.fpn_channels,
                               r.out_channels, r.upsample)
        h = config.heads
        self.sdf_head = sdf_head(r.out_channels, h.hidden)
        nn.init.constant_(self.sdf_head.net[-1].bias, h.sdf_bias_init)
        self.flow_head = flow_head(r.out_channels, h.hidden, h.flow_hidden_layers, h.flow_init_std)
        self.deviation = nn.Parameter(torch.tensor(float(config.deviation_init)))
        if h.ground_prior is not None:   # signed distance to the ground plane at every vertex, metres
            z = self.grid.points("vertex")[..., 2] - float(h.ground_prior)
            self.register_buffer("ground_sdf", z[None, None], persistent=False)
        else:
            self.ground_sdf = None

    def inv_s(self) -> torch.Tensor:
        """NeuS sharpness ``exp(10 v)`` (1/m), a one-element tensor for ``volrender``."""
        return torch.exp(10.0 * self.deviation).reshape(1)

    def _encode(self, frame: FrameBatch) -> torch.Tensor:
        return self.encoder(frame.images, frame.intrinsics, frame.cam_to_ego)

    def encode_history(self, frames: list[FrameBatch]) -> list[torch.Tensor]:
        """Feature volumes of history frames, without gradient and with the encoder in eval mode."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                return [self._encode(f) for f in frames]
        finally:
            self.encoder.train(was_training)

    def forward(self, batch: Sample | Batch) -> SceneField:
        """Predict the field of the current frame.

        Args:
            batch: an ``occflow_data.Batch`` (B >= 1) or a single ``Sample``. Uses
                ``current`` and the most recent ``config.fusion.num_history`` frames of
                ``history`` (fewer are fine for the attention variants).

        Returns:
            :class:`SceneField` with sdf ``[B, 1, *grid.vertex_shape]`` and flow
            ``[B, 2, *grid.vertex_shape]`` (metres per supervision step) on :attr:`grid`, and the
            current ``inv_s`` (computed here so that DDP sees the deviation used in forward).
        """
        if isinstance(batch, Sample):
            batch = collate_samples([batch])
        if not isinstance(batch, Batch):
            raise TypeError(f"batch must be an occflow_data.Batch or Sample, got {type(batch).__name__}")
        cur = batch.current
        k = self.config.fusion.num_history
        history = batch.history[-k:] if k > 0 else []
        volumes = [*self.encode_history(history), self._encode(cur)]
        poses = None
        if history:
            poses = torch.stack([relative_pose(h.ego_to_global, cur.ego_to_global) for h in history], dim=1)
            poses = poses.to(device=volumes[-1].device, dtype=volumes[-1].dtype)
        fused = self.fusion(torch.stack(volumes, dim=1), poses)
        refined = self.refine(fused)
        features = cells_to_vertices(refined)
        sdf = self.sdf_head(features)
        if self.ground_sdf is not None:
            sdf = sdf + self.ground_sdf.to(sdf.dtype)
        return SceneField(sdf, self.flow_head(features), self.grid, inv_s=self.inv_s())


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Trainable parameters per top-level child and in total (``{"total": ..., name: ...}``)."""
    counts = {name: sum(p.numel() for p in child.parameters() if p.requires_grad)
              for name, child in module.named_children()}
    counts["total"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts
