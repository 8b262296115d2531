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
from ._readers import (
    NUSCENES_CAMERAS,
    SEMANTIC_KITTI_SPLITS,
    SEMANTIC_KITTI_TO_OCC3D,
    FrameInfo,
    KittiTrackingSequences,
    NuScenesSequences,
    ReaderSummary,
    SemanticKittiSequences,
    SequenceConfig,
    SequenceDataset,
    load_occ3d,
    oxts_poses,
    read_kitti_calib,
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
    "NUSCENES_CAMERAS",
    "SEMANTIC_KITTI_SPLITS",
    "SEMANTIC_KITTI_TO_OCC3D",
    "Batch",
    "Frame",
    "FrameBatch",
    "FrameInfo",
    "GroundTruth",
    "GroundTruthBatch",
    "ImageConfig",
    "KittiTrackingSequences",
    "NuScenesSequences",
    "ReaderSummary",
    "ResizeCrop",
    "Sample",
    "SemanticKittiSequences",
    "SequenceConfig",
    "SequenceDataset",
    "__version__",
    "collate_samples",
    "lidar_depth_maps",
    "load_occ3d",
    "oxts_poses",
    "plan_resize_crop",
    "project_points",
    "read_kitti_calib",
    "relative_pose",
    "resize_crop_intrinsics",
]
