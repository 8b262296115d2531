"""Sample schema, nuScenes/SemanticKITTI/KITTI-tracking readers and a procedural synthetic driving
world with full ground truth.
"""

from ._preprocess import (
    IMAGE_KITTI,
    IMAGE_NUSCENES,
    ImageConfig,
    ResizeCrop,
    lidar_depth_maps,
    plan_resize_crop,
    project_points,
    resize_crop_intrinsics,
)
from ._schema import (
    FREE_LABEL,
    NUM_OCC_LABELS,
    Batch,
    Frame,
    FrameBatch,
    GroundTruth,
    GroundTruthBatch,
    Sample,
    collate_samples,
    relative_pose,
)

__version__ = "0.1.0"

__all__ = [
    "FREE_LABEL",
    "IMAGE_KITTI",
    "IMAGE_NUSCENES",
    "NUM_OCC_LABELS",
    "Batch",
    "Frame",
    "FrameBatch",
    "GroundTruth",
    "GroundTruthBatch",
    "ImageConfig",
    "ResizeCrop",
    "Sample",
    "__version__",
    "collate_samples",
    "lidar_depth_maps",
    "plan_resize_crop",
    "project_points",
    "relative_pose",
    "resize_crop_intrinsics",
]
