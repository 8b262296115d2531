"""The Let Occ Flow model, self-supervised losses and two-stage accelerate training, evaluation and
prediction.
"""

from ._config import STAGE1_TERMS, STAGE2_TERMS, LossConfig, RenderConfig
from ._eval_utils import flow_to_velocity, occupancy_from_sdf, vertices_to_cells
from ._field import SceneField
from ._losses.compute import compute_losses
from ._losses.terms import (
    dssim,
    dynamic_mask,
    edge_aware_smoothness,
    flow_loss,
    flow_target_valid,
    imbalance_weight,
    photometric_error,
    reprojection_loss,
    rigid_flow,
    sample_vertex_field,
    silog_loss,
    sparsity_behind_surface,
    sparsity_grid,
    static_flow_regularization,
)
from ._rays import (
    CameraRays,
    LidarRays,
    gather_pixels,
    pixel_lattice,
    pixel_rays,
    project_points,
    sample_camera_rays,
    sample_lidar_rays,
)

__version__ = "0.1.0"

__all__ = [
    "STAGE1_TERMS",
    "STAGE2_TERMS",
    "CameraRays",
    "LidarRays",
    "LossConfig",
    "RenderConfig",
    "SceneField",
    "__version__",
    "compute_losses",
    "dssim",
    "dynamic_mask",
    "edge_aware_smoothness",
    "flow_loss",
    "flow_target_valid",
    "flow_to_velocity",
    "gather_pixels",
    "imbalance_weight",
    "occupancy_from_sdf",
    "photometric_error",
    "pixel_lattice",
    "pixel_rays",
    "project_points",
    "reprojection_loss",
    "rigid_flow",
    "sample_camera_rays",
    "sample_lidar_rays",
    "sample_vertex_field",
    "silog_loss",
    "sparsity_behind_surface",
    "sparsity_grid",
    "static_flow_regularization",
    "vertices_to_cells",
]
