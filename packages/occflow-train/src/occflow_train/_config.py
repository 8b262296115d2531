"""Configuration dataclasses of the model, the rendering of the losses and the loss weights."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


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
        if isinstance(self.lidar_rays, bool) or not isinstance(self.lidar_rays, int) or self.lidar_rays < 0:
            raise ValueError(f"{o}.lidar_rays must be an int >= 0, got {self.lidar_rays!r}")
        _non_negative(o, "near", self.near)
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
        eikonal: eikonal term at the ray samples and on the grid (eq. 15), both stages.
        lidar: LiDAR SILog range loss, both stages (used only when the batch has LiDAR).
        hessian: mean |second differences| of the SDF grid, both stages.
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
    """

    reprojection: float = 1.0
    eikonal: float = 0.1
    lidar: float = 0.2
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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("automask", "aux_flow_cue"):
                continue
            _non_negative("LossConfig", f.name, value)
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
STAGE1_TERMS = ("reprojection", "eikonal", "lidar", "hessian", "depth_smoothness", "sparsity_grid",
                "sparsity_behind")
#: Terms stage 2 adds (joint geometry and flow).
STAGE2_TERMS = ("flow", "flow_aux", "static_flow", "flow_smoothness")
