"""The Let Occ Flow model, self-supervised losses and two-stage accelerate training, evaluation and
prediction.
"""

from ._eval_utils import flow_to_velocity, occupancy_from_sdf, vertices_to_cells
from ._field import SceneField
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
    "CameraRays",
    "LidarRays",
    "SceneField",
    "__version__",
    "flow_to_velocity",
    "gather_pixels",
    "occupancy_from_sdf",
    "pixel_lattice",
    "pixel_rays",
    "project_points",
    "sample_camera_rays",
    "sample_lidar_rays",
    "vertices_to_cells",
]
