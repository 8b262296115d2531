"""Configuration dataclasses of the model, the rendering of the losses and the loss weights."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType

from temporal_fusion import PRESETS as FUSION_PRESETS
from temporal_fusion import TemporalFusionConfig
from tpv_encoder import PRESETS as TPV_PRESETS
from tpv_encoder import TPVEncoderConfig
from volrender import GridSpec


def _positive_int(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive int, got {value!r}")


def _non_negative(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class RenderConfig:
    """How the losses sample and render rays (released nuScenes values as defaults).

    Attributes:
        rays_per_camera: ``(h, w)`` of the regular ray image drawn per camera (32 x 88 on
            nuScenes, 44 x 152 on KITTI): 16,896 camera rays per step with 6 cameras.
        n_samples: samples (intervals) per ray, uniform between the entry and exit of the grid.
        lidar_rays: LiDAR rays per scene (0 = none).
        lidar_range_power: LiDAR points are drawn with probability proportional to
            ``range ** lidar_range_power`` (0 = uniformly, the released setting). A spinning LiDAR's
            returns thin out with range, so uniform draws spend most rays on the first ~10 m; 1
            gives far surfaces a share of the supervision closer to their share of the scene.
        lidar_free_rays: rays per scene toward LiDAR returns *outside* the grid, used by the
            ``lidar_free_space`` loss (weight 0 by default: then they are not drawn).
        lidar_free_near: the free-space loss looks at those rays from this distance on, metres
            (0 = from the sensor).
        flow_rays: stage 2 only: extra rays per camera drawn uniformly inside the movable-object
            mask (where the flow cue is valid), used by the flow terms alone (0 = none, the
            released setting). Moving objects cover a few percent of an image, so the lattice
            gives them few rays; on small ray budgets this is most of the flow supervision.
        stratified: jitter the samples (training); False for deterministic rendering.
        random_rays: random stride and offset of the ray images (training); False centres a
            fixed lattice.
        near: start of every camera ray, metres from the camera centre.
        backend: ``volrender`` backend, ``"warp"`` (fused kernels) or ``"torch"`` (reference).
        sparsity_stride: evaluate the grid sparsity term on every k-th cell along each axis.
        lidar_origin: (x, y, z) of the LiDAR sensor in the ego frame, metres: the origin of the
            LiDAR rays (nuScenes LIDAR_TOP sits about 0.94 m ahead of the ego origin, 1.84 m up).
    """

    rays_per_camera: tuple[int, int] = (32, 88)
    n_samples: int = 256
    lidar_rays: int = 4096
    lidar_range_power: float = 0.0
    lidar_free_rays: int = 1024
    lidar_free_near: float = 0.0
    flow_rays: int = 0
    stratified: bool = True
    random_rays: bool = True
    near: float = 0.0
    backend: str = "warp"
    sparsity_stride: int = 1
    lidar_origin: tuple[float, float, float] = (0.943, 0.0, 1.841)

    def __post_init__(self) -> None:
        o = "RenderConfig"
        if len(tuple(self.rays_per_camera)) != 2 or min(self.rays_per_camera) < 2:
            raise ValueError(f"{o}.rays_per_camera must be (h, w) with both >= 2, got "
                             f"{self.rays_per_camera!r}")
        object.__setattr__(self, "rays_per_camera", tuple(int(v) for v in self.rays_per_camera))
        _positive_int(o, "n_samples", self.n_samples)
        _positive_int(o, "sparsity_stride", self.sparsity_stride)
        for name in ("lidar_rays", "lidar_free_rays", "flow_rays"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{o}.{name} must be an int >= 0, got {value!r}")
        _non_negative(o, "near", self.near)
        _non_negative(o, "lidar_free_near", self.lidar_free_near)
        _non_negative(o, "lidar_range_power", self.lidar_range_power)
        if len(tuple(self.lidar_origin)) != 3 or not all(math.isfinite(float(v)) for v in self.lidar_origin):
            raise ValueError(f"{o}.lidar_origin must be 3 finite floats, got {self.lidar_origin!r}")
        object.__setattr__(self, "lidar_origin", tuple(float(v) for v in self.lidar_origin))
        if self.backend not in ("warp", "torch"):
            raise ValueError(f"{o}.backend must be 'warp' or 'torch', got {self.backend!r}")


@dataclass(frozen=True)
class LossConfig:
    """Weights of eq. 12 and the settings of each term.

    Weights default to appendix B.3 and the released code (REFERENCE.md). A weight of 0 skips
    the term. Stage 1 uses the geometry terms only (static world); stage 2 adds the flow terms.

    Attributes:
        reprojection: photometric reprojection (eq. 8), both stages.
        eikonal: eikonal term (eq. 15): the mean at the camera-ray samples plus the mean over all
            grid vertices, both stages.
        lidar: LiDAR SILog range loss, both stages (used only when the batch has LiDAR).
        lidar_free_space: mean opacity of LiDAR rays whose return lies outside the grid (beyond
            its range or above it): their segment inside the grid is empty. Both stages; 0 (off)
            in the released setting, which drops such returns and so never tells the field that
            the far end of a street is open.
        hessian: mean |second differences| of the SDF grid in voxel units (metres, not divided
            by the squared voxel size), both stages.
        depth_smoothness: edge-aware smoothness of rendered inverse depth, both stages.
        sparsity_grid: relu(-sdf) on a randomly shifted lattice, both stages.
        sparsity_behind: relu(-sdf) at samples ``sparsity_margin`` behind the depth, both stages.
        flow: optical-flow loss (eq. 9, 11) to the next frame, stage 2.
        flow_aux: static flow supervision toward the auxiliary earlier frame, stage 2 (used
            when the current frame has the ``aux_flow_cue`` cue).
        static_flow: static-region flow regularisation ``L_dreg``, stage 2.
        flow_smoothness: edge-aware smoothness of rendered flow, stage 2.
        ssim_weight: SSIM share of the photometric error (0.85).
        automask: monodepth2 auto-masking against the unwarped adjacent images.
        dynamic_threshold: residual |f_opt - f_static| above which a movable ray is dynamic
            (eq. 10), pixels of the loss image (8 px at 256 x 704).
        gamma_cap: ``thre`` of eq. 11 (20).
        flow_median_factor: drop flow targets above this times the median magnitude.
        flow_max_pixels: drop flow targets above this many pixels.
        aux_flow_cue: name of the current frame's cue holding flow toward ``aux_prev``.
        dreg_low_weight: samples with render weight below this count as empty for L_dreg.
        dreg_sample_weight: factor of the empty-sample part of L_dreg (0.2).
        silog_variance_focus: lambda of the SILog loss (0.85).
        lidar_min_range: LiDAR points nearer than this are not used, metres.
        sparsity_margin: metres behind the rendered depth where ``sparsity_behind`` acts.
        normalize_reprojection: divide the warped colours and the weighted L1 of eq. 8 by the ray's
            opacity (``sum_i w_i``, at least 1e-3): the "normalised render weights" of the released
            code (True). False: plain weighted sums, which reward fog: a half-transparent ray costs
            half as much, and on the loss tests' scene a blurred field beats the sharp true one.
    """

    reprojection: float = 1.0
    eikonal: float = 0.1
    lidar: float = 0.2
    lidar_free_space: float = 0.0
    hessian: float = 0.05
    depth_smoothness: float = 0.02
    sparsity_grid: float = 0.005
    sparsity_behind: float = 0.01
    flow: float = 0.005
    flow_aux: float = 0.005
    static_flow: float = 0.1
    flow_smoothness: float = 0.01
    ssim_weight: float = 0.85
    automask: bool = True
    dynamic_threshold: float = 8.0
    gamma_cap: float = 20.0
    flow_median_factor: float = 100.0
    flow_max_pixels: float = 1e3
    aux_flow_cue: str = "flow_aux"
    dreg_low_weight: float = 1e-3
    dreg_sample_weight: float = 0.2
    silog_variance_focus: float = 0.85
    lidar_min_range: float = 0.5
    sparsity_margin: float = 3.0
    normalize_reprojection: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("automask", "aux_flow_cue", "normalize_reprojection"):
                continue
            _non_negative("LossConfig", f.name, value)
        for name in ("automask", "normalize_reprojection"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"LossConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.ssim_weight > 1 or self.silog_variance_focus > 1:
            raise ValueError("LossConfig.ssim_weight and silog_variance_focus must lie in [0, 1]")
        if self.gamma_cap <= 0:
            raise ValueError(f"LossConfig.gamma_cap must be positive, got {self.gamma_cap}")

    def weights(self, stage: int) -> dict[str, float]:
        """The weight of every term active in ``stage`` (1 or 2), zero weights included."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        names = list(STAGE1_TERMS) + (list(STAGE2_TERMS) if stage == 2 else [])
        return {name: float(getattr(self, name)) for name in names}


