"""The Let Occ Flow model, self-supervised losses and two-stage accelerate training, evaluation and
prediction.
"""

from ._config import (
    MODEL_PRESETS,
    STAGE1_TERMS,
    STAGE2_TERMS,
    HeadConfig,
    LossConfig,
    ModelConfig,
    RefineConfig,
    RenderConfig,
)
from ._eval_utils import flow_to_velocity, occupancy_from_sdf, vertices_to_cells
from ._evaluate import EvalResult, evaluate_model, write_pictures
from ._field import SceneField
from ._heads import PointwiseMLP, flow_head, sdf_head
from ._losses.compute import compute_losses
from ._losses.supervised import OccupancyLossConfig, occupancy_losses, occupancy_sdf
from ._losses.terms import (
    dssim,
    dynamic_mask,
    edge_aware_smoothness,
    flow_loss,
    flow_target_valid,
    free_space_loss,
    imbalance_weight,
    normalize_by_opacity,
    photometric_error,
    reprojection_loss,
    rigid_flow,
    sample_vertex_field,
    silog_loss,
    sparsity_behind_surface,
    sparsity_grid,
    static_flow_regularization,
)
from ._model import OccFlowModel, count_parameters
from ._optim import OptimConfig
from ._rays import (
    CameraRays,
    LidarRays,
    gather_pixels,
    pixel_lattice,
    pixel_rays,
    project_points,
    sample_camera_rays,
    sample_lidar_rays,
    sample_mask_pixels,
)
from ._refine import Refine3D, cells_to_vertices
from ._train import PRESETS, DataConfig, EvalConfig, StageConfig, TrainConfig, train

__version__ = "0.2.0"

__all__ = [
    "PRESETS",
    "DataConfig",
    "EvalConfig",
    "EvalResult",
    "OptimConfig",
    "StageConfig",
    "TrainConfig",
    "evaluate_model",
    "train",
    "write_pictures",
    "CameraRays",
    "HeadConfig",
    "LidarRays",
    "LossConfig",
    "MODEL_PRESETS",
    "ModelConfig",
    "OccFlowModel",
    "OccupancyLossConfig",
    "PointwiseMLP",
    "Refine3D",
    "RefineConfig",
    "RenderConfig",
    "STAGE1_TERMS",
    "STAGE2_TERMS",
    "SceneField",
    "__version__",
    "cells_to_vertices",
    "compute_losses",
    "count_parameters",
    "dssim",
    "dynamic_mask",
    "edge_aware_smoothness",
    "flow_head",
    "flow_loss",
    "flow_target_valid",
    "flow_to_velocity",
    "free_space_loss",
    "gather_pixels",
    "imbalance_weight",
    "normalize_by_opacity",
    "occupancy_from_sdf",
    "occupancy_losses",
    "occupancy_sdf",
    "photometric_error",
    "pixel_lattice",
    "pixel_rays",
    "project_points",
    "reprojection_loss",
    "rigid_flow",
    "sample_camera_rays",
    "sample_lidar_rays",
    "sample_mask_pixels",
    "sample_vertex_field",
    "sdf_head",
    "silog_loss",
    "sparsity_behind_surface",
    "sparsity_grid",
    "static_flow_regularization",
    "vertices_to_cells",
]