#: Loss terms of stage 1 (static world, geometry only).
STAGE1_TERMS = ("reprojection", "eikonal", "lidar", "lidar_free_space", "hessian", "depth_smoothness",
                "sparsity_grid", "sparsity_behind")
#: Terms stage 2 adds (joint geometry and flow).
STAGE2_TERMS = ("flow", "flow_aux", "static_flow", "flow_smoothness")


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class RefineConfig:
    """The 3D refine module (residual 3D CNN, 3D FPN, deconvolution upsampling).

    Attributes:
        blocks: residual basic blocks per stage ([1, 2, 4] released).
        channels: channels per stage ([192, 384, 768]).
        strides: stride of each stage's first block ([1, 2, 2]).
        fpn_channels: width of the 3D FPN (192).
        out_channels: channels of the refined volume the heads read (96).
        upsample: output / fused-volume resolution (2: 100 x 100 x 10 -> 200 x 200 x 20).
    """

    blocks: tuple[int, ...] = (1, 2, 4)
    channels: tuple[int, ...] = (192, 384, 768)
    strides: tuple[int, ...] = (1, 2, 2)
    fpn_channels: int = 192
    out_channels: int = 96
    upsample: int = 2

    def __post_init__(self) -> None:
        o = "RefineConfig"
        if not (len(self.blocks) == len(self.channels) == len(self.strides) >= 1):
            raise ValueError(f"{o}.blocks, channels and strides must have one entry per stage, got "
                             f"{self.blocks}, {self.channels}, {self.strides}")
        for name in ("blocks", "channels", "strides"):
            for v in getattr(self, name):
                _positive_int(o, name, v)
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("fpn_channels", "out_channels", "upsample"):
            _positive_int(o, name, getattr(self, name))


@dataclass(frozen=True)
class HeadConfig:
    """The SDF and flow MLP decoders (run once per grid vertex).

    Attributes:
        hidden: hidden width of both MLPs (96).
        flow_hidden_layers: hidden layers of the flow MLP (2; the SDF MLP has 1).
        flow_init_std: std of the flow MLP's last-layer initial weights (1e-2; bias 0).
        sdf_bias_init: initial bias of the SDF MLP's last layer, metres (positive = start empty).
        ground_prior: if not None, the SDF head predicts a residual on top of the signed distance
            to a horizontal ground plane at this height (ego frame z, metres): ``sdf = mlp + (z -
            ground_prior)``. A geometric initialisation in the spirit of NeuS's sphere init: the
            untrained model is flat ground with free space above it, instead of a field of zeros
            (which the 0.1 m occupancy threshold would call occupied everywhere). None = released.
    """

    hidden: int = 96
    flow_hidden_layers: int = 2
    flow_init_std: float = 1e-2
    sdf_bias_init: float = 0.0
    ground_prior: float | None = None

    def __post_init__(self) -> None:
        _positive_int("HeadConfig", "hidden", self.hidden)
        _positive_int("HeadConfig", "flow_hidden_layers", self.flow_hidden_layers)
        _non_negative("HeadConfig", "flow_init_std", self.flow_init_std)
        if not math.isfinite(self.sdf_bias_init):
            raise ValueError(f"HeadConfig.sdf_bias_init must be finite, got {self.sdf_bias_init}")
        if self.ground_prior is not None and not math.isfinite(self.ground_prior):
            raise ValueError(f"HeadConfig.ground_prior must be None or finite, got {self.ground_prior}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines an :class:`OccFlowModel`.

    The output field grid is the encoder's box with ``encoder.out_cells * refine.upsample``
    cells (see :attr:`grid`); its vertex grid is one larger per axis.

    Attributes:
        encoder: the TPV encoder (``tpv_encoder.TPVEncoderConfig``).
        fusion: the temporal fusion (``temporal_fusion.TemporalFusionConfig``); its channels and
            box must equal the encoder's.
        refine: the 3D refine module.
        heads: the SDF and flow decoders.
        deviation_init: initial NeuS deviation ``v``; ``inv_s = exp(10 v)`` (0.1 released).
    """

    encoder: TPVEncoderConfig
    fusion: TemporalFusionConfig
    refine: RefineConfig = RefineConfig()
    heads: HeadConfig = HeadConfig()
    deviation_init: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, TPVEncoderConfig):
            raise TypeError(f"ModelConfig.encoder must be a TPVEncoderConfig, got "
                            f"{type(self.encoder).__name__}")
        if not isinstance(self.fusion, TemporalFusionConfig):
            raise TypeError(f"ModelConfig.fusion must be a TemporalFusionConfig, got "
                            f"{type(self.fusion).__name__}")
        if self.fusion.channels != self.encoder.embed_dim:
            raise ValueError(f"ModelConfig.fusion.channels ({self.fusion.channels}) must equal "
                             f"encoder.embed_dim ({self.encoder.embed_dim})")
        if tuple(self.fusion.lower) != tuple(self.encoder.lower) or \
                tuple(self.fusion.upper) != tuple(self.encoder.upper):
            raise ValueError(f"ModelConfig.fusion box {self.fusion.lower}..{self.fusion.upper} must equal "
                             f"the encoder box {self.encoder.lower}..{self.encoder.upper}")
        if not math.isfinite(self.deviation_init):
            raise ValueError(f"ModelConfig.deviation_init must be finite, got {self.deviation_init}")

    @property
    def grid(self) -> GridSpec:
        """The output field's grid (cells; SDF and flow live on its vertices)."""
        cells = tuple(n * self.refine.upsample for n in self.encoder.out_cells)
        return GridSpec(self.encoder.lower, self.encoder.upper, cells)


def _model_presets() -> dict[str, ModelConfig]:
    enc_nus = TPV_PRESETS["nuscenes"]
    nuscenes = ModelConfig(encoder=enc_nus, fusion=replace(FUSION_PRESETS["letoccflow_nuscenes"],
                                                           lower=enc_nus.lower, upper=enc_nus.upper))
    enc_kitti = TPV_PRESETS["kitti"]
    kitti = ModelConfig(encoder=enc_kitti, fusion=replace(FUSION_PRESETS["letoccflow_nuscenes"],
                                                          lower=enc_kitti.lower, upper=enc_kitti.upper))
    enc_cpu = replace(TPV_PRESETS["tiny"], lower=(-40.0, -40.0, -1.0), upper=(40.0, 40.0, 5.4),
                      cells=(40, 40, 4), embed_dim=32, num_heads=2)
    synthetic_cpu = ModelConfig(
        encoder=enc_cpu,
        fusion=TemporalFusionConfig(channels=32, num_history=2, num_heads=2, num_points=4,
                                    lower=enc_cpu.lower, upper=enc_cpu.upper),
        refine=RefineConfig(blocks=(1, 1, 1), channels=(32, 32, 64), strides=(1, 2, 2), fpn_channels=32,
                            out_channels=16, upsample=2),
        heads=HeadConfig(hidden=32, ground_prior=0.0))
    return {"nuscenes": nuscenes, "kitti": kitti, "synthetic-cpu": synthetic_cpu}


#: Named model configurations. ``nuscenes``: the paper / released sizes (ConvNeXt-Base, TPV
#: 100 x 100 x 10 at 192 channels over [-40, 40]^2 x [-1, 5.4] m, BFAM with 2 history frames,
#: refine [1, 2, 4] x [192, 384, 768], field 200 x 200 x 20 cells = 201 x 201 x 21 vertices).
#: ``kitti``: the same on the SemanticKITTI box (TPV 128 x 128 x 16, field 256 x 256 x 32 at
#: 0.2 m). ``synthetic-cpu``: ConvNeXt-Atto, TPV 40 x 40 x 4 at 32 channels over the nuScenes
#: box, a small refine module and 80 x 80 x 8 field cells (1 m x 1 m x 0.8 m): trains on 2 CPU
#: cores. Read-only; derive variants with ``dataclasses.replace``.
MODEL_PRESETS: Mapping[str, ModelConfig] = MappingProxyType(_model_presets())
